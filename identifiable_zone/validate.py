"""Great Expectations suites per raw source, quarantine of failing rows, whole-extract checks.

Each source gets a suite built in code from its config entry (identifiable_zone.sources):
schema present, record id present and unique (exact duplicate rows: the extra copies only),
dates parse and are not in the future (after the config's ``reporting_period_end``, else
after the run date), coded fields in their allowed sets, numbers numeric, NHS number format. The suite runs on a pandas frame through the GX
ephemeral context (pandas datasource). GX's ``unexpected_index_list`` (result format
COMPLETE) gives the failing rows; each rule's action decides their fate:

- ``quarantine``: the row is removed from the accepted rows and written to
  ``identifiable/quarantine/<table>.parquet`` (record id, rule, field, row number);
- ``nullify``: the value is blanked, the row kept, and the failure written to
  ``identifiable/dq_flags/<table>.parquet`` (an unparseable date of birth should not cost
  an A&E attendance; the record can still link on its other identifiers);
- ``report`` (built-in checks only): row and value kept; counted in the summary
  (``reported_by_rule``, ``reported_examples``: file and line) and logged.

Rules on dates besides ``date_parses`` and ``date_not_future`` (each takes the action of the
date column it names):

- ``date_unambiguous``: in a column written mostly in one format, a DD/MM/YYYY value whose day
  and month are both 12 or less (and differ) could be either date (e.g. a US-formatted row);
  other values in a minority format are kept and reported (``date_format_consistent``);
- ``date_order``: the later date of a configured pair (``date_order``, e.g. APC discharge
  after admission) is before the earlier one;
- ``date_after_birth`` / ``date_not_after_death``: an event date of the ``life`` config is
  before the person's date of birth or after their date of death, taken from the record
  itself or from its parent record (e.g. a GP appointment and its ``gp_patients`` record:
  pass the parent's accepted rows as ``parents``; without them the rule is listed under
  ``rules_not_run``). Only dates that pass their own rules are compared.

``numeric_min`` / ``numeric_max``: a number outside the configured ``[min, max]`` (e.g. a negative
length of stay, an NHS number typed into an age). ``pattern``: a value of a coded column that
does not match its pattern whole; ``nhs_number_like``: a value of such a column that is ten
digits passing the NHS number check (a pattern for SNOMED CT codes admits digit strings): both
take the pattern's action. Messages and tables name the rule and field, never the value.
``mps_person_id_present`` / ``mps_person_id_nhs_number`` (sources with NHS England's MPS fields,
``mps`` config): the Person_ID is blank where its type says NHS number or MPS_ID, or is not a valid
NHS number where its type says traced NHS number (action of ``mps``); the type's codes and the
confidence's 0-100 range are checked as ``code_allowed`` and ``numeric``.
Reported only: ``nhs_number_modulus11`` (ten digits failing the Modulus 11 check: kept, never
used for deterministic links) and, on the spine, ``nhs_number_unique`` (one valid NHS number
on several records: linkage collapses them into one person).

Both tables carry the file and line (CSV line, header = 1; Parquet row, 1-based) of each
failing row, so a site can fix its extract; never a value. Columns present in an extract but
not in the contract are not read further and are listed in the summary (``extra_columns``).

Invariant asserted per source: rows in = rows accepted + rows quarantined.
An extract is unusable (``ExtractUnusable``) when required columns are missing, the spine
is empty, or more than ``quarantine_threshold`` of its rows are quarantined; a file that
cannot be read as a table (wrong delimiter, rows of the wrong shape, truncated) is refused
whole when read (``identifiable_zone.sources``): no row of it is accepted or quarantined.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from identifiable_zone import normalise as nz
from identifiable_zone.mps import person_id_kinds
from identifiable_zone.sources import ExtractRead, ExtractUnusable, SourceSpec, SPINE

log = logging.getLogger(__name__)

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
NUMBER = r"^-?\d+(\.\d+)?$"
TEN_DIGITS = r"^\d{10}$"

_GX = {}


def _gx_context():
    """One ephemeral GX context per process, progress bars off."""
    if "ctx" not in _GX:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _GX["ctx"] = ctx
        _GX["n"] = 0
    return _GX["ctx"]


@contextmanager
def _dataframe_batch(name: str, frame: pd.DataFrame):
    """A GX batch of ``frame`` on a datasource of its own, deleted afterwards. A datasource's
    execution engine keeps every batch it loaded and every metric it computed (column values,
    failing-row lists), so one shared datasource held each extract for the rest of the run
    (1.4 GiB after GP appointments at 50,000 people)."""
    ctx = _gx_context()
    _GX["n"] += 1
    ds = ctx.data_sources.add_pandas(f"identifiable_landing_{_GX['n']}")
    try:
        bd = ds.add_dataframe_asset(f"{name}_{_GX['n']}").add_batch_definition_whole_dataframe("whole")
        yield bd.get_batch(batch_parameters={"dataframe": frame})
    finally:
        ctx.data_sources.delete(ds.name)


@dataclass
class ValidationResult:
    table: str
    accepted: pd.DataFrame
    quarantine: pd.DataFrame  # record_id, rule, field, row
    flags: pd.DataFrame  # record_id, rule, field, row
    summary: dict
    reported: pd.DataFrame | None = None  # report-only failures (row and value kept), same columns
    date_format_counts: dict | None = None  # date column -> rows per format (parsed values only)


def _before(x: pd.Series, y: pd.Series) -> pd.Series:
    """x < y for ISO date strings, False where either is missing."""
    xa, ya = x.to_numpy(dtype=object), y.to_numpy(dtype=object)
    out = np.zeros(len(xa), dtype=bool)
    both = pd.notna(xa) & pd.notna(ya)
    if both.any():
        out[both] = (xa[both] < ya[both]).astype(bool)
    return pd.Series(out, index=x.index, dtype=bool)


def _verdicts(fails, known, bad: str) -> np.ndarray:
    """'ok' / ``bad`` where ``known``, None (not judged) elsewhere."""
    fails, known = np.asarray(fails, dtype=bool), np.asarray(known, dtype=bool)
    out = np.full(len(known), None, dtype=object)
    out[known] = "ok"
    out[fails & known] = bad
    return out


def _add_verdict(chk: pd.DataFrame, name: str, fails, known, bad: str, codes: np.ndarray | None = None) -> None:
    """Add helper column ``name`` for GX: 'ok' / ``bad`` where ``known``, None (not judged)
    elsewhere. Only when some row fails: GX hashes every column of the frame it validates, so
    an idle helper column costs time on a large extract; build_suite leaves the rule of an
    absent helper column out (no row fails it either way). With ``codes``, ``fails`` and
    ``known`` are per distinct value of a column and ``codes`` takes them to the rows."""
    verdict = _verdicts(fails, known, bad)
    if (verdict == bad).any():
        chk[name] = pd.Series(verdict if codes is None else nz.take_distinct(verdict, codes), index=chk.index, dtype=object)


def _categories(s: pd.Series) -> pd.Series:
    """``s`` as a categorical in order of first appearance (no sort of the categories: a
    record id column has as many as rows)."""
    codes, values = pd.factorize(s.to_numpy(dtype=object), use_na_sentinel=True)
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(values, dtype=object)), index=s.index)


def parent_dates(spec: SourceSpec, parents: dict | None) -> dict:
    """For each parent date its life rules read (``SourceSpec.parent_date_refs``), when the
    parent's rows are given: (table, column) -> Series of the parent's ISO date by parent id.
    Worked out once per file, not per segment: at 2,000,000 people the GP patients' dates of
    birth and death were parsed again for each of about 40 segments of GP appointments."""
    lookups = {}
    for ref in spec.parent_date_refs:
        parent = (parents or {}).get(ref.table)
        if parent is None:
            continue
        p = parent[[ref.parent_id, ref.column]].dropna(subset=[ref.parent_id])
        p = p[~p[ref.parent_id].duplicated(keep=False)]  # a key on two parent rows says nothing
        iso = nz.date_to_iso(nz.parse_date(p[ref.column]))
        # an object index: its hash table is kept and reused (``look_up``); pandas' text index rebuilds it
        ids = pd.Index(p[ref.parent_id].to_numpy(dtype=object), dtype=object)
        lookups[(ref.table, ref.column)] = pd.Series(iso.to_numpy(dtype=object), index=ids, dtype=object)
    return lookups


def _reference_dates(df: pd.DataFrame, ref, usable: dict, lookups: dict):
    """ISO birth/death date of each row's person: the record's own column or its parent
    record's (None when unknown); None overall when the parent rows were not given
    (``lookups``: ``parent_dates``)."""
    if ref is None:
        return None
    if not ref.table:
        return usable[ref.column]
    lookup = lookups.get((ref.table, ref.column))
    if lookup is None:
        return None
    return pd.Series(look_up(lookup, df[ref.key]), index=df.index, dtype=object)


def look_up(lookup: pd.Series, keys) -> np.ndarray:
    """Each key's value in ``lookup`` (a ``parent_dates`` Series: unique ids), None where the
    key or its value is missing. The lookup's hash table is built on its first use and kept
    with it, so the segments of a file share it (``Series.map`` built it again for each: 2.5
    s a segment of GP appointments at 2 million people)."""
    pos = lookup.index.get_indexer(pd.Index(np.asarray(keys, dtype=object), dtype=object))
    found = np.full(len(pos), None, dtype=object)
    hit = pos >= 0
    found[hit] = lookup.to_numpy(dtype=object)[pos[hit]]
    return np.where(pd.isna(found), None, found)


def counted_format_counts(values: np.ndarray, counts: np.ndarray) -> dict[str, int]:
    """Rows per date format (``normalise.DATE_FORMAT_LABELS``; values that do not parse are not
    counted) from a column's distinct values and how many rows hold each
    (``sources.csv_value_counts``)."""
    _, fmt = nz.parse_date_and_format(pd.Series(values, dtype=object))
    return _counts_per_format(np.asarray(counts, dtype="int64"), fmt)


def _rows_per_format(codes: np.ndarray, fmt: pd.Series) -> dict[str, int]:
    """Rows per format, from the rows' codes into the distinct values and each value's format."""
    return _counts_per_format(np.bincount(codes[codes >= 0], minlength=len(fmt)), fmt)


def _counts_per_format(rows_per_value: np.ndarray, fmt: pd.Series) -> dict[str, int]:
    counts = pd.Series(rows_per_value).groupby(fmt.to_numpy(dtype=object)).sum()
    return {str(f): int(n) for f, n in counts.items() if n > 0}


def main_date_format(counts: dict[str, int]) -> str | None:
    """The format most rows are written in; ties to the earlier of DATE_FORMAT_LABELS."""
    counts = {f: n for f, n in counts.items() if n > 0}
    return max(counts, key=lambda f: (counts[f], -nz.DATE_FORMAT_LABELS.index(f))) if counts else None


def add_format_counts(total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    return {f: total.get(f, 0) + counts.get(f, 0) for f in dict.fromkeys([*total, *counts])}


def _derived_frame(df: pd.DataFrame, spec: SourceSpec, latest: str, lookups: dict,
                   main_formats: dict | None = None) -> tuple[pd.DataFrame, dict, list, dict]:
    """The frame GX validates: the raw columns plus normalised helper columns, the
    normalised values to put back into accepted rows, the rules that could not be run, and
    each date column's rows per format.
    ``latest``: the last allowed date (ISO). Date rules are worked out once per distinct
    value of a column (an extract of millions of rows holds a few thousand dates).
    ``main_formats``: date column -> the format most of its file's rows are in, when ``df``
    is a segment of a larger file (else taken from ``df``)."""
    chk = df.copy()
    normalised, usable, not_run, format_counts = {}, {}, [], {}
    # exact duplicate rows: every copy after the first fails; the first is judged on its own
    dup_copy = df.duplicated(keep="first")
    chk["__exact_duplicate"] = pd.Series(np.where(dup_copy.to_numpy(), "duplicate", "ok"), index=df.index,
                                         dtype=object)
    chk[f"{spec.record_id}__first_copy"] = df[spec.record_id].where(~dup_copy, None)
    for col in spec.dates:
        codes, values = pd.factorize(df[col].to_numpy(dtype=object), use_na_sentinel=True)
        parsed, fmt = nz.parse_date_and_format(pd.Series(values, dtype=object))
        iso = nz.date_to_iso(parsed).to_numpy(dtype=object)
        normalised[col] = pd.Series(nz.take_distinct(iso, codes), index=df.index, dtype=object)
        # ISO where it parsed, a marked non-date where it did not (so the regex fails), None if blank
        chk[f"{col}__iso"] = pd.Series(nz.take_distinct(np.where(pd.isna(iso), "unparsed", iso), codes), index=df.index,
                                       dtype=object)
        in_future = np.array([i is not None and i > latest for i in iso.tolist()], dtype=bool)
        chk[f"{col}__not_future"] = pd.Series(nz.take_distinct(_verdicts(in_future, pd.notna(iso), "future"), codes),
                                              index=df.index, dtype=object)
        # formats: the column's main one (most rows of the file; ties to the earlier of DATE_FORMAT_LABELS)
        format_counts[col] = _rows_per_format(codes, fmt)
        main = main_formats.get(col) if main_formats is not None else main_date_format(format_counts[col])
        known = fmt.notna().to_numpy()
        _add_verdict(chk, f"{col}__format", (fmt != main).to_numpy(), known, "other", codes)
        day_first = ((fmt == "DD/MM/YYYY") & (main != "DD/MM/YYYY")).to_numpy()
        ambiguous = (day_first & (parsed.dt.day <= 12).to_numpy() & (parsed.dt.month <= 12).to_numpy()
                     & (parsed.dt.day != parsed.dt.month).to_numpy())
        _add_verdict(chk, f"{col}__unambiguous", ambiguous, known, "ambiguous", codes)
        # a date other rules may compare with: parsed, not after the period, not ambiguous
        ok = pd.notna(iso) & ~in_future & ~ambiguous
        usable[col] = pd.Series(nz.take_distinct(np.where(ok, iso, None), codes), index=df.index, dtype=object)
    for earlier, later in spec.date_order:
        a, b = usable[earlier], usable[later]
        _add_verdict(chk, f"{later}__after_{earlier}", _before(b, a), a.notna() & b.notna(), "before")
    for col, low in spec.numeric_min.items():
        num = pd.to_numeric(df[col].where(df[col].astype("string").str.fullmatch(NUMBER).fillna(False)),
                            errors="coerce")
        _add_verdict(chk, f"{col}__min", num < low, num.notna(), "below")
    for col, high in spec.numeric_max.items():
        num = pd.to_numeric(df[col].where(df[col].astype("string").str.fullmatch(NUMBER).fillna(False)),
                            errors="coerce")
        _add_verdict(chk, f"{col}__max", num > high, num.notna(), "above")
    for col in spec.patterns:  # per distinct value: a code column of millions of rows has few
        codes, values = pd.factorize(df[col].to_numpy(dtype=object), use_na_sentinel=True)
        _add_verdict(chk, f"{col}__not_nhs_number", nz.nhs_number_is_valid(pd.Series(values, dtype=object)),
                     np.ones(len(values), dtype=bool), "nhs_number", codes)
    life = spec.life
    if life is not None:
        for what, ref, rule, cols in (("birth", life.birth, "date_after_birth", life.after_birth),
                                      ("death", life.death, "date_not_after_death", life.not_after_death)):
            ref_iso = _reference_dates(df, ref, usable, lookups) if cols else None
            for col in cols:
                if not ref.table and ref.column == col:
                    continue
                if ref_iso is None:
                    not_run.append({"rule": rule, "field": col,
                                    "reason": f"the rows of {ref.table} (for {ref}) were not given"})
                    continue
                ev = usable[col]
                fails = _before(ev, ref_iso) if what == "birth" else _before(ref_iso, ev)
                _add_verdict(chk, f"{col}__{what}", fails, ev.notna() & ref_iso.notna(), "outside_life")
    mps = spec.mps
    if mps is not None:  # the Person_ID its type claims: present, and a valid NHS number if traced
        kind = person_id_kinds(df, mps)
        pid = df[mps.person_id]
        _add_verdict(chk, f"{mps.person_id}__present", pid.isna().to_numpy(),
                     kind.isin(["nhs_number", "mps_id"]).to_numpy(), "missing")
        _add_verdict(chk, f"{mps.person_id}__nhs_number", ~nz.nhs_number_is_valid(pid).to_numpy(),
                     ((kind == "nhs_number") & pid.notna()).to_numpy(), "invalid")
    nhs_col = spec.identifiers.get("nhs_number")
    if nhs_col:
        cleaned = nz.clean_nhs_number(df[nhs_col])
        normalised[nhs_col] = cleaned
        chk[f"{nhs_col}__clean"] = cleaned
        ten = nz.nhs_number_format_ok(cleaned)
        valid = nz.nhs_number_is_valid(cleaned)
        _add_verdict(chk, f"{nhs_col}__modulus11", ~valid, ten, "fails")
        if spec.table == SPINE:  # valid numbers, exact duplicate copies left out (judged above)
            first = cleaned.where(valid & ~dup_copy, None)
            if first.dropna().duplicated().any():
                chk[f"{nhs_col}__valid_first_copy"] = first
    return chk, normalised, not_run, format_counts


def build_suite(spec: SourceSpec, name: str, columns=None):
    """The GX suite for one source. Each expectation's meta carries rule, field and action.
    ``columns``: the columns of the frame to validate; the rules added with this change
    (date_unambiguous, date_format_consistent, date_order, date_after_birth,
    date_not_after_death, numeric_min, numeric_max, nhs_number_like, nhs_number_modulus11,
    nhs_number_unique) are in the
    suite when their helper column is (see _add_verdict), all of them when None."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    have = None if columns is None else set(columns)

    def present(col):
        return have is None or col in have

    suite = gx.ExpectationSuite(name=name)
    rid = spec.record_id
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(
        column=rid, meta={"rule": "record_id_present", "field": rid, "action": "quarantine"}))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
        column="__exact_duplicate", value_set=["ok"],
        meta={"rule": "exact_duplicate_row", "field": "(whole row)", "action": "quarantine"}))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(
        column=f"{rid}__first_copy", meta={"rule": "record_id_unique", "field": rid, "action": "quarantine"}))
    for col, action in spec.dates.items():
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=f"{col}__iso", regex=ISO_DATE,
            meta={"rule": "date_parses", "field": col, "action": action}))
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
            column=f"{col}__not_future", value_set=["ok"],
            meta={"rule": "date_not_future", "field": col, "action": action}))
        if present(f"{col}__unambiguous"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{col}__unambiguous", value_set=["ok"],
                meta={"rule": "date_unambiguous", "field": col, "action": action}))
        if present(f"{col}__format"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{col}__format", value_set=["ok"],
                meta={"rule": "date_format_consistent", "field": col, "action": "report"}))
    for earlier, later in spec.date_order:
        if present(f"{later}__after_{earlier}"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{later}__after_{earlier}", value_set=["ok"],
                meta={"rule": "date_order", "field": later, "action": spec.dates[later]}))
    life = spec.life
    for what, rule, cols in (("birth", "date_after_birth", life.after_birth if life else ()),
                             ("death", "date_not_after_death", life.not_after_death if life else ())):
        for col in cols:
            if present(f"{col}__{what}"):
                suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                    column=f"{col}__{what}", value_set=["ok"],
                    meta={"rule": rule, "field": col, "action": spec.dates[col]}))
    for col, rule in spec.codes.items():
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
            column=col, value_set=list(rule.values),
            meta={"rule": "code_allowed", "field": col, "action": rule.action}))
    for col, action in spec.numeric.items():
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=col, regex=NUMBER, meta={"rule": "numeric", "field": col, "action": action}))
    for col in spec.numeric_min:
        if present(f"{col}__min"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{col}__min", value_set=["ok"],
                meta={"rule": "numeric_min", "field": col, "action": spec.numeric[col]}))
    for col in spec.numeric_max:
        if present(f"{col}__max"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{col}__max", value_set=["ok"],
                meta={"rule": "numeric_max", "field": col, "action": spec.numeric[col]}))
    for col, rule in spec.patterns.items():
        # the whole value: GX searches the regex anywhere in the value
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=col, regex=rf"^(?:{rule.regex})\Z",
            meta={"rule": "pattern", "field": col, "action": rule.action}))
        if present(f"{col}__not_nhs_number"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{col}__not_nhs_number", value_set=["ok"],
                meta={"rule": "nhs_number_like", "field": col, "action": rule.action}))
    if spec.mps is not None:
        pid = spec.mps.person_id
        for helper, rule in (("present", "mps_person_id_present"), ("nhs_number", "mps_person_id_nhs_number")):
            if present(f"{pid}__{helper}"):
                suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                    column=f"{pid}__{helper}", value_set=["ok"],
                    meta={"rule": rule, "field": pid, "action": spec.mps.action}))
    nhs_col = spec.identifiers.get("nhs_number")
    if nhs_col:
        suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(
            column=f"{nhs_col}__clean", regex=TEN_DIGITS,
            meta={"rule": "nhs_number_format", "field": nhs_col, "action": spec.nhs_number_action}))
        if present(f"{nhs_col}__modulus11"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
                column=f"{nhs_col}__modulus11", value_set=["ok"],
                meta={"rule": "nhs_number_modulus11", "field": nhs_col, "action": "report"}))
        if spec.table == SPINE and present(f"{nhs_col}__valid_first_copy"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(
                column=f"{nhs_col}__valid_first_copy",
                meta={"rule": "nhs_number_unique", "field": nhs_col, "action": "report"}))
    if spec.table == SPINE:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(
            min_value=1, meta={"rule": "table_not_empty", "field": "", "action": "unusable"}))
    return suite


