"""Source configuration (config/sources.yml) and reading of landing extracts.

Extracts are read as text: every column is a string (or missing), so validation sees what the
site sent, not what a parser guessed. CSV bytes that are not UTF-8 are decoded per row as
cp1252 (the usual legacy encoding of NHS extracts) and each such row is reported with its file
and line number, never its content.

A CSV file whose shape is wrong is refused whole (``ExtractUnusable``, naming file, line and
rule; no row of it is accepted or quarantined): another delimiter than the configured one
(``delimiter``), a row with more or fewer fields than the header (``csv_shape``; e.g. a
trailing delimiter on every row, which pandas would otherwise read as an index and shift the
columns), a file cut short (``file_complete``: it ends inside a quoted field, or its last
line is short and has no line end). Each row keeps the line it starts on (quoted fields may
span lines, and may be of any length). Parquet columns are read as text from their own type.

A source's files are found inside the landing folder only (``resolve_files``: no absolute
path, no ``..``, no link out of it, regular files only), and each contract column is read from
one column of a file (``check_columns_unique``).
"""
from __future__ import annotations

import csv
import glob
import io
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from core.errors import LtcevalError
from core.files import sha256_file
from core.settings import REPO_ROOT, SOURCES_CONFIG_ENV, env_value

DEFAULT_SOURCES_CONFIG = REPO_ROOT / "config" / "sources.yml"
IDENTIFIER_ROLES = ("nhs_number", "forename", "surname", "dob", "sex", "postcode")
# Demographic roles of a source delivered pseudonymised upstream (no direct identifiers):
# used for the person table and for linkage-rate subgroups, never for linkage.
DEMOGRAPHIC_ROLES = ("sex", "birth_month")
# what NHS England's Master Person Service made a record's Person_ID (docs/linkage.md): the NHS
# number PDS traced, a persistent MPS_ID of unmatched records ("UPRI 1"), or a one-time-use id ("UPRI 2")
MPS_KINDS = ("nhs_number", "mps_id", "one_time")
ACTIONS = ("quarantine", "nullify")
# Sources whose records carry person identifiers; gp_patients is the spine.
SPINE = "gp_patients"


class ExtractUnusable(LtcevalError):
    """A whole extract is unusable (missing file or columns, too many failing rows).

    Messages name the file, the rule and counts, never a value from the data."""


class SourceConfigError(LtcevalError, ValueError):
    """A source config entry that cannot be used as it is (a file pattern leaving the landing
    folder, a rename giving two columns one name, a column leaving the zone unchecked, ...): one
    line naming source and field, no traceback. A ValueError, as callers have long caught."""


DATABASE_FOLDER = "database"  # a database source's rows are validated from <zone>/extracted/database/<table>.parquet
DATABASE_KEYS = ("connection", "url_env", "table", "query")


@dataclass(frozen=True)
class DatabaseSource:
    """Where a source's rows are read from when it is not a file: an Airflow Connection id
    (``connection``) or an environment variable holding a SQLAlchemy URL (``url_env``), and a
    ``table`` (optionally schema-qualified, schema.table) or a ``query``. Credentials never sit
    in the config: it names where they are."""

    connection: str = ""
    url_env: str = ""
    table: str = ""
    query: str = ""

    @property
    def where(self) -> str:
        """The connection as reports name it (never its URL or credentials)."""
        return f"Airflow Connection {self.connection}" if self.connection else f"the URL in ${self.url_env}"


def _database_source(table: str, given) -> DatabaseSource:
    if not isinstance(given, dict):
        raise SourceConfigError(f"config: {table}.database: give {{connection or url_env, table or query}}")
    unknown = sorted(set(map(str, given)) - set(DATABASE_KEYS))
    if unknown:
        raise SourceConfigError(f"config: {table}.database: unknown key(s) {unknown}; use {', '.join(DATABASE_KEYS)}")
    db = DatabaseSource(**{k: str(v).strip() for k, v in given.items() if v is not None})
    if bool(db.connection) == bool(db.url_env):
        raise SourceConfigError(f"config: {table}.database: give one of connection (an Airflow Connection id) "
                                "or url_env (an environment variable holding a SQLAlchemy URL)")
    if bool(db.table) == bool(db.query):
        raise SourceConfigError(f"config: {table}.database: give one of table or query")
    if db.url_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db.url_env):
        raise SourceConfigError(f"config: {table}.database.url_env must be an environment variable name, "
                                "not a URL (credentials stay out of the config)")
    if db.table and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?", db.table):
        raise SourceConfigError(f"config: {table}.database.table must be a table name (schema.table at most); "
                                "use query for anything else")
    return db


def check_file_pattern(table: str, pattern: str) -> None:
    """A source's ``file`` must name files inside the landing folder: relative, no ``..``.
    (Links out of the folder are refused when the files are found: ``resolve_files``.)"""
    if os.path.isabs(pattern):
        raise SourceConfigError(f"config: {table}.file must be a path relative to the landing folder, "
                                f"not an absolute path ({pattern})")
    if ".." in re.split(r"[\\/]", pattern):
        raise SourceConfigError(f"config: {table}.file must not leave the landing folder ('..' in {pattern})")


def check_rename(table: str, rename: dict) -> None:
    """No two site columns renamed to one contract name (which of the two would be read?)."""
    seen: dict[str, str] = {}
    for site, contract in rename.items():
        if contract in seen:
            raise SourceConfigError(f"config: {table}.rename: {seen[contract]} and {site} are both renamed "
                                    f"to {contract}; one column per name")
        seen[contract] = site


@dataclass(frozen=True)
class CodeRule:
    values: tuple[str, ...]
    action: str = "quarantine"


@dataclass(frozen=True)
class PatternRule:
    """A value must match ``regex`` whole (rule ``pattern``); for coded columns whose code list
    is too large to list (SNOMED CT, ICD-10, organisation codes)."""

    regex: str
    action: str = "quarantine"