def _schema_check(read: ExtractRead, spec: SourceSpec) -> None:
    """GX schema expectations; a missing required column makes the extract unusable."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    _gx_context()  # suites need the context to exist
    suite = gx.ExpectationSuite(name=f"{spec.table}_schema")
    for col in spec.columns:
        suite.add_expectation(gxe.ExpectColumnToExist(column=col))
    with _dataframe_batch(f"{spec.table}_schema", read.frame.head(0)) as batch:
        res = batch.validate(suite)
    missing = [r.expectation_config.kwargs["column"] for r in res.results if not r.success]
    if missing:
        files = ", ".join(f["file"] for f in read.files)
        raise ExtractUnusable(
            f"{spec.table} ({files}): rule columns_present failed: {len(missing)} required "
            f"column(s) missing: {', '.join(missing)}")


def check_quarantine_threshold(table: str, files: str, n: int, quarantine: pd.DataFrame,
                               threshold: float) -> None:
    """ExtractUnusable when more than ``threshold`` of the ``n`` rows are quarantined, naming
    the worst rule and the file and line of its first row (``quarantine``: record_id, rule,
    field, row, file, line, sorted by row)."""
    n_q = int(quarantine["row"].nunique()) if len(quarantine) else 0
    if not n or n_q / n <= threshold:
        return
    by_rule = quarantine.groupby(["rule", "field"]).size().rename("rows").reset_index().to_dict("records")
    top = max(by_rule, key=lambda d: d["rows"])
    first = quarantine[(quarantine["rule"] == top["rule"]) & (quarantine["field"] == top["field"])].iloc[0]
    raise ExtractUnusable(
        f"{table} ({files}): {n_q} of {n} rows ({n_q / n:.1%}) fail row-level rules, over "
        f"the {threshold:.0%} threshold; worst rule {top['rule']} on {top['field']}: "
        f"{int(top['rows'])} rows (first at {first['file']} line {int(first['line'])})")


IDENTIFIER_LOSS_LIMIT = 0.5  # "most of the column": more than half of the rows blanked


def check_identifier_loss(spec: SourceSpec, files: str, n: int, flags: pd.DataFrame) -> None:
    """ExtractUnusable when a rule blanked a person column (identifier, upstream key or
    demographic) in more than half of the ``n`` rows (``flags``: record_id, rule, field, row,
    file, line): the rows are kept, so the extract would otherwise be accepted with its records
    left unlinked (e.g. NHS numbers written as decimals, "9434765919.0", or by a spreadsheet
    as 9.43E+09). Names the field, the rule and the first line."""
    if not n or not len(flags):
        return
    lost = flags[flags["field"].isin(spec.person_columns)]
    for fld, grp in lost.groupby("field", sort=True):
        rows = int(grp["row"].nunique())
        if rows / n <= IDENTIFIER_LOSS_LIMIT:
            continue
        first = grp.sort_values("row", kind="stable").iloc[0]
        rule = grp["rule"].value_counts().index[0]
        raise ExtractUnusable(
            f"{spec.table} ({files}): rule identifier_kept failed on {fld}: {rows} of {n} rows ({rows / n:.0%}) "
            f"lost their value to rule {rule} (first at {first['file']} line {int(first['line'])}); check how "
            "the file was written (e.g. numbers as decimals or in scientific notation)")


def _index_list(result: dict) -> list:
    idx = result.get("unexpected_index_list") or []
    out = []
    for i in idx:
        out.append(i["index"] if isinstance(i, dict) and "index" in i else i)
    return out


def validate_source(read: ExtractRead, spec: SourceSpec, threshold: float | None = 0.20,
                    latest_date: str | None = None, parents: dict | None = None,
                    main_formats: dict | None = None, parent_lookups: dict | None = None) -> ValidationResult:
    """Validate one extract; return accepted rows (dates ISO, NHS numbers cleaned), the
    quarantine and flag tables, and a summary of counts (no identifiers).

    ``latest_date`` (ISO): dates after it fail ``date_not_future`` (default: today, UTC).
    ``parents``: table -> accepted rows of the parent tables its ``life`` config names (e.g.
    ``gp_patients`` for the dates of birth and death of GP appointments); rules needing a
    parent that is not given are skipped and listed in the summary (``rules_not_run``).
    For one segment of a larger file (``identifiable_zone.file_validation``): ``main_formats``
    gives each date column's main format in the whole file, and ``threshold`` None leaves the
    quarantine threshold to the whole file, and ``parent_lookups`` (``parent_dates``) the
    parents' dates worked out once for all its segments (else from ``parents``)."""
    from datetime import datetime, timezone

    latest = latest_date or datetime.now(timezone.utc).date().isoformat()
    _schema_check(read, spec)
    df = read.frame[list(spec.columns)].reset_index(drop=True)
    n = len(df)
    lookups = parent_lookups if parent_lookups is not None else parent_dates(spec, parents)
    chk, normalised, not_run, format_counts = _derived_frame(df, spec, latest, lookups, main_formats)

    suite = build_suite(spec, f"{spec.table}_rows", chk.columns)
    # GX gets only the columns its expectations read: it fingerprints the whole frame it is given
    checked = list(dict.fromkeys(e.column for e in suite.expectations if getattr(e, "column", None)))
    # and as categories: GX fingerprints the frame twice per batch (each time factorising
    # every text column) and its set, regex and uniqueness checks work on the distinct values
    chk = pd.DataFrame({c: _categories(chk[c]) for c in checked}, index=chk.index)
    with _dataframe_batch(spec.table, chk) as batch:
        res = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                                   "return_unexpected_index_query": False})

    files = ", ".join(f["file"] for f in read.files)
    q_parts, f_parts, r_parts, rules = [], [], [], []
    for r in res.results:
        meta = r.expectation_config.meta or {}
        rule, fld, action = meta.get("rule"), meta.get("field"), meta.get("action")
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise ExtractUnusable(f"{spec.table} ({files}): rule {rule} on {fld} could not be evaluated")
        if action == "unusable":
            if not r.success:
                raise ExtractUnusable(f"{spec.table} ({files}): rule {rule} failed: 0 rows")
            continue
        idx = _index_list(r.result)
        count = int(r.result.get("unexpected_count") or 0)
        if count != len(idx):
            raise AssertionError(f"{spec.table}: GX index list for {rule}/{fld} incomplete")
        rules.append({"rule": rule, "field": fld, "action": action, "rows": count})
        if not idx:
            continue
        part = pd.DataFrame({"row": idx, "rule": rule, "field": fld})
        {"quarantine": q_parts, "nullify": f_parts, "report": r_parts}[action].append(part)

    row_file = pd.Series(read.row_file if read.row_file is not None else [files] * n, dtype=object)
    row_line = pd.Series(read.row_line if read.row_line is not None else range(2, n + 2), dtype="int64")

    def _finish(parts):
        if not parts:
            return pd.DataFrame({"record_id": pd.Series(dtype=object), "rule": pd.Series(dtype=object),
                                 "field": pd.Series(dtype=object), "row": pd.Series(dtype="int64"),
                                 "file": pd.Series(dtype=object), "line": pd.Series(dtype="int64")})
        t = pd.concat(parts, ignore_index=True)
        t["row"] = t["row"].astype("int64")
        t["record_id"] = df[spec.record_id].to_numpy()[t["row"].to_numpy()]
        t["file"] = row_file.to_numpy()[t["row"].to_numpy()]
        t["line"] = row_line.to_numpy()[t["row"].to_numpy()]
        return t[["record_id", "rule", "field", "row", "file", "line"]].sort_values(
            ["row", "rule", "field"], kind="stable").reset_index(drop=True)

    quarantine = _finish(q_parts)
    flags = _finish(f_parts)
    reported = _finish(r_parts)

    accepted = df.copy()
    for col, vals in normalised.items():
        accepted[col] = vals
    for fld, grp in flags.groupby("field"):
        accepted.loc[grp["row"].unique(), fld] = None
    bad_rows = pd.Index(quarantine["row"].unique())
    accepted = accepted.drop(index=bad_rows).reset_index(drop=True)

    n_q = len(bad_rows)
    assert n == len(accepted) + n_q, f"{spec.table}: rows in != accepted + quarantined"

    by_rule = (quarantine.groupby(["rule", "field"]).size().rename("rows").reset_index()
               .to_dict("records")) if len(quarantine) else []

    def _examples(t):  # where to look: file, line, rule, field (never a value)
        return [{"file": r.file, "line": int(r.line), "rule": r.rule, "field": r.field}
                for r in t.groupby(["rule", "field"]).head(3).itertuples()]

    summary = {
        "table": spec.table, "files": read.files, "encoding_issues": len(read.encoding_issues),
        "encoding_issue_lines": [{"file": e["file"], "line": e["line"]} for e in read.encoding_issues[:50]],
        "rows_in": n, "rows_accepted": len(accepted), "rows_quarantined": n_q,
        "quarantine_by_rule": [{k: (int(v) if k == "rows" else v) for k, v in d.items()} for d in by_rule],
        "flags_by_rule": [{"rule": x["rule"], "field": x["field"], "rows": x["rows"]}
                          for x in rules if x["action"] == "nullify" and x["rows"]],
        "quarantine_examples": _examples(quarantine), "flag_examples": _examples(flags),
        "reported_by_rule": [{"rule": x["rule"], "field": x["field"], "rows": x["rows"]}
                             for x in rules if x["action"] == "report" and x["rows"]],
        "reported_examples": _examples(reported),
        "rules_not_run": not_run,
        "extra_columns": list(read.extra_columns or []),
        "latest_date_allowed": latest,
    }
    if threshold is not None:  # a whole file: its findings now (a segment's: when its file is done)
        log_findings(spec.table, files, summary)
        check_quarantine_threshold(spec.table, files, n, quarantine, threshold)
        check_identifier_loss(spec, files, n, flags)
    return ValidationResult(spec.table, accepted, quarantine, flags, summary, reported, format_counts)