@dataclass(frozen=True)
class DateRef:
    """A date a record's event dates are checked against: a column of the record itself
    (``table`` empty) or of its parent record (``table``, reached through the record's
    ``key`` column and the parent's record id ``parent_id``)."""

    column: str
    table: str = ""
    key: str = ""
    parent_id: str = ""

    def __str__(self) -> str:
        return f"{self.table}.{self.column}" if self.table else self.column


@dataclass(frozen=True)
class LifeSpec:
    """Dates that must fall within the person's life: the ``after_birth`` dates not before
    ``birth`` (rule date_after_birth), the ``not_after_death`` dates not after ``death`` (rule
    date_not_after_death)."""

    birth: DateRef | None = None
    death: DateRef | None = None
    after_birth: tuple[str, ...] = ()
    not_after_death: tuple[str, ...] = ()


@dataclass(frozen=True)
class MpsSpec:
    """NHS England's Master Person Service output carried by a source (SUS, ECDS): the Person_ID
    column, the column saying which kind it is (``kinds``: kind -> the extract's codes for it),
    and the match confidence (0-100; optional). A traced NHS number below ``min_confidence`` is
    not used."""
    person_id: str
    id_type: str
    kinds: dict  # "nhs_number" | "mps_id" | "one_time" -> tuple of codes
    confidence: str = ""
    min_confidence: float = 0.0
    action: str = "nullify"

    @property
    def columns(self) -> set:
        return {c for c in (self.person_id, self.id_type, self.confidence) if c}


@dataclass(frozen=True)
class SourceSpec:
    table: str
    file: str
    record_id: str
    columns: tuple[str, ...]
    rename: dict = field(default_factory=dict)
    identifiers: dict = field(default_factory=dict)
    dates: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)
    numeric: dict = field(default_factory=dict)
    nhs_number_action: str = "nullify"
    parent: dict = field(default_factory=dict)
    pseudo_key: str = ""  # column of a key pseudonymised upstream (e.g. Der_Pseudo_NHS_Number)
    demographics: dict = field(default_factory=dict)  # role -> column, pseudonymised mode only
    delimiter: str = ","
    numeric_min: dict = field(default_factory=dict)  # column -> smallest allowed value (rule numeric_min)
    date_order: tuple = ()  # (earlier, later) date column pairs (rule date_order on the later one)
    life: LifeSpec | None = None  # event dates within the person's life (date_after_birth, ...)
    numeric_max: dict = field(default_factory=dict)  # column -> largest allowed value (rule numeric_max)
    patterns: dict = field(default_factory=dict)  # column -> PatternRule (rule pattern)
    # columns holding a source's record ids besides its own record id -> the domain they are
    # pseudonymised under (the record id column of the source they point at)
    record_ids: dict = field(default_factory=dict)
    reference: bool = False  # reference data (no person): its record id is a public code, published as is
    database: DatabaseSource | None = None  # rows read from a database, not from landing files
    mps: MpsSpec | None = None  # NHS England's MPS Person_ID and its fields, where the extract has them

    @property
    def parent_date_refs(self) -> list[DateRef]:
        """The parent tables' dates (birth, death) its life rules read; empty if none."""
        if self.life is None:
            return []
        return [ref for ref in (self.life.birth, self.life.death) if ref is not None and ref.table]

    @property
    def has_identifiers(self) -> bool:
        """Direct person identifiers (NHS number, names, date of birth, postcode) present."""
        return bool(self.identifiers)

    @property
    def links_persons(self) -> bool:
        """Records of this source are linked to persons (identifiers or an upstream key)."""
        return bool(self.identifiers) or bool(self.pseudo_key)

    @property
    def pseudonymised_columns(self) -> dict[str, str]:
        """Column -> domain of the source record ids that leave the zone only as keyed pseudonyms
        (``pseudonymise.record_pseudonym``): its own record id (unless reference data) and the
        record ids of other sources it holds. A foreign key shares its target's domain, so joins
        still work; different domains give one value different pseudonyms."""
        own = {} if self.reference else {self.record_id: self.record_id}
        return {**own, **self.record_ids}

    @property
    def person_columns(self) -> set:
        """Columns that identify a person and never leave the zone as they are."""
        cols = set(self.identifiers.values()) | set(self.demographics.values())
        if self.mps is not None:  # a Person_ID is an NHS number or a national person id
            cols |= self.mps.columns
        if self.pseudo_key:
            cols.add(self.pseudo_key)
        return cols


@dataclass(frozen=True)
class SourcesConfig:
    sources: dict[str, SourceSpec]
    quarantine_threshold: float = 0.20
    path: str = ""
    reporting_period_end: str | None = None  # ISO date; dates after it fail date_not_future
    linkage: dict = field(default_factory=dict)  # threshold, model (train | current | path)
    raw: dict = field(default_factory=dict)  # the parsed YAML (holds no secrets by design)

    @property
    def mode(self) -> str:
        """'identifiable' (direct identifiers, linked here) or 'upstream_pseudonymised'."""
        return "upstream_pseudonymised" if self.sources[SPINE].pseudo_key else "identifiable"

    def __getitem__(self, table: str) -> SourceSpec:
        return self.sources[table]

    @property
    def identifier_sources(self) -> list[str]:
        return [t for t, s in self.sources.items() if s.links_persons]


def _date_ref(table: str, what: str, ref, sources: dict) -> DateRef | None:
    """``Column`` of the record itself, or ``parent_table.Column`` reached through the record's
    ``parent`` key; the column must be one of that table's dates."""
    if ref is None:
        return None
    ref = str(ref)
    spec = sources[table]
    if "." in ref:
        ptable, col = ref.split(".", 1)
        keys = [k for k, t in spec.parent.items() if t == ptable]
        if not keys:
            raise SourceConfigError(f"config: {table}.life.{what}: {ptable} is not a parent of {table}")
        if ptable not in sources or col not in sources[ptable].dates:
            raise SourceConfigError(f"config: {table}.life.{what}: {col} is not one of {ptable}'s dates")
        return DateRef(column=col, table=ptable, key=keys[0], parent_id=sources[ptable].record_id)
    if ref not in spec.dates:
        raise SourceConfigError(f"config: {table}.life.{what}: {ref} is not one of its dates")
    return DateRef(column=ref)


def _life_spec(table: str, life: dict, sources: dict) -> LifeSpec:
    unknown = set(life) - {"birth", "death", "after_birth", "not_after_death"}
    if unknown:
        raise SourceConfigError(f"config: {table}.life: unknown key(s) {sorted(unknown)}")
    lists = {}
    for key, ref in (("after_birth", "birth"), ("not_after_death", "death")):
        lists[key] = tuple(str(c) for c in life.get(key) or [])
        if lists[key] and not life.get(ref):
            raise SourceConfigError(f"config: {table}.life.{key} needs life.{ref}")
        for c in lists[key]:
            if c not in sources[table].dates:
                raise SourceConfigError(f"config: {table}.life.{key}: {c} is not one of its dates")
    return LifeSpec(birth=_date_ref(table, "birth", life.get("birth"), sources),
                    death=_date_ref(table, "death", life.get("death"), sources), **lists)


def _record_id_domains(table: str, given, sources: dict) -> dict[str, str]:
    """``record_ids: {column: source}`` -> {column: that source's record id column (the domain)}."""
    out = {}
    for col, target in (given or {}).items():
        col, target = str(col), str(target)
        if col not in sources[table].columns:
            raise SourceConfigError(f"config: {table}.record_ids: {col} not in columns")
        if target not in sources or sources[target].reference:
            raise SourceConfigError(f"config: {table}.record_ids.{col}: {target} is not a configured source with "
                             "record ids")
        out[col] = sources[target].record_id
    return out


def _check_every_column_constrained(spec: SourceSpec) -> None:
    """Refuse a column that would leave the zone unchecked. A column leaves only as a keyed
    pseudonym (record ids), a date, a value from a code list, a number within [min, max] or a
    text matching a pattern; person identifiers and parent keys are withheld. Anything else
    (free text such as an unlisted ethnic category, an unbounded number) could carry an
    identifier out, so the config is refused before any extract is read."""
    withheld = spec.person_columns | set(spec.parent)
    constrained = set(spec.dates) | set(spec.codes) | set(spec.numeric) | set(spec.patterns)
    for col in spec.columns:
        if col in withheld or col in spec.pseudonymised_columns or col in constrained:
            continue
        raise SourceConfigError(f"config: {spec.table}.{col}: leaves the identifiable zone without a check: "
                         "give it a code list (codes), a numeric range (numeric with min and max) or a "
                         "pattern (patterns), or list it in record_ids")


def _mps_spec(table: str, given, columns: tuple, identifiers: dict) -> MpsSpec | None:
    """``mps: {person_id, id_type, kinds: {nhs_number, mps_id, one_time}, confidence,
    min_confidence, action}`` of one source, checked."""
    if not given:
        return None
    if not isinstance(given, dict):
        raise SourceConfigError(f"config: {table}.mps: give {{person_id, id_type, kinds, confidence, min_confidence}}")
    unknown = set(given) - {"person_id", "id_type", "kinds", "confidence", "min_confidence", "action"}
    if unknown:
        raise SourceConfigError(f"config: {table}.mps: unknown key(s) {sorted(unknown)}")
    if not identifiers:
        raise SourceConfigError(f"config: {table}.mps: only for a source with identifiers (linked here)")
    for key in ("person_id", "id_type", "confidence"):
        col = given.get(key)
        if key != "confidence" and not col:
            raise SourceConfigError(f"config: {table}.mps.{key} is required")
        if col and str(col) not in columns:
            raise SourceConfigError(f"config: {table}.mps.{key}: column {col} not in columns")
    kinds_given = given.get("kinds")
    if not isinstance(kinds_given, dict) or set(kinds_given) != set(MPS_KINDS):
        raise SourceConfigError(f"config: {table}.mps.kinds: give the extract's code(s) for each of {MPS_KINDS}")
    kinds = {k: tuple(str(c) for c in (v if isinstance(v, list) else [v])) for k, v in kinds_given.items()}
    codes = [c for v in kinds.values() for c in v]
    if not all(codes) or len(set(codes)) != len(codes):
        raise SourceConfigError(f"config: {table}.mps.kinds: each code names one kind (no blank, no repeat)")
    try:
        low = float(given.get("min_confidence", 0))
    except (TypeError, ValueError):
        raise SourceConfigError(f"config: {table}.mps.min_confidence must be a number from 0 to 100") from None
    if not 0 <= low <= 100:
        raise SourceConfigError(f"config: {table}.mps.min_confidence must be a number from 0 to 100")
    if low and not given.get("confidence"):
        raise SourceConfigError(f"config: {table}.mps.min_confidence needs mps.confidence")
    return MpsSpec(person_id=str(given["person_id"]), id_type=str(given["id_type"]), kinds=kinds,
                   confidence=str(given.get("confidence") or ""), min_confidence=low,
                   action=_check_action(table, "mps.action", str(given.get("action", "nullify"))))


def _check_action(table: str, what: str, action: str) -> str:
    if action not in ACTIONS:
        raise SourceConfigError(f"config: {table}.{what}: action must be one of {ACTIONS}, got {action!r}")
    return action