def log_findings(table: str, files: str, summary: dict) -> None:
    """Where to look (file, line, rule, field; never a value) for each finding of a summary."""
    for ex in summary["quarantine_examples"]:
        log.warning("%s: %s line %d: rule %s failed on %s: row quarantined", table, ex["file"],
                    ex["line"], ex["rule"], ex["field"])
    for ex in summary["flag_examples"]:
        log.warning("%s: %s line %d: rule %s failed on %s: value blanked, row kept", table, ex["file"],
                    ex["line"], ex["rule"], ex["field"])
    for x in summary["reported_by_rule"]:
        first = next(e for e in summary["reported_examples"] if (e["rule"], e["field"]) == (x["rule"], x["field"]))
        log.warning("%s: %d row(s) fail rule %s on %s (first at %s line %d): kept, reported only",
                    table, x["rows"], x["rule"], x["field"], first["file"], int(first["line"]))
    for x in summary["rules_not_run"]:
        log.info("%s: rule %s on %s not run: %s", table, x["rule"], x["field"], x["reason"])
    if summary["rows_in"] == 0:
        log.warning("%s (%s): header only, 0 rows: accepted as an empty extract", table, files)
    if summary["extra_columns"]:
        log.warning("%s (%s): %d column(s) not in the contract, not read further: %s", table, files,
                    len(summary["extra_columns"]), ", ".join(summary["extra_columns"]))
    if summary["encoding_issues"]:
        first = summary["encoding_issue_lines"][0]
        log.warning("%s: %d line(s) not UTF-8 decoded with fallback (first: %s line %d)", table,
                    summary["encoding_issues"], first["file"], first["line"])