def load_sources_config(path: str | Path | None = None) -> SourcesConfig:
    """Load the YAML source config (default: $LTCEVAL_SOURCES_CONFIG or config/sources.yml)."""
    path = Path(path or env_value(SOURCES_CONFIG_ENV) or DEFAULT_SOURCES_CONFIG)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    sources = {}
    for table, s in (raw.get("sources") or {}).items():
        columns = tuple(str(c) for c in s["columns"])
        record_id = str(s["record_id"])
        if record_id not in columns:
            raise SourceConfigError(f"config: {table}: record_id {record_id} not in columns")
        identifiers = {str(k): str(v) for k, v in (s.get("identifiers") or {}).items()}
        for role, col in identifiers.items():
            if role not in IDENTIFIER_ROLES:
                raise SourceConfigError(f"config: {table}: unknown identifier role {role!r}")
            if col not in columns:
                raise SourceConfigError(f"config: {table}: identifier column {col} not in columns")
        if identifiers and set(identifiers) != set(IDENTIFIER_ROLES):
            raise SourceConfigError(f"config: {table}: identifiers must name all of {IDENTIFIER_ROLES}")
        pseudo_key = str(s.get("pseudo_key") or "")
        if pseudo_key and identifiers:
            raise SourceConfigError(f"config: {table}: give either identifiers or pseudo_key, not both")
        if pseudo_key and pseudo_key not in columns:
            raise SourceConfigError(f"config: {table}: pseudo_key column {pseudo_key} not in columns")
        demographics = {str(k): str(v) for k, v in (s.get("demographics") or {}).items()}
        for role, col in demographics.items():
            if role not in DEMOGRAPHIC_ROLES:
                raise SourceConfigError(f"config: {table}: unknown demographics role {role!r}")
            if col not in columns:
                raise SourceConfigError(f"config: {table}: demographics column {col} not in columns")
        dates = {str(c): _check_action(table, f"dates.{c}", a) for c, a in (s.get("dates") or {}).items()}
        numeric, numeric_min, numeric_max = {}, {}, {}
        for c, a in (s.get("numeric") or {}).items():  # {action, min, max}
            # both bounds: a rule with no maximum passed an NHS number typed into an age column
            if not isinstance(a, dict) or a.get("min") is None or a.get("max") is None:
                raise SourceConfigError(f"config: {table}.numeric.{c}: give {{action, min, max}}: a number "
                                 "leaves the zone only within a bounded range")
            unknown = set(a) - {"action", "min", "max"}
            if unknown:
                raise SourceConfigError(f"config: {table}.numeric.{c}: unknown key(s) {sorted(unknown)}")
            for bound, into in (("min", numeric_min), ("max", numeric_max)):
                try:
                    into[str(c)] = float(a[bound])
                except (TypeError, ValueError):
                    raise SourceConfigError(f"config: {table}.numeric.{c}.{bound} must be a number") from None
            if numeric_min[str(c)] > numeric_max[str(c)]:
                raise SourceConfigError(f"config: {table}.numeric.{c}: min is above max")
            numeric[str(c)] = _check_action(table, f"numeric.{c}", a.get("action", "quarantine"))
        patterns = {}
        for c, rule in (s.get("patterns") or {}).items():
            if not isinstance(rule, dict) or not rule.get("regex"):
                raise SourceConfigError(f"config: {table}.patterns.{c}: give {{regex, action}}")
            try:
                re.compile(str(rule["regex"]))
            except re.error:
                raise SourceConfigError(f"config: {table}.patterns.{c}: the regex does not compile") from None
            patterns[str(c)] = PatternRule(str(rule["regex"]),
                                           _check_action(table, f"patterns.{c}", rule.get("action", "quarantine")))
        date_order = []
        for pair in s.get("date_order") or []:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise SourceConfigError(f"config: {table}.date_order: each entry is [earlier, later], got {pair!r}")
            for c in pair:
                if str(c) not in dates:
                    raise SourceConfigError(f"config: {table}.date_order: {c} is not one of its dates")
            date_order.append((str(pair[0]), str(pair[1])))
        codes = {}
        for c, rule in (s.get("codes") or {}).items():
            codes[str(c)] = CodeRule(tuple(str(v) for v in rule["values"]),
                                     _check_action(table, f"codes.{c}", rule.get("action", "quarantine")))
        for c in list(dates) + list(numeric) + list(codes) + list(patterns):
            if c not in columns:
                raise SourceConfigError(f"config: {table}: rule column {c} not in columns")
        mps = _mps_spec(str(table), s.get("mps"), columns, identifiers)
        if mps is not None:  # the kind's codes and the confidence range, checked as any code and number
            if mps.id_type in codes or (mps.confidence and mps.confidence in numeric):
                raise SourceConfigError(f"config: {table}.mps: the rules of its columns come from mps; "
                                        "do not list them under codes or numeric")
            codes[mps.id_type] = CodeRule(tuple(c for v in mps.kinds.values() for c in v), mps.action)
            if mps.confidence:
                numeric[mps.confidence] = mps.action
                numeric_min[mps.confidence], numeric_max[mps.confidence] = 0.0, 100.0
        rename = {str(k): str(v) for k, v in (s.get("rename") or {}).items()}
        database = None
        if s.get("database") is not None:
            if s.get("file"):
                raise SourceConfigError(f"config: {table}: give file or database, not both")
            database = _database_source(str(table), s["database"])
            file = f"{DATABASE_FOLDER}/{table}.parquet"
        elif s.get("file"):
            file = str(s["file"])
        else:
            raise SourceConfigError(f"config: {table}: give file (landing files) or database")
        check_file_pattern(str(table), file)
        check_rename(str(table), rename)
        sources[str(table)] = SourceSpec(
            table=str(table), file=file, database=database, record_id=record_id, columns=columns,
            rename=rename,
            identifiers=identifiers, dates=dates, codes=codes, numeric=numeric,
            nhs_number_action=_check_action(table, "nhs_number_action",
                                            s.get("nhs_number_action", "nullify")),
            parent={str(k): str(v) for k, v in (s.get("parent") or {}).items()},
            pseudo_key=pseudo_key, demographics=demographics,
            delimiter=str(s.get("delimiter", ",")),
            numeric_min=numeric_min, date_order=tuple(date_order),
            numeric_max=numeric_max, patterns=patterns, reference=bool(s.get("reference", False)),
            mps=mps,
        )
    if SPINE not in sources:
        raise SourceConfigError(f"config: the spine table {SPINE} must be configured")
    for table, s in (raw.get("sources") or {}).items():  # after all sources: life may name a parent's date
        if s.get("life"):
            sources[str(table)] = replace(sources[str(table)],
                                          life=_life_spec(str(table), s["life"], sources))
    for table, s in (raw.get("sources") or {}).items():  # after all sources: record_ids name other sources
        sources[str(table)] = replace(sources[str(table)],
                                      record_ids=_record_id_domains(str(table), s.get("record_ids"), sources))
    for spec in sources.values():
        _check_every_column_constrained(spec)
    modes = {bool(sp.pseudo_key) for sp in sources.values() if sp.links_persons}
    if len(modes) > 1:
        raise SourceConfigError("config: person sources mix identifiers and pseudo_key; one delivery mode per run")
    if not sources[SPINE].links_persons:
        raise SourceConfigError(f"config: the spine {SPINE} needs identifiers or a pseudo_key")
    rpe = raw.get("reporting_period_end")
    if rpe is not None:
        rpe = str(rpe)
        import datetime as _dt
        try:
            _dt.date.fromisoformat(rpe)
        except ValueError:
            raise SourceConfigError(f"config: reporting_period_end must be an ISO date, got {rpe!r}") from None
    return SourcesConfig(sources=sources,
                         quarantine_threshold=float(raw.get("quarantine_threshold", 0.20)),
                         path=str(path), reporting_period_end=rpe,
                         linkage=dict(raw.get("linkage") or {}), raw=raw)


@dataclass
class ExtractRead:
    """One source as read from landing: all-string frame plus provenance."""

    table: str
    frame: pd.DataFrame
    files: list[dict]  # {file, sha256, rows, bytes}
    encoding_issues: list[dict]  # {file, line, fallback}
    row_file: list | None = None  # per row: the file it came from
    row_line: list | None = None  # per row: CSV line number (header = line 1) or Parquet row (1-based)
    extra_columns: list | None = None  # columns present but not in the contract (not read further)


def resolve_files(landing: Path, spec: SourceSpec) -> list[Path]:
    """The landing files of a source: its pattern's matches with a .csv or .parquet suffix.
    Refuses (``ExtractUnusable``, naming the source) a pattern leaving the landing folder, a
    match that is a link to something outside it, and a match that is not a regular file (a
    folder, a pipe: reading it would fail with a traceback, or wait for ever)."""
    try:
        check_file_pattern(spec.table, spec.file)
    except SourceConfigError as e:
        raise ExtractUnusable(str(e).removeprefix("config: ")) from None
    root = Path(os.path.realpath(landing))
    files = []
    for p in sorted(Path(p) for p in glob.glob(str(landing / spec.file))):
        if p.suffix.lower() not in (".csv", ".parquet"):
            continue
        rel = p.relative_to(landing)
        real = Path(os.path.realpath(p))
        if not real.is_relative_to(root):
            raise ExtractUnusable(f"{spec.table} ({rel}): rule file_in_landing failed: it is, or is reached "
                                  "through, a link to a file outside the landing folder; copy the file into "
                                  "the landing folder")
        if not real.is_file():
            what = "a folder" if real.is_dir() else "not a regular file"
            raise ExtractUnusable(f"{spec.table} ({rel}): rule file_is_file failed: it matches the file "
                                  f"pattern {spec.file} but is {what}")
        files.append(p)
    return files


def _decode_csv(data: bytes, fname: str) -> tuple[str, list[dict]]:
    """Decode CSV bytes as UTF-8; lines that are not UTF-8 fall back to cp1252 (latin-1 if
    even that fails) and are reported by line number."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    issues, lines = [], []
    for lineno, raw_line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw_line.decode("utf-8-sig" if lineno == 1 else "utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(raw_line.decode("cp1252"))
                fallback = "cp1252"
            except UnicodeDecodeError:
                lines.append(raw_line.decode("latin-1"))
                fallback = "latin-1"
            issues.append({"file": fname, "line": lineno, "fallback": fallback})
    return "".join(lines), issues


def check_columns_unique(table: str, fname: str, header, rename: dict) -> None:
    """Each contract column read from one column of the file: a header naming a column twice,
    or a rename giving two columns one name, is refused (rule columns_unique) rather than one
    of the two being read (pandas renames the second copy; a frame with two columns of one
    name failed later with an AttributeError)."""
    seen: dict[str, str] = {}
    for site in (str(h).strip() for h in header):
        name = rename.get(site, site)
        if name in seen:
            what = (f"column {site} appears twice in the header" if seen[name] == site else
                    f"columns {seen[name]} and {site} are both read as {name} (rename in the sources config)")
            raise ExtractUnusable(f"{table} ({fname}): rule columns_unique failed: {what}")
        seen[name] = site


def read_one_file(path: Path, spec: SourceSpec | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """One file as an all-string frame (values stripped, blank -> None). Raises ExtractUnusable
    for a file that cannot be read (empty, not a table, wrong delimiter, rows of the wrong
    shape, truncated), naming the file and the rule."""
    df, issues, _ = _read_table(path, spec)
    return df, issues


def _record_lines(text: str, delimiter: str, ncols: int, table: str, fname: str) -> list[int]:
    """The line (header = 1) each data record starts on, checking every record has the
    header's number of fields (rules csv_shape and file_complete). Blank lines are skipped,
    as the reader skips them. A quoted field may span lines, so records and lines can differ."""
    def refuse(rule, line, what):
        raise ExtractUnusable(f"{table} ({fname}): rule {rule} failed at line {line}: {what}; "
                              "no row of the file was read")

    def shape(line, n, last):
        if last and n < ncols and not text.endswith(("\n", "\r")):
            refuse("file_complete", line, f"the last line has {n} of the header's {ncols} fields and no "
                                          "line end (the file looks truncated)")
        refuse("csv_shape", line, f"{n} fields where the header has {ncols} (a delimiter inside an "
                                  "unquoted value, a missing or extra field, or a cut line)")

    if '"' not in text:  # fast path: one record a line (a line ends as for pandas: \n, \r\n or \r)
        lines, starts = re.split(r"\r\n|\r|\n", text), []
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=0)
        header_seen = False
        for i, ln in enumerate(lines):
            if not ln.strip():
                continue
            if not header_seen:
                header_seen = True
                continue
            n = ln.count(delimiter) + 1
            if n != ncols:
                shape(i + 1, n, i == last)
            starts.append(i + 1)
        return starts
    _allow_fields_of(len(text))
    # newline="": line ends as for pandas (a lone \r too), inside quoted fields as well
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts, rows, prev = [], [], 0
    try:
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                rows.append((prev + 1, len(row)))
            prev = reader.line_num
    except csv.Error:  # the file's shape cannot be checked: refused, never read unchecked
        refuse("csv_shape", prev + 1, "the record starting there cannot be split into fields")
    for j, (line, n) in enumerate(rows[1:], start=1):
        if n != ncols:
            shape(line, n, j == len(rows) - 1)
        starts.append(line)
    return starts


def _allow_fields_of(chars: int) -> None:
    """Let the csv module read a field as long as the whole text: its default limit (128 KiB)
    made it fail on one long quoted field, and the shape check was then skipped. The limit is
    process-wide, so it is only ever raised (a caller running at the same time keeps a limit
    at least as high as it set)."""
    if csv.field_size_limit() < chars + 1:
        csv.field_size_limit(chars + 1)


def _read_csv_arrow(text: str, delimiter: str, columns=None) -> tuple[pd.DataFrame, list[int]] | None:
    """The common case, read fast: a well-formed CSV file with one record a line, parsed by
    Arrow into text columns (stripped, blank -> None). None when Arrow refuses the file or a
    record is not on a line of its own (a quoted line break, a blank line, a header with a
    repeated name): the careful reader then reads it and names what is wrong. Same parsing
    rules as that reader (double quote, doubled quotes inside, nothing else escaped).
    ``columns``: only these header names are converted (all when None; every field of every
    record is still parsed and counted)."""
    table = _arrow_csv_table(text, delimiter, columns)
    if table is None:
        return None
    frame = pd.DataFrame({c: _text_column(table.column(c)) for c in table.column_names})
    return frame, list(range(2, table.num_rows + 2))


def _arrow_csv_table(text: str, delimiter: str, columns=None) -> pa.Table | None:
    """``_read_csv_arrow``'s Arrow table of raw text columns (not stripped), or None."""
    if not text:
        return None
    try:
        header = _header_names(text.split("\n", 1)[0], delimiter)
    except (csv.Error, StopIteration):
        return None
    return _arrow_csv_bytes(text.encode("utf-8"), header, delimiter, columns, skip_rows=1)


def _segment_table(header: bytes, body: bytes, delimiter: str, columns=None) -> pa.Table | None:
    """A segment's data lines (``body``) as ``_arrow_csv_table`` reads them after the file's
    ``header`` line, parsed from the bytes as they are: Arrow checks that each field it converts
    is UTF-8, so a segment that is needs no decoding into one Python string and encoding back
    (a third of a segment's reading). None when it is not (the text reader then reports the
    lines that are not UTF-8) or as ``_arrow_csv_table``."""
    if header.count(b"\r") != header.count(b"\r\n"):
        return None
    try:
        names = _header_names(header.decode("utf-8-sig").split("\n", 1)[0], delimiter)
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None
    return _arrow_csv_bytes(body, names, delimiter, columns)


def _arrow_csv_bytes(data: bytes, header: list[str], delimiter: str, columns=None,
                     skip_rows: int = 0) -> pa.Table | None:
    """CSV bytes (``skip_rows`` header lines, then records) as an Arrow table of text columns
    named ``header``, or None (see ``_read_csv_arrow``)."""
    import pyarrow.csv as pacsv

    if not data or data.count(b"\r") != data.count(b"\r\n"):  # lone carriage returns: the careful reader
        return None
    if len(header) < 2 or len(set(header)) != len(header) or not all(h.strip() for h in header):
        return None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=skip_rows, block_size=64 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True,
                                             escape_char=False, newlines_in_values=True,
                                             ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                 include_columns=[c for c in header if columns is None
                                                                  or c in columns],
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != _line_count(data) - skip_rows:  # a record spans lines, or a blank line was skipped
        return None
    return table


def _read_table(path: Path, spec: SourceSpec | None = None) -> tuple[pd.DataFrame, list[dict], list[int]]:
    """``read_one_file`` plus the line (CSV, header = 1) or row (Parquet, 1-based) of each row."""
    table = spec.table if spec else path.stem
    if path.stat().st_size == 0:
        raise ExtractUnusable(f"{table} ({path.name}): rule file_not_empty failed: the file is empty "
                              "(0 bytes, not even a header row)")
    rename = spec.rename if spec else {}
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.read_table(path)
        except Exception as e:  # corrupt or not Parquet at all
            raise ExtractUnusable(f"{table} ({path.name}): rule file_readable failed: not a readable "
                                  f"Parquet file ({type(e).__name__})") from None
        check_columns_unique(table, path.name, parquet.column_names, rename)
        df = pd.DataFrame({c: _text_column(_parquet_text(parquet.column(c), table, path.name, c))
                           for c in parquet.column_names})
        return df, [], list(range(1, len(df) + 1))
    text, issues = _decode_csv(path.read_bytes(), path.name)
    delimiter = spec.delimiter if spec else ","
    header = text.split("\n", 1)[0]
    try:
        check_columns_unique(table, path.name, _header_names(header.rstrip("\r"), delimiter), rename)
    except (csv.Error, StopIteration):  # no header at all: the readers below say so
        pass
    if delimiter not in header:
        others = [d for d in (",", ";", "\t", "|") if d != delimiter and d in header]
        if others:
            shown = {"\t": "tab"}.get(others[0], others[0])
            raise ExtractUnusable(
                f"{table} ({path.name}): rule delimiter failed: line 1 has no {delimiter!r} but "
                f"{shown!r}: the file looks {shown}-delimited (set delimiter in the sources config)")
    quick = _read_csv_arrow(text, delimiter)
    if quick is not None:
        return quick[0], issues, quick[1]
    try:
        # index_col=False: rows with one field more than the header must not shift the columns
        # (pandas would otherwise take the first column as an index); _record_lines refuses them.
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                         quoting=csv.QUOTE_MINIMAL, sep=delimiter, index_col=False)
    except pd.errors.EmptyDataError:
        raise ExtractUnusable(f"{table} ({path.name}): rule file_not_empty failed: no header row") from None
    except pd.errors.ParserError as e:
        import re

        msg = str(e)
        m = re.search(r"EOF inside string starting at row (\d+)", msg)
        if m:  # pandas counts rows of the file from 0
            raise ExtractUnusable(
                f"{table} ({path.name}): rule file_complete failed at line {int(m.group(1)) + 1}: a quoted "
                "field starts there and is not closed before the end of the file (the file looks "
                "truncated, or a quote is unbalanced); no row of the file was read") from None
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            raise ExtractUnusable(
                f"{table} ({path.name}): rule csv_shape failed at line {m.group(2)}: {m.group(3)} fields "
                f"where the header has {m.group(1)} (a delimiter inside an unquoted value, a missing or "
                "extra field, or a cut line); no row of the file was read") from None
        m = re.search(r"line (\d+)", msg)
        where = f"line {m.group(1)}" if m else "a line"
        raise ExtractUnusable(f"{table} ({path.name}): rule csv_shape failed at {where}: wrong number "
                              "of fields (unquoted delimiter or wrong delimiter)") from None
    lines = _record_lines(text, delimiter, len(df.columns), table, path.name)
    if len(lines) != len(df):  # the two readers disagree: refused, not numbered by guess
        raise ExtractUnusable(f"{table} ({path.name}): rule csv_shape failed: {len(df)} records read but "
                              f"{len(lines)} counted line by line (a stray quote or line end?); no row of "
                              "the file was read")
    return _blank_to_none(df), issues, lines


def _parquet_text(col: pa.ChunkedArray, table: str, fname: str, name: str) -> pa.ChunkedArray:
    """A Parquet column as text, from its own type in Arrow: an integer as its digits (through
    pandas, a nullable int64 column with one null became floats, and "9434765919.0" failed the
    NHS-number format on every row), a date as ISO, a timestamp as its date (the contract's
    dates are days), text as it is. A type that is not one value (list, struct, map) is refused."""
    t = col.type
    if pa.types.is_dictionary(t):
        return _parquet_text(col.cast(t.value_type), table, fname, name)
    if pa.types.is_timestamp(t):
        return pc.strftime(col, format="%Y-%m-%d")
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(len(col), pa.string())])
    if pa.types.is_nested(t):
        raise ExtractUnusable(f"{table} ({fname}): rule file_readable failed: column {name} holds "
                              f"{t} values, not one value a row")
    try:
        return col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):  # e.g. bytes that are not UTF-8
        raise ExtractUnusable(f"{table} ({fname}): rule file_readable failed: column {name} of type {t} "
                              "cannot be read as text (UTF-8)") from None


def _text_column(values) -> pd.Series:
    """Text values stripped of surrounding whitespace (Python's str.strip set, which Arrow's
    utf8_trim_whitespace matches), blank or missing -> None; object dtype."""
    try:
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(
            values, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # not all text (never from our readers): as str
        arr = pa.array([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values],
                       type=pa.string())
    trimmed = pc.utf8_trim_whitespace(arr)
    blanked = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    return pd.Series(blanked.to_numpy(zero_copy_only=False), dtype=object)


def _blank_to_none(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: _text_column(df[c].to_numpy(dtype=object)).set_axis(df.index) for c in df.columns},
                        index=df.index)


def _line_bounds(path: Path, segment_bytes: int) -> tuple[bytes, list[tuple[int, int]]]:
    """The header line and the byte ranges of the data lines, each range ending at a line end
    and about ``segment_bytes`` long (longer when one line is)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.readline()
        bounds, start = [], len(header)
        while start < size:
            end = min(start + segment_bytes, size)
            if end < size:
                f.seek(end - 1)
                end = end - 1 + len(f.readline())
            bounds.append((start, end))
            start = end
    return header, bounds


def csv_segments(path: Path, spec: SourceSpec, segment_bytes: int):
    """A large CSV file in segments of whole lines (so validation holds one segment, not the
    file; ``core.settings.validation_segment_bytes``): yields ``ExtractRead`` s (contract column
    names, text stripped, blank -> None) whose line numbers and encoding issues count from the
    file's header, as reading the file whole would. Returns None at once when the file is Parquet or not larger than
    ``segment_bytes``, and raises ``NotSegmentable`` when a segment is not a plain CSV of one
    record a line (a quoted line break, a blank line, a malformed row): such a file is read
    whole by ``read_extract``, whose careful reader names what is wrong."""
    if path.suffix.lower() != ".csv" or path.stat().st_size <= segment_bytes:
        return None
    return _iter_csv_segments(path, spec, segment_bytes)


class NotSegmentable(Exception):
    """A CSV file cannot be read in segments (see ``csv_segments``)."""


@dataclass(frozen=True)
class CsvSegment:
    """One segment of a CSV file: its byte range (whole data lines) and how many data lines
    come before it, so that its rows keep their line numbers in the file."""

    index: int
    start: int
    end: int
    lines_before: int


def _line_count(body: bytes) -> int:
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1)


def csv_segment_plan(path: Path, segment_bytes: int) -> tuple[bytes, list[CsvSegment]] | None:
    """The header and every segment of a CSV file larger than ``segment_bytes`` (None as
    ``csv_segments``), each with the data lines before it, so that segments can be read in any
    order or at once (``read_csv_segment``); one read of the file counts the lines."""
    if path.suffix.lower() != ".csv" or path.stat().st_size <= segment_bytes:
        return None
    header, bounds = _line_bounds(path, segment_bytes)
    plan, lines_before = [], 0
    with open(path, "rb") as f:
        for i, (start, end) in enumerate(bounds):
            plan.append(CsvSegment(i, start, end, lines_before))
            f.seek(start)
            lines_before += _line_count(f.read(end - start))
    return header, plan


def read_csv_segment(path: Path, spec: SourceSpec, header: bytes, segment: CsvSegment) -> ExtractRead:
    """One segment of ``csv_segment_plan`` as ``csv_segments`` yields it; raises
    ``NotSegmentable`` as it does."""
    with open(path, "rb") as f:
        f.seek(segment.start)
        body = f.read(segment.end - segment.start)
    return _segment_read(path, spec, header, body, segment.index, segment.lines_before)


def _site_columns(spec: SourceSpec, columns) -> set[str]:
    """The site's names of the contract ``columns``."""
    site_name = {v: k for k, v in spec.rename.items()}
    return {site_name.get(c, c) for c in columns}


def _segment_read(path, spec, header, body, i, lines_before) -> ExtractRead:
    table, issues = _segment_arrow(path, spec, header, body, i, None)
    check_columns_unique(spec.table, path.name, table.column_names, spec.rename)
    frame = pd.DataFrame({str(c).strip(): _text_column(table.column(c)) for c in table.column_names})
    frame = frame.rename(columns=spec.rename)
    issues = [{**e, "line": e["line"] + lines_before} for e in issues if i == 0 or e["line"] > 1]
    return ExtractRead(spec.table, frame, [], issues, None, list(range(lines_before + 2, lines_before + 2 + len(frame))),
                       [c for c in frame.columns if c not in spec.columns])


def _segment_arrow(path, spec, header, body, i, wanted) -> tuple[pa.Table, list[dict]]:
    """Segment ``i`` of a file as an Arrow table of raw text columns (the header's names) and its
    lines that are not UTF-8 (numbered from the header, as ``_decode_csv`` numbers them).
    ``wanted``: the site columns to convert (all when None). Parsed from the bytes when Arrow
    takes them (it checks each field it converts is UTF-8: with only some converted, the
    others' lines are not looked at), else decoded line by line. Raises ``NotSegmentable``."""
    names = None if wanted is None else [h for h in _header_names(
        header.decode("utf-8-sig", errors="replace").split("\n", 1)[0], spec.delimiter) if h.strip() in wanted]
    table = _segment_table(header, body, spec.delimiter, names)
    if table is not None:
        return table, []
    text, issues = _decode_csv(header + body, path.name)
    header_text = text.split("\n", 1)[0]
    if i == 0 and spec.delimiter not in header_text:
        raise NotSegmentable("the header has no delimiter")
    table = _arrow_csv_table(text, spec.delimiter, None if wanted is None else
                             [h for h in _header_names(header_text, spec.delimiter) if h.strip() in wanted])
    if table is None:
        raise NotSegmentable(f"segment {i + 1}")
    return table, issues


def _iter_csv_segments(path: Path, spec: SourceSpec, segment_bytes: int):
    header, bounds = _line_bounds(path, segment_bytes)
    lines_before = 0  # data lines in the segments already read
    with open(path, "rb") as f:
        for i, (start, end) in enumerate(bounds):
            f.seek(start)
            body = f.read(end - start)
            yield _segment_read(path, spec, header, body, i, lines_before)
            lines_before += _line_count(body)


def csv_value_counts(path: Path, spec: SourceSpec, segment_bytes: int, columns: list[str],
                     segments: int | None = None) -> dict:
    """How many rows hold each distinct value (stripped; blank -> None) of the contract
    ``columns`` of a large CSV file (of its first ``segments`` only, when given), read segment by
    segment as ``csv_segments`` reads it and raising ``NotSegmentable`` as it does: column ->
    (values, counts), object and int64 arrays.
    Counted in Arrow: a date column of 40 million rows has a few thousand distinct values, and
    turning every value into a Python string first took most of a minute."""
    header, bounds = _line_bounds(path, segment_bytes)
    bounds = bounds if segments is None else bounds[:segments]
    wanted = _site_columns(spec, columns)
    parts: dict[str, list] = {c: [] for c in columns}
    with open(path, "rb") as f:
        for i, (start, end) in enumerate(bounds):
            f.seek(start)
            table, _ = _segment_arrow(path, spec, header, f.read(end - start), i, wanted)
            for site in table.column_names:
                col = spec.rename.get(site.strip(), site.strip())
                if col in parts:
                    parts[col].append(pc.value_counts(pc.utf8_trim_whitespace(table.column(site))).flatten())
    out = {}
    for col, counted in parts.items():
        if not counted:
            continue
        values = pa.concat_arrays([c[0] for c in counted])
        counts = pa.concat_arrays([c[1] for c in counted])
        summed = pa.table({"v": values, "n": counts}).group_by("v").aggregate([("n", "sum")])
        v = summed.column("v").to_numpy(zero_copy_only=False).astype(object)
        out[col] = (np.where((v == "") | pd.isna(v), None, v), summed.column("n_sum").to_numpy().astype("int64"))
    return out


def _header_names(header_line: str, delimiter: str) -> list[str]:
    _allow_fields_of(len(header_line))
    return next(csv.reader([header_line.rstrip("\r")], delimiter=delimiter))


def read_extract(landing: Path, spec: SourceSpec) -> ExtractRead:
    """Read every file of one source, rename site columns to contract names and return an
    all-string frame (missing = None) with a fresh RangeIndex."""
    files = resolve_files(landing, spec)
    if not files:
        raise ExtractUnusable(f"{spec.table}: no file matches landing/{spec.file} (rule: file_present)")
    frames, infos, issues, row_file, row_line = [], [], [], [], []
    for f in files:
        df, enc, lines = _read_table(f, spec)
        df.columns = [str(c).strip() for c in df.columns]
        df = df.rename(columns=spec.rename)
        frames.append(df)
        issues.extend(enc)
        rel = str(f.relative_to(landing))
        infos.append({"file": rel, "sha256": sha256_file(f), "rows": int(len(df)), "bytes": f.stat().st_size})
        row_file += [rel] * len(df)
        row_line += lines
    if len(frames) > 1:  # a column one file lacks comes out of concat as NaN: missing is None
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.astype(object).where(frame.notna(), None)
    else:
        frame = frames[0].reset_index(drop=True)
    extra = [c for c in frame.columns if c not in spec.columns]
    return ExtractRead(spec.table, frame, infos, issues, row_file, row_line, extra)
