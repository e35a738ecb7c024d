"""Link person-identifier records of every source to persons on the GP spine.

1. Spine persons: ``gp_patients`` records are the spine. Records with the same valid NHS
   number and date of birth are one person (duplicate registrations collapse).
2. Each other source (IAPT MPI, ECDS, APC, OPA) is reduced to distinct identifier tuples
   (normalised NHS number, forename, surname, date of birth, sex, postcode); tuples are
   linked, then joined back to records.
3. Deterministic: valid (Modulus 11) NHS number equal to a spine record's and date of birth
   equal or day/month swapped, pointing at exactly one spine person.
4. Probabilistic (splink 5, DuckDB): a Fellegi-Sunter model on forename, surname (term
   frequency adjusted), date of birth, sex and postcode. u is estimated by random sampling
   and m by EM on blocking rules, trained on all source tuples against the spine (more
   evidence than the unmatched remainder alone); predictions are then made link_only between
   the tuples that the deterministic rule left unmatched and the spine. A tuple links to its
   best spine person at or above ``threshold``; ties between different persons stay
   unlinked.

   Forename and surname comparisons are term-frequency adjusted (a match on a rare name is
   stronger evidence than a match on SMITH). Links go from a record to one spine person
   (a star, never a chain): records are never linked to each other, so two different people
   can only share a person when the same NHS number and date of birth sit on the spine.
5. Upstream-pseudonymised extracts (config ``pseudo_key``, e.g. Der_Pseudo_NHS_Number): no
   identifiers exist; a record links, deterministically, to the spine person holding the same
   key, else stays unlinked (``link_pseudonymised``).

Output rows carry the rule ('spine', 'deterministic_nhs_dob', 'deterministic_pseudo_key',
'probabilistic', 'unlinked'), a match probability (1.0 for spine and deterministic links)
and the splink match weight (probabilistic links and the best candidate of unlinked records;
null where no model scored the record).

The trained model is saved as a versioned artefact (``splink_model_<sha>.json``, sha of its
canonical JSON, and ``current.json`` naming the latest); a run can reuse a saved model
instead of training (``save_model`` / ``load_model``).

``link_files`` (``ltceval link``) links any two tables on any subset of the standard fields
plus extra free-text columns with the same deterministic rule and splink machinery, but its
own comparisons (chosen by what each field is: postcodes of any country, typo-aware dates of
birth, free text), blocking rules, a threshold chosen from the trained model (expected
precision >= 0.999 unless one is given) and optional one-to-one assignment; docs/linkage.md.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from core import progress
from core.contract import SEEDS
from identifiable_zone import blocking
from identifiable_zone import normalise as nz
from identifiable_zone.sources import SPINE, SourceSpec

log = logging.getLogger(__name__)

ID_COLS = ["nhs", "forename", "surname", "dob", "sex", "postcode"]
# standard field names (CLI, docs) -> internal column names
FIELD_COLS = {"nhs_number": "nhs", "forename": "forename", "surname": "surname",
              "date_of_birth": "dob", "sex": "sex", "postcode": "postcode"}
ROLE_FIELDS = {"nhs_number": "nhs_number", "forename": "forename", "surname": "surname",
               "dob": "date_of_birth", "sex": "sex", "postcode": "postcode"}
DEFAULT_THRESHOLD = 0.95
# a record's link (record_person): its person, how, with what probability and weight, and for a
# scored record its best candidate's spine record and (unless tied) person, linked or not
RECORD_PERSON_COLUMNS = ["source", "record_id", "person_key", "rule", "match_probability", "match_weight",
                         "candidate_person_key", "candidate_record_id"]
EXTRA_PREFIX = "x_"


class LinkageError(ValueError):
    """Linkage cannot run on these inputs (message names the field or file, never a value)."""


@dataclass
class LinkResult:
    record_person: pd.DataFrame  # source, record_id, person_key, rule, match_probability, match_weight
    spine_persons: pd.DataFrame  # record_id, person_key (gp_patients)
    model: dict | None  # trained splink settings (no data values)
    summary: dict


# -- standardisation -------------------------------------------------------------------------

def standardise_fields(df: pd.DataFrame, id_col: str, field_map: dict[str, str],
                       extra: dict[str, str] | None = None, any_country: bool = False) -> pd.DataFrame:
    """record_id + normalised standard fields (internal names: nhs, forename, surname, dob,
    sex, postcode; only those mapped) + extra comparison columns (prefixed x_, upper-cased,
    trimmed). ``field_map``: standard field -> column of df.

    ``any_country`` (``link_files``): a postcode that is not UK-shaped is kept (upper case,
    letters and digits only) instead of dropped, and a date of birth that is not a real date
    but is written as eight digits (e.g. a typo 1987-13-02) is kept as YYYY-MM-DD text, so
    that typo-aware comparisons can still score it."""
    out = pd.DataFrame({"record_id": df[id_col].astype(object)}, index=df.index)
    for fld, col in field_map.items():
        c = FIELD_COLS[fld]
        if c == "nhs":
            out[c] = nz.valid_nhs_or_none(df[col])
        elif c in ("forename", "surname"):
            out[c] = nz.normalise_name(df[col])
        elif c == "dob":
            out[c] = nz.date_to_iso(nz.parse_date(df[col]))
            if any_country:
                out[c] = out[c].where(out[c].notna(), _date_digits(df[col]))
        elif c == "sex":
            sex = nz.normalise_sex(df[col])
            out[c] = sex.where(sex.isin(["M", "F"]), None)  # unknown sex carries no evidence
        elif any_country:
            uk = nz.normalise_postcode(df[col])
            other = nz._map(df[col], lambda v: re.sub(r"[^A-Z0-9]", "", v.upper()) or None)
            out[c] = uk.where(uk.notna(), other)
        else:
            out[c] = nz.normalise_postcode(df[col])
    for name, col in (extra or {}).items():
        v = nz._map(df[col], lambda x: " ".join(x.upper().split()) or None)
        out[EXTRA_PREFIX + name] = v
    return out.reset_index(drop=True)


_DATE_DIGITS = re.compile(r"^(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})$")


def _date_digits(s: pd.Series) -> pd.Series:
    """Dates written YYYYMMDD or YYYY-MM-DD, as 'YYYY-MM-DD' text even when no real date (a
    typo); anything else None."""
    def one(v):
        m = _DATE_DIGITS.match(v.strip())
        return "-".join(m.groups()) if m else None
    return nz._map(s, one)


def standardise_identifiers(df: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """record_id + normalised identifiers of an accepted extract (dates already ISO)."""
    fmap = {ROLE_FIELDS[role]: col for role, col in spec.identifiers.items()}
    out = standardise_fields(df, spec.record_id, fmap)[["record_id"] + ID_COLS]
    if spec.mps is not None:  # a Person_ID MPS traced to an NHS number is the NHS number
        from identifiable_zone.mps import traced_nhs_numbers

        traced = traced_nhs_numbers(df, spec.mps)
        out["nhs"] = traced.where(traced.notna(), out["nhs"])
    return out


# -- spine and deterministic rule ------------------------------------------------------------

def spine_persons(spine: pd.DataFrame, prefix: str = "gp") -> pd.DataFrame:
    """Collapse spine records into persons: same valid NHS number and date of birth.

    person_key is the canonical identifier later hashed into person_id: 'nhs:<number>' when
    that number belongs to one person only, 'nhs:<number>|dob:<date>' when the same number
    sits on spine records with different dates of birth, else '<prefix>:<record id>'.
    Without a date-of-birth column, records collapse on the NHS number alone."""
    s = spine[["record_id", "nhs"]].copy() if "nhs" in spine else spine[["record_id"]].assign(nhs=None)
    s["dob"] = spine["dob"] if "dob" in spine else ""
    has = s["nhs"].notna() & s["dob"].notna()
    s["cluster"] = np.where(has, "nhs:" + s["nhs"].fillna("") + "|dob:" + s["dob"].fillna(""),
                            f"{prefix}:" + s["record_id"].astype(str))
    clusters_per_nhs = s[has].groupby("nhs")["cluster"].nunique()
    multi = s["nhs"].map(clusters_per_nhs).fillna(0) > 1
    s["person_key"] = np.where(has & ~multi, "nhs:" + s["nhs"].fillna(""), s["cluster"])
    return s[["record_id", "person_key"]]


def deterministic_links_sql(con, tuples: str, spine_ids: str, persons: str, out: str, use_dob: bool = True) -> None:
    """The deterministic rule, into temp table ``out`` (tuple_id, person_key): the valid NHS
    number equal to a spine record's and the date of birth equal or day/month swapped (a day of
    12 or less makes a real date swapped), exactly one spine person qualifying. Without dates of
    birth (``use_dob`` false) the NHS number alone decides, still one person only.
    ``tuples`` (tuple_id, nhs[, dob]), ``spine_ids`` (record_id, nhs[, dob]) and ``persons``
    (record_id, person_key) name tables or views of ``con``; the one definition of the rule,
    for the pipeline's out-of-core linkage and for whole frames (``deterministic_links``)."""
    dob = "i.dob" if use_dob else "NULL::VARCHAR"
    con.execute(f"""
        CREATE TEMP TABLE {out} AS
        WITH spine AS (
            SELECT i.nhs, {dob} AS dob, p.person_key, try_cast({dob} AS DATE) AS d
            FROM {spine_ids} i JOIN {persons} p USING (record_id)
            WHERE i.nhs IS NOT NULL {"AND i.dob IS NOT NULL" if use_dob else ""}),
        candidates AS (
            SELECT nhs, dob, person_key,
                   CASE WHEN day(d) <= 12 THEN printf('%04d-%02d-%02d', year(d), day(d), month(d)) END
                       AS dob_swapped
            FROM spine)
        SELECT t.tuple_id, min(s.person_key) AS person_key
        FROM {tuples} t JOIN candidates s ON t.nhs = s.nhs
        {"WHERE t.dob IS NOT NULL AND (t.dob = s.dob OR t.dob = s.dob_swapped)" if use_dob else ""}
        GROUP BY t.tuple_id
        HAVING count(DISTINCT s.person_key) = 1""")


def deterministic_links(tuples: pd.DataFrame, spine_ids: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """tuple_id -> person_key by the deterministic rule (``deterministic_links_sql``) on whole
    frames, in an in-memory DuckDB; in the order of ``tuples``."""
    if "nhs" not in tuples or "nhs" not in spine_ids:
        return pd.DataFrame({"tuple_id": pd.Series(dtype=object), "person_key": pd.Series(dtype=object)})
    import duckdb

    use_dob = "dob" in tuples and "dob" in spine_ids
    cols = ["nhs"] + (["dob"] if use_dob else [])
    with duckdb.connect() as con:
        con.register("tuples_frame", tuples[["tuple_id", *cols]].astype(object))
        con.register("spine_ids_frame", spine_ids[["record_id", *cols]].astype(object))
        con.register("persons_frame", persons[["record_id", "person_key"]])
        deterministic_links_sql(con, "tuples_frame", "spine_ids_frame", "persons_frame", "det", use_dob)
        det = con.sql("SELECT tuple_id, person_key FROM det").df()
    order = pd.Series(range(len(tuples)), index=tuples["tuple_id"].to_numpy())
    det = det.iloc[np.argsort(order.loc[det["tuple_id"]].to_numpy(), kind="stable")]
    return det.astype(object).reset_index(drop=True)


# -- splink ----------------------------------------------------------------------------------

def _blocking_fields(cols: list[str], extra: list[str]) -> list[tuple[str, ...]]:
    candidates = [("dob",), ("forename", "surname"), ("surname", "postcode"), ("nhs",),
                  ("forename", "dob"), ("surname", "dob")]
    rules = [r for r in candidates if set(r) <= set(cols)]
    if len(rules) < 2:  # few standard fields: also block on each extra column
        rules += [(e,) for e in extra]
    # de-duplicate while keeping order
    return list(dict.fromkeys(rules))


def splink_settings(cols: list[str] | None = None, extra: list[str] = ()):
    """splink settings for the standard fields present (internal names) plus extra columns
    compared with Jaro-Winkler levels. Forename and surname are term-frequency adjusted."""
    from splink import SettingsCreator, block_on
    import splink.comparison_library as cl

    cols = list(ID_COLS if cols is None else cols)
    extra = list(extra)
    comparisons = []
    if "forename" in cols:
        comparisons.append(cl.NameComparison("forename").configure(term_frequency_adjustments=True))
    if "surname" in cols:
        comparisons.append(cl.NameComparison("surname").configure(term_frequency_adjustments=True))
    if "dob" in cols:
        comparisons.append(cl.DateOfBirthComparison("dob", input_is_string=True))
    if "sex" in cols:
        comparisons.append(cl.ExactMatch("sex"))
    if "postcode" in cols:
        comparisons.append(cl.PostcodeComparison("postcode"))
    for e in extra:
        comparisons.append(cl.JaroWinklerAtThresholds(e, [0.92, 0.8]))
    if not comparisons:
        raise LinkageError("probabilistic linkage needs at least one field besides the NHS number")
    rules = _blocking_fields(cols, extra)
    if not rules:
        raise LinkageError("no blocking rule possible: map date_of_birth, or forename and surname, "
                           "or surname and postcode, or nhs_number")
    return SettingsCreator(
        link_type="link_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=[block_on(*r) for r in rules],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


FILE_U_PAIRS = 1e6  # random pairs estimating u in ``link_files`` (splink's quick-start's number)
# EM in ``link_files`` stops when no parameter moves by more than this (splink's default 1e-4
# costs one or two more rounds that move no link on FEBRL 1-3), and iterates on agreement-
# pattern counts without term frequencies (as splink's FEBRL examples do; same links there)
FILE_EM_CONVERGENCE = 1e-3
UK_POSTCODE_SHARE = 0.9  # postcodes compared as UK ones when at least this share is UK-shaped
# pairs of fields that block candidate pairs in ``link_files`` (each rule's pairs are counted
# first and a rule over the budget is skipped, as in the pipeline)
FILE_BLOCKING = [("dob",), ("forename", "surname"), ("surname", "postcode"), ("nhs",), ("forename", "dob"),
                 ("surname", "dob"), ("forename", "postcode"), ("postcode", "dob")]


def postcodes_are_uk(*columns: pd.Series) -> bool:
    """Whether the (normalised) postcodes are UK ones: at least ``UK_POSTCODE_SHARE`` of the
    non-missing values have the UK shape."""
    v = pd.concat([c.dropna().astype(str) for c in columns], ignore_index=True)
    return bool(len(v)) and float(v.str.match(nz.NORMALISED_UK_POSTCODE).mean()) >= UK_POSTCODE_SHARE


CATEGORY_VALUES = 50  # an extra column with at most this many distinct values is a category (e.g. a state)


def file_comparisons(cols: list[str], extra: list[str], uk_postcodes: bool = True,
                     categories: frozenset[str] = frozenset()) -> list:
    """splink comparisons for ``link_files``, chosen by what each field is (all from splink's
    comparison library):

    - forename, surname: NameComparison (exact, Jaro-Winkler 0.92/0.88/0.7), term-frequency
      adjusted;
    - date of birth: null, exact, Damerau-Levenshtein <= 1 on the YYYY-MM-DD text (a typed
      digit wrong or two digits transposed, even when that makes no real date), within 1
      month, 1 year, 10 years, else;
    - sex: exact;
    - postcode: UK postcodes (``postcodes_are_uk``) by PostcodeComparison (full, sector,
      district, area); others (any country) exact (term-frequency adjusted), then
      Damerau-Levenshtein <= 1 and <= 2;
    - extra free-text columns (street, locality, ...): exact (term-frequency adjusted: a
      match on a rare street is stronger evidence), then Jaro-Winkler >= 0.92 and >= 0.8;
      extra columns in ``categories`` (few distinct values, e.g. a state or region code:
      ``CATEGORY_VALUES``) exact match only, term-frequency adjusted."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    comparisons = []
    for c in ("forename", "surname"):
        if c in cols:
            comparisons.append(cl.NameComparison(c).configure(term_frequency_adjustments=True))
    if "dob" in cols:
        dates = [cll.AbsoluteDateDifferenceLevel("dob", input_is_string=True, threshold=t, metric=m,
                                                 datetime_format="%Y-%m-%d")
                 for t, m in ((1, "month"), (1, "year"), (10, "year"))]
        comparisons.append(cl.CustomComparison(
            output_column_name="dob", comparison_description="date of birth, typo-aware",
            comparison_levels=[cll.NullLevel("dob"), cll.ExactMatchLevel("dob"),
                               damerau_levenshtein_level("dob", 1), *dates, cll.ElseLevel()]))
    if "sex" in cols:
        comparisons.append(cl.ExactMatch("sex"))
    if "postcode" in cols:
        if uk_postcodes:
            comparisons.append(cl.PostcodeComparison("postcode"))
        else:
            comparisons.append(cl.CustomComparison(
                output_column_name="postcode", comparison_description="postcode, any country",
                comparison_levels=[cll.NullLevel("postcode"),
                                   cll.ExactMatchLevel("postcode").configure(tf_adjustment_column="postcode"),
                                   damerau_levenshtein_level("postcode", 1), damerau_levenshtein_level("postcode", 2),
                                   cll.ElseLevel()]))
    for e in extra:
        if e in categories:
            comparisons.append(cl.ExactMatch(e).configure(term_frequency_adjustments=True))
            continue
        comparisons.append(cl.CustomComparison(
            output_column_name=e, comparison_description="free text",
            comparison_levels=[cll.NullLevel(e), cll.ExactMatchLevel(e).configure(tf_adjustment_column=e),
                               cll.JaroWinklerLevel(e, 0.92), cll.JaroWinklerLevel(e, 0.8), cll.ElseLevel()]))
    return comparisons


def damerau_levenshtein_level(col: str, distance: int):
    """splink's ``DamerauLevenshteinLevel`` (same truth, same label), with DuckDB's
    damerau_levenshtein (about 10 microseconds a pair, most of ``ltceval link``'s time when
    u is estimated on a million random pairs) computed only where a cheap bound leaves it
    possible: the lengths differ by at most ``distance``, and for distance 1 between equal
    lengths at most two positions differ (one substitution or one transposition). Only for
    ASCII columns (dates and postcodes as ``standardise_fields`` writes them): hamming counts
    bytes. The CASE short-circuits, an AND would not."""
    import splink.comparison_level_library as cll

    left, right = f'"{col}_l"', f'"{col}_r"'
    within = f"damerau_levenshtein({left}, {right}) <= {distance}"
    same_length = (f"WHEN length({left}) = length({right}) AND length({left}) > 0 THEN "  # hamming refuses ''
                   f"CASE WHEN hamming({left}, {right}) > 2 THEN false ELSE {within} END " if distance == 1 else "")
    sql = (f"CASE WHEN abs(length({left}) - length({right})) > {distance} THEN false "
           f"{same_length}ELSE {within} END")
    return cll.CustomLevel(sql, label_for_charts=f"Damerau-Levenshtein distance of {col} <= {distance}")


def file_settings(cols: list[str], extra: list[str], uk_postcodes: bool = True,
                  categories: frozenset[str] = frozenset()):
    """splink settings of ``link_files``: ``file_comparisons`` and the ``FILE_BLOCKING`` rules
    of the fields present (each extra column on its own too when fewer than two apply)."""
    from splink import SettingsCreator, block_on

    comparisons = file_comparisons(cols, extra, uk_postcodes, categories)
    if not comparisons:
        raise LinkageError("probabilistic linkage needs at least one field besides the NHS number")
    rules = [r for r in FILE_BLOCKING if set(r) <= set(cols)]
    if len(rules) < 2:
        rules += [(e,) for e in extra]
    if not rules:
        raise LinkageError("no blocking rule possible: map date_of_birth, or forename and surname, "
                           "or surname and postcode, or nhs_number")
    return SettingsCreator(link_type="link_only", unique_id_column_name="unique_id", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=[block_on(*r) for r in dict.fromkeys(rules)],
                           retain_intermediate_calculation_columns=False, retain_matching_columns=False,
                           em_convergence=FILE_EM_CONVERGENCE)


def _splink_frame(df: pd.DataFrame, id_col: str, cols: list[str]) -> pd.DataFrame:
    out = df[[id_col] + cols].rename(columns={id_col: "unique_id"}).copy()
    for c in out.columns:
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.astype({c: "string" for c in out.columns})


def splink_api(con, spark=None):
    """splink's database: the DuckDB connection ``con``, or with a Spark session (the
    identifiable zone's: ``spark_engine.zone_session``, LTCEVAL_ENGINE=spark) splink's SparkAPI,
    its intermediate tables written as Parquet in the session's checkpoint folder."""
    if spark is None:
        from splink import DuckDBAPI

        return DuckDBAPI(connection=con)
    from splink.backends.spark import SparkAPI

    return SparkAPI(spark_session=spark, break_lineage_method="parquet")


MODEL_DIALECT = "duckdb"  # the dialect of the SQL in a saved model, whichever engine trained it


def model_in_dialect(model: dict, dialect: str) -> dict:
    """The pipeline's model (``splink_settings`` comparisons) with its SQL in ``dialect``
    ('duckdb', 'spark'): a splink model carries SQL (DuckDB's "name" is a column, Spark's a
    string literal; jaro_winkler_similarity is Spark's jaro_winkler), so a model trained on one
    engine is scored on the other with each comparison level's SQL as ``splink_settings`` writes
    it for that dialect (the level's label must be the same: same level, same trained m and u)
    and its blocking rules (column equalities) transpiled. Saved models are in ``MODEL_DIALECT``."""
    source = model.get("sql_dialect", MODEL_DIALECT)
    if source == dialect:
        return model
    import sqlglot

    names = _model_columns(model)
    unknown = [n for n in names if n not in ID_COLS]
    if unknown:
        raise LinkageError(f"the linkage model compares {', '.join(unknown)}: only the pipeline's fields "
                           f"({', '.join(ID_COLS)}) can move between engines")
    fresh = {c["output_column_name"]: c for c in
             splink_settings([c for c in ID_COLS if c in names]).create_settings_dict(dialect)["comparisons"]}
    comparisons = []
    for comparison in model["comparisons"]:
        name, levels = comparison["output_column_name"], comparison["comparison_levels"]
        target = fresh[name]["comparison_levels"]
        labels = [lv.get("label_for_charts") for lv in levels]
        if labels != [lv.get("label_for_charts") for lv in target]:
            raise LinkageError(f"the linkage model's levels of {name} are not this version's ({labels}): "
                               "train the model again")
        comparisons.append({**comparison, "comparison_levels": [
            {**lv, "sql_condition": new["sql_condition"]} for lv, new in zip(levels, target)]})
    read = "spark" if source == "spark" else source
    write = "spark" if dialect == "spark" else dialect
    rules = []
    for rule in model.get("blocking_rules_to_generate_predictions", []):
        sql = rule["blocking_rule"] if isinstance(rule, dict) else str(rule)
        converted = sqlglot.transpile(sql, read=read, write=write)[0]
        rules.append({**rule, "blocking_rule": converted, "sql_dialect": dialect} if isinstance(rule, dict)
                     else {"blocking_rule": converted, "sql_dialect": dialect})
    return {**model, "sql_dialect": dialect, "comparisons": comparisons,
            "blocking_rules_to_generate_predictions": rules}


def _register(db, spark, frame: pd.DataFrame, name: str):
    """``frame`` (``_splink_frame``: text columns) as splink input table ``name``. On Spark it is
    a Spark DataFrame of strings made through Arrow (a missing value stays null) under a temporary
    view of its own name: one session serves training and prediction, each naming its inputs
    alike (splink refuses a name already in the session; ``drop_splink_views`` removes them)."""
    if spark is None:
        return db.register(frame, table_name=name)
    import uuid

    import pyarrow as pa

    view = f"{SPARK_VIEW_PREFIX}{name}_{uuid.uuid4().hex[:8]}"
    spark.createDataFrame(pa.table({
        c: pa.array(frame[c].astype(object).where(frame[c].notna(), None).tolist(), type=pa.string())
        for c in frame.columns})).createOrReplaceTempView(view)
    return db.register(view, table_name=name)


SPARK_VIEW_PREFIX = "ltceval_splink_input_"


def drop_splink_views(spark) -> None:
    """Drop the temporary views splink and ``_register`` made in ``spark`` (its Parquet
    intermediates stay in the checkpoint folder until the session's end removes it)."""
    if spark is None:
        return
    for table in spark.catalog.listTables():
        if table.isTemporary and (table.name.startswith("__splink__") or table.name.startswith(SPARK_VIEW_PREFIX)):
            spark.catalog.dropTempView(table.name)


def _model_columns(model: dict) -> list[str]:
    return [c["output_column_name"] for c in model["comparisons"]]


@dataclass(frozen=True)
class TupleTable:
    """Distinct identifier tuples held in DuckDB table ``table`` of ``con`` rather than in
    pandas (millions at ICS size: gigabytes as Python strings), with ``tuple_row`` numbering
    them 0..n-1 in the order a frame of them would have. Training reads only its sample."""
    con: object
    table: str
    n: int
    columns: tuple[str, ...]

    def frame(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The tuples (``rows``: sorted positions, default all) in tuple_row order, text as str/None."""
        from identifiable_zone.cross_file_rules import text_frame

        cols = ", ".join(f't."{c}"' for c in self.columns)
        if rows is None:
            return text_frame(self.con.sql(f"SELECT {cols} FROM {self.table} t ORDER BY t.tuple_row").df())
        self.con.register("tuple_rows_wanted", pd.DataFrame({"tuple_row": np.asarray(rows, dtype=np.int64)}))
        try:
            return text_frame(self.con.sql(f"""SELECT {cols} FROM {self.table} t
                JOIN tuple_rows_wanted w USING (tuple_row) ORDER BY t.tuple_row""").df())
        finally:
            self.con.unregister("tuple_rows_wanted")


def em_rules_for(cols: list[str], extra: list[str] = ()) -> list[tuple[str, ...]]:
    """The two blocking rules EM trains on: date of birth, and forename + surname, when mapped."""
    em_rules = [r for r in (("dob",), ("forename", "surname")) if set(r) <= set(cols)]
    if len(em_rules) < 2:
        em_rules = [r for r in _blocking_fields(cols, [EXTRA_PREFIX + e for e in extra]) if r != ("nhs",)][:2]
    return em_rules


def train_model(all_tuples: pd.DataFrame | TupleTable, spine_ids: pd.DataFrame, seed: int = SEEDS.linkage,
                cols: list[str] | None = None, extra: list[str] = (), spill_dir: Path | None = None,
                training: dict | None = None, em_pair_budget: int = blocking.EM_PAIR_BUDGET,
                settings=None, u_max_pairs: float = 2e6, validate_settings: bool = True,
                em_without_tf: bool = False, count_prior: bool = False, spark=None) -> dict:
    """Train the splink model on the source tuples against the spine; return its settings
    dict (parameters only: no record values). EM trains on a uniform sample of the tuples when
    an EM rule would block more than ``blocking.EM_PAIR_BUDGET`` pairs; ``training`` (a dict,
    optional) receives the EM rules' pair counts and the sample taken. ``all_tuples`` held in
    DuckDB (a TupleTable) gives the same model as the same tuples in a frame. ``settings``
    (default: ``splink_settings``, the pipeline's) and ``u_max_pairs`` (random pairs for u) are
    what ``link_files`` changes. ``link_files`` also skips splink's validation of its own
    settings (``validate_settings``: checks that only log; Python time), runs EM on agreement-
    pattern counts without term frequencies (``em_without_tf``, as splink's FEBRL examples do:
    a round scores the distinct patterns, not every pair) and counts the prior rule's pairs
    with a GROUP BY a side (``count_prior``: splink's estimate, same value, without its
    blocking analysis). The pipeline keeps the defaults. ``spark`` (a session): splink trains
    on Spark (``splink_api``); the pair counts and the sample stay in DuckDB."""
    from splink import Linker, block_on

    cols = [c for c in (ID_COLS if cols is None else cols)]
    use = cols + [EXTRA_PREFIX + e for e in extra]
    if settings is None:  # the pipeline's own (``link_files`` gives ``file_settings``)
        settings = splink_settings(cols, [EXTRA_PREFIX + e for e in extra])
    em_rules = em_rules_for(cols, extra)
    in_duckdb = isinstance(all_tuples, TupleTable)
    n_all = all_tuples.n if in_duckdb else len(all_tuples)
    if in_duckdb:
        em_counts = blocking.pair_counts(all_tuples.table, spine_ids, em_rules, all_tuples.con)
    with blocking.connection(spill_dir) as con:
        if not in_duckdb:
            em_counts = blocking.pair_counts(all_tuples, spine_ids, em_rules, con)
        fraction = blocking.em_sample_fraction(em_counts, em_pair_budget)
        rows = None
        if fraction < 1.0:
            n = max(1, int(np.ceil(fraction * n_all)))
            rows = np.sort(np.random.default_rng(seed).choice(n_all, size=n, replace=False))
            progress.report("link", "model training on a uniform sample of %s of %s tuples (largest EM rule: %s pairs)",
                            f"{n:,}", f"{n_all:,}", f"{max(c.pairs for c in em_counts):,}")
        if in_duckdb:
            sample = all_tuples.frame(rows)
        else:
            sample = all_tuples if rows is None else all_tuples.iloc[rows]
        if training is not None:
            training.update({"em_rules": [c.as_dict() for c in em_counts], "tuples": int(n_all),
                             "training_tuples": int(len(sample)), "em_pair_budget": int(em_pair_budget)})
        db = splink_api(con, spark)
        left = _register(db, spark, _splink_frame(sample, "tuple_id", use), "source_tuples")
        right = _register(db, spark, _splink_frame(spine_ids, "record_id", use), "spine")
        linker = Linker([left, right], settings, log_level=logging.WARNING, validate_settings=validate_settings)
        rule = tuple(prior_rule(cols, use))
        prior = None
        if count_prior:  # splink's estimate: pairs agreeing exactly on the rule / recall / all pairs
            agreeing = blocking.pair_counts(sample, spine_ids, [rule], con)[0].pairs
            prior = agreeing / PRIOR_RULE_RECALL / (len(sample) * len(spine_ids))
        if prior is not None and 0.0 < prior < 1.0:
            linker._settings_obj._probability_two_random_records_match = prior  # what splink's method sets
        else:  # splink's own estimate (and its errors when no pair agrees)
            linker.training.estimate_probability_two_random_records_match([block_on(*rule)],
                                                                          recall=PRIOR_RULE_RECALL)
        linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=seed)
        for i, r in enumerate(em_rules, 1):
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    block_on(*r), estimate_without_term_frequencies=em_without_tf)
            except ValueError as e:  # splink: an m probability underflowed (a level never seen among
                # matches, e.g. disagreement on a column that always agrees); keep the other rounds
                log.warning("EM round blocked on %s stopped early: %s", ", ".join(r), str(e).splitlines()[0][:120])
            progress.report("link", "model training: EM round %d/%d (blocked on %s) done", i, len(em_rules), "+".join(r))
        model = _round_model(linker.misc.save_model_to_json())
        drop_splink_views(spark)
        return model_in_dialect(model, MODEL_DIALECT) if spark is not None else model


PRIOR_RULE_RECALL = 0.8  # share of true matches assumed to agree exactly on ``prior_rule``


def prior_rule(cols: list[str], use: list[str]) -> list[str]:
    """Fields of the exact-agreement rule that estimates the prior (probability that two random
    records match): forename, surname and date of birth where mapped."""
    return [c for c in ("forename", "surname", "dob") if c in cols] or [c for c in use if c != "nhs"][:2]


def recalibrate_prior(model: dict, cols: list[str], use: list[str]) -> dict:
    """The model with its prior re-estimated from its own m probabilities: the prior was
    estimated assuming ``PRIOR_RULE_RECALL`` of true matches agree exactly on ``prior_rule``;
    the trained model says that share is the product of the exact-match m probabilities of
    those fields (conditional independence, as the model assumes). On data with many typos
    (FEBRL: a third of matches) the assumption halves the prior and so understates every
    match probability. Used by ``link_files`` (the pipeline keeps its model as it is)."""
    m_exact = {}
    for c in model.get("comparisons", []):
        levels = [lv for lv in c.get("comparison_levels", []) if not lv.get("is_null_level")]
        if levels and isinstance(levels[0].get("m_probability"), float):
            m_exact[c["output_column_name"]] = levels[0]["m_probability"]
    rule = prior_rule(cols, use)
    if not all(f in m_exact for f in rule):
        return model
    recall = float(np.prod([m_exact[f] for f in rule]))
    if not 0.0 < recall <= 1.0:
        return model
    lam = model["probability_two_random_records_match"] * PRIOR_RULE_RECALL / recall
    return {**model, "probability_two_random_records_match": float(f"{min(lam, 0.5):.10g}")}


def _round_model(model: dict, digits: int = 10) -> dict:
    """Round the estimated probabilities to ``digits`` significant digits: multi-threaded
    DuckDB sums differ in the last bits from run to run, and a model (and so its links and
    version sha) should not."""
    def r(x):  # splink refuses (on loading) probabilities below 1e-300 that EM can reach
        return max(float(f"{x:.{digits}g}"), 1e-300) if isinstance(x, float) and x > 0 else x

    model = json.loads(json.dumps(model))
    model["probability_two_random_records_match"] = r(model.get("probability_two_random_records_match"))
    for c in model.get("comparisons", []):
        for lv in c.get("comparison_levels", []):
            for k in ("m_probability", "u_probability"):
                if k in lv:
                    lv[k] = r(lv[k])
    return model


_EQUALITY = re.compile(r'^l\."(\w+)" = r\."\1"$')


def _rule_fields(rule_sql: str) -> tuple[str, ...] | None:
    """('dob',) for 'l."dob" = r."dob"', ('forename', 'surname') for the AND of two equalities;
    None for any other rule (which cannot be counted in advance)."""
    parts = [p.strip().strip("()") for p in rule_sql.split(" AND ")]
    fields = [m.group(1) for m in (_EQUALITY.match(p) for p in parts) if m]
    return tuple(fields) if len(fields) == len(parts) else None


def predict_links(unmatched: pd.DataFrame, spine_ids: pd.DataFrame, model: dict, spill_dir: Path | None = None,
                  blocking_info: dict | None = None, pair_budget: int | None = None,
                  validate_settings: bool = True, spark=None) -> pd.DataFrame:
    """Scored pairs (tuple_id, spine record_id, match_probability, match_weight) for
    unmatched tuples, at match probability >= 0.01. Each prediction rule's pairs are counted
    first; a rule over ``pair_budget`` (default ``blocking.prediction_budget``) is skipped.
    ``blocking_info`` (a dict, optional) receives ``prediction_rules`` (every rule with its
    pairs and whether it was used) and ``prediction_pair_budget``. ``spark`` (a session):
    splink scores the pairs on Spark (``splink_api``); the rules are counted in DuckDB."""
    from splink import Linker

    empty = pd.DataFrame({"tuple_id": [], "record_id": [], "match_probability": [], "match_weight": []})
    if unmatched.empty:
        return empty
    use = [c for c in unmatched.columns if c in spine_ids.columns and c in ID_COLS or
           (c.startswith(EXTRA_PREFIX) and c in spine_ids.columns)]
    missing = [c for c in _model_columns(model) if c not in use]
    if missing:
        raise LinkageError(f"the linkage model compares field(s) missing from the data: {', '.join(missing)}")
    rules = model.get("blocking_rules_to_generate_predictions", [])
    fields = [_rule_fields(r["blocking_rule"] if isinstance(r, dict) else str(r)) for r in rules]
    countable = [f for f in fields if f is not None and set(f) <= set(use)]
    budget = blocking.prediction_budget(len(unmatched)) if pair_budget is None else int(pair_budget)
    with blocking.connection(spill_dir) as con:
        counted = dict((c.rule, c) for c in blocking.within_budget(
            blocking.pair_counts(unmatched, spine_ids, countable, con), budget))
        kept = [r for r, f in zip(rules, fields) if f is None or (f in counted and counted[f].used)]
        if blocking_info is not None:
            blocking_info.update({"prediction_rules": [c.as_dict() for c in counted.values()],
                                  "prediction_pair_budget": budget})
        for c in counted.values():
            if not c.used:
                log.warning("blocking rule %s skipped: %s candidate pairs, over the budget of %s",
                            "+".join(c.rule), f"{c.pairs:,}", f"{budget:,}")
        if not kept:
            raise LinkageError("every blocking rule makes more candidate pairs than the budget allows: "
                               + "; ".join(f"{'+'.join(c.rule)}: {c.pairs:,}" for c in counted.values()))
        db = splink_api(con, spark)
        left = _register(db, spark, _splink_frame(unmatched, "tuple_id", use), "unmatched_tuples")
        right = _register(db, spark, _splink_frame(spine_ids, "record_id", use), "spine")
        settings = {**model, "blocking_rules_to_generate_predictions": kept}
        linker = Linker([left, right], model_in_dialect(settings, "spark") if spark is not None else settings,
                        log_level=logging.WARNING, validate_settings=validate_settings)
        pred = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()
        drop_splink_views(spark)
    if pred.empty:
        return empty
    # link_only: one side is each input table; orient every pair as (tuple, spine record)
    l_is_tuple = pred["source_dataset_l"] == "unmatched_tuples"
    tuple_id = np.where(l_is_tuple, pred["unique_id_l"], pred["unique_id_r"])
    rec_id = np.where(l_is_tuple, pred["unique_id_r"], pred["unique_id_l"])
    return pd.DataFrame({"tuple_id": tuple_id, "record_id": rec_id,
                         "match_probability": pred["match_probability"].astype(float),
                         "match_weight": pred["match_weight"].astype(float)})


BEST_COLUMNS = ["tuple_id", "person_key", "record_id", "match_probability", "match_weight", "tied", "linked"]


def best_matches(pairs: pd.DataFrame, persons: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per tuple: best person, the spine record that scored it (``record_id``: what a clerical
    reviewer compares), its probability and weight; ``tied`` when another person scores the
    same; 'linked' when >= threshold and not tied."""
    if pairs.empty:
        return pd.DataFrame({c: [] for c in BEST_COLUMNS})
    if "match_weight" not in pairs:
        p = pairs["match_probability"].clip(1e-12, 1 - 1e-12)
        pairs = pairs.assign(match_weight=np.log2(p / (1 - p)))
    p = pairs.merge(persons, on="record_id")
    p = p.sort_values(["tuple_id", "person_key", "match_probability"], ascending=[True, True, False])
    p = p.drop_duplicates(["tuple_id", "person_key"])
    p = p.sort_values(["tuple_id", "match_probability", "person_key"], ascending=[True, False, True])
    top = p.groupby("tuple_id").head(2).copy()
    top["rank"] = top.groupby("tuple_id").cumcount()
    first = top[top["rank"] == 0].set_index("tuple_id")
    second = top[top["rank"] == 1].set_index("tuple_id")["match_probability"]
    first["second"] = second.reindex(first.index)
    first["tied"] = first["second"].notna() & (first["second"] >= first["match_probability"])
    first["linked"] = (first["match_probability"] >= threshold) & ~first["tied"]
    return first.reset_index()[BEST_COLUMNS]


# -- model artefacts -------------------------------------------------------------------------

def model_sha(model: dict) -> str:
    """12 hex of SHA-256 of the model's canonical JSON, without splink's random linker_uid
    (so retraining on the same data gives the same version)."""
    canon = {k: v for k, v in model.items() if k != "linker_uid"}
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def save_model(model: dict, model_dir: Path, run_id: str | None = None) -> dict:
    """Write ``splink_model_<sha>.json`` (unchanged if it exists) and point ``current.json``
    at it. Returns the pointer."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    sha = model_sha(model)
    path = model_dir / f"splink_model_{sha}.json"
    if not path.exists():
        tmp = path.with_suffix(".json.tmp")
        saved = {**model, "linker_uid": f"m{sha[:7]}"} if "linker_uid" in model else model
        tmp.write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    pointer = {"file": path.name, "sha": sha, "run_id": run_id,
               "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = model_dir / "current.json.tmp"
    tmp.write_text(json.dumps(pointer, indent=2), encoding="utf-8")
    tmp.replace(model_dir / "current.json")
    return pointer


def load_model(spec: str, model_dir: Path) -> tuple[dict, str]:
    """A saved model: spec 'current' (the pointer in model_dir) or a path to a model JSON.
    Returns (model, file name)."""
    model_dir = Path(model_dir)
    if spec == "current":
        ptr = model_dir / "current.json"
        if not ptr.exists():
            raise LinkageError(f"no saved linkage model to reuse: {ptr} does not exist (run once with "
                               "model: train)")
        path = model_dir / json.loads(ptr.read_text(encoding="utf-8"))["file"]
    else:
        path = Path(spec)
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise LinkageError(f"cannot read the linkage model {path} ({type(e).__name__})") from None
    if not isinstance(model, dict) or "comparisons" not in model:
        raise LinkageError(f"{path} is not a splink model (no comparisons)")
    return model, path.name


# -- linking ---------------------------------------------------------------------------------

def _distinct_tuples(ids: pd.DataFrame, source: str, cols: list[str] | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Distinct identifier tuples of one source and, per record, its tuple id."""
    cols = ID_COLS if cols is None else cols
    # numbered in order of first appearance, as factorising the joined fields did
    codes = ids.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()
    tuple_id = pd.Series(np.char.add(f"{source}|", codes.astype(str)).astype(object), index=ids.index)
    first = ids.groupby(codes, sort=True).head(1).copy()
    first["tuple_id"] = tuple_id.loc[first.index].to_numpy()
    first["source"] = source
    return first[["tuple_id", "source"] + cols].reset_index(drop=True), tuple_id


def deterministic_rule(cols: list[str]) -> str:
    return "deterministic_nhs_dob" if ("dob" in cols) else "deterministic_nhs"


def _link_tuples(tuples: pd.DataFrame, spine_ids: pd.DataFrame, persons: pd.DataFrame, threshold: float,
                 seed: int, model: dict | None, cols: list[str], extra: list[str] = (),
                 spill_dir: Path | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """Deterministic then probabilistic links of distinct tuples to spine persons.
    Returns (links: tuple_id, person_key, rule, match_probability, match_weight; model; counts)."""
    det = deterministic_links(tuples, spine_ids, persons)
    unmatched = tuples[~tuples["tuple_id"].isin(det["tuple_id"])]
    links, model, counts = link_unmatched(unmatched, tuples, spine_ids, persons, threshold, seed, model, cols,
                                          extra, spill_dir)
    det_links = pd.DataFrame({"tuple_id": det["tuple_id"].to_numpy(), "person_key": det["person_key"].to_numpy(),
                              "rule": deterministic_rule(cols), "match_probability": 1.0, "match_weight": np.nan})
    return pd.concat([det_links, links], ignore_index=True), model, counts


def link_unmatched(unmatched: pd.DataFrame, all_tuples: pd.DataFrame | TupleTable, spine_ids: pd.DataFrame,
                   persons: pd.DataFrame, threshold: float, seed: int, model: dict | None, cols: list[str],
                   extra: list[str] = (), spill_dir: Path | None = None,
                   spark=None) -> tuple[pd.DataFrame, dict, dict]:
    """Probabilistic links of the tuples the deterministic rule left (``unmatched``, a part of
    ``all_tuples``, on which an absent model is trained). Returns (links of the unmatched
    tuples: tuple_id, person_key (None when unlinked), rule 'probabilistic' or 'unlinked',
    match_probability, match_weight; model; counts). ``spark`` (a session): splink trains and
    scores on Spark; the best match per tuple is chosen here, in pandas, as on DuckDB."""
    n_all = all_tuples.n if isinstance(all_tuples, TupleTable) else len(all_tuples)
    prob_cols = [c for c in cols if c != "nhs"]
    progress.report("link", "%s of %s distinct identifier tuples linked deterministically, %s left to score",
                    f"{n_all - len(unmatched):,}", f"{n_all:,}", f"{len(unmatched):,}")
    trained = False
    blocking_info: dict = {"prediction_rules": [], "training": {}}
    if model is None and (prob_cols or extra) and not unmatched.empty:
        progress.report("link", "model training on %s tuples against %s spine records", f"{n_all:,}",
                        f"{len(spine_ids):,}")
        model = train_model(all_tuples, spine_ids, seed=seed, cols=cols, extra=list(extra), spill_dir=spill_dir,
                            training=blocking_info["training"], spark=spark)
        trained = True
    if model is not None and not unmatched.empty:
        progress.report("link", "scoring %s tuples against %s spine records", f"{len(unmatched):,}", f"{len(spine_ids):,}")
    pairs = predict_links(unmatched, spine_ids, model, spill_dir, blocking_info, spark=spark) if model is not None else \
        pd.DataFrame({"tuple_id": [], "record_id": [], "match_probability": [], "match_weight": []})
    if model is not None and not unmatched.empty:
        progress.report("link", "%s candidate pairs scored", f"{len(pairs):,}")
    best = best_matches(pairs, persons, threshold)

    prob = best[best["linked"].astype(bool)].set_index("tuple_id")
    cand = best.set_index("tuple_id")
    tid = unmatched["tuple_id"]
    is_prob = tid.isin(prob.index).to_numpy()
    unl = ~is_prob
    person_key = np.full(len(tid), None, dtype=object)
    person_key[is_prob] = tid[is_prob].map(prob["person_key"]).to_numpy(dtype=object)
    prob_col = np.ones(len(tid), dtype=float)
    weight = np.full(len(tid), np.nan, dtype=float)
    prob_col[is_prob] = tid[is_prob].map(prob["match_probability"]).to_numpy(dtype=float)
    weight[is_prob] = tid[is_prob].map(prob["match_weight"]).to_numpy(dtype=float)
    # unlinked tuples keep their best candidate's probability (0 when none was scored) and weight
    prob_col[unl] = tid[unl].map(cand["match_probability"]).astype(float).fillna(0.0).to_numpy(dtype=float)
    weight[unl] = tid[unl].map(cand["match_weight"]).astype(float).to_numpy(dtype=float)
    rule = np.where(is_prob, "probabilistic", "unlinked")
    # every scored tuple keeps its best candidate: the spine record (for clerical review) and,
    # unless another person ties with it, the person (for links at a looser threshold)
    untied = cand[~cand["tied"].astype(bool)]
    links = pd.DataFrame({"tuple_id": tid.to_numpy(), "person_key": person_key, "rule": rule,
                          "match_probability": prob_col, "match_weight": weight,
                          "candidate_person_key": tid.map(untied["person_key"]).to_numpy(dtype=object),
                          "candidate_record_id": tid.map(cand["record_id"]).to_numpy(dtype=object)})
    counts = {"deterministic_tuples": int(n_all - len(unmatched)), "probabilistic_tuples": int(is_prob.sum()),
              "unlinked_tuples": int(unl.sum()), "scored_pairs": int(len(pairs)), "model_trained": trained,
              "blocking": blocking_info,
              "threshold_scenarios": threshold_scenarios(untied["match_probability"], threshold)}
    return links, model, counts


def link_sources(identifier_frames: dict[str, pd.DataFrame], threshold: float = DEFAULT_THRESHOLD,
                 seed: int = SEEDS.linkage, model: dict | None = None, spill_dir: Path | None = None) -> LinkResult:
    """Link standardised identifier frames (see standardise_identifiers), keyed by source,
    which must include the spine. Returns one row per record of every source. A given
    ``model`` is used as it is (no training). ``spill_dir``: where DuckDB may spill (it holds
    identifiers: keep it in the identifiable zone)."""
    spine_ids = identifier_frames[SPINE]
    persons = spine_persons(spine_ids)
    out = [persons.assign(source=SPINE, rule="spine", match_probability=1.0, match_weight=np.nan)]

    tuples, record_tuple = [], []
    for source, ids in identifier_frames.items():
        if source == SPINE:
            continue
        t, tid = _distinct_tuples(ids, source)
        tuples.append(t)
        record_tuple.append(pd.DataFrame({"source": source, "record_id": ids["record_id"].to_numpy(),
                                          "tuple_id": tid.to_numpy()}))
    if not tuples:
        rp = pd.concat(out, ignore_index=True)
        return LinkResult(rp, persons, model, {"tuples": 0})
    tuples = pd.concat(tuples, ignore_index=True)
    record_tuple = pd.concat(record_tuple, ignore_index=True)

    links, model, counts = _link_tuples(tuples, spine_ids, persons, threshold, seed, model, ID_COLS,
                                        spill_dir=spill_dir)
    rp = record_tuple.merge(links, on="tuple_id", how="left").drop(columns="tuple_id")
    out.append(rp)
    record_person = pd.concat(out, ignore_index=True).reindex(columns=RECORD_PERSON_COLUMNS)
    for c in ("candidate_person_key", "candidate_record_id"):  # spine and deterministic rows have none
        record_person[c] = record_person[c].astype(object).where(record_person[c].notna(), None)
    record_person["match_probability"] = record_person["match_probability"].astype(float)
    record_person["match_weight"] = record_person["match_weight"].astype(float)
    summary = {
        "mode": "identifiable",
        "spine_records": int(len(persons)), "spine_persons": int(persons["person_key"].nunique()),
        "source_records": int(len(record_tuple)), "distinct_tuples": int(len(tuples)),
        **counts, "threshold": threshold,
    }
    return LinkResult(record_person, persons, model, summary)


def link_pseudonymised(key_frames: dict[str, pd.DataFrame]) -> LinkResult:
    """Upstream-pseudonymised mode. ``key_frames``: source -> (record_id, pseudo_key). Spine
    records with the same key are one person ('upstream:<key>'); a spine record without a
    key is a person of its own. Other records link deterministically on the key, else stay
    unlinked; nothing probabilistic (no identifiers exist)."""
    sp = key_frames[SPINE]
    persons = pd.DataFrame({
        "record_id": sp["record_id"].to_numpy(),
        "person_key": np.where(sp["pseudo_key"].notna(), "upstream:" + sp["pseudo_key"].fillna(""),
                               "gp:" + sp["record_id"].astype(str)).astype(object)})
    out = [persons.assign(source=SPINE, rule="spine", match_probability=1.0, match_weight=np.nan)]
    on_spine = set(sp["pseudo_key"].dropna())
    n_det = n_unl = 0
    for source, fr in key_frames.items():
        if source == SPINE:
            continue
        hit = fr["pseudo_key"].isin(on_spine) & fr["pseudo_key"].notna()
        n_det += int(hit.sum())
        n_unl += int((~hit).sum())
        out.append(pd.DataFrame({
            "source": source, "record_id": fr["record_id"].to_numpy(),
            "person_key": np.where(hit, "upstream:" + fr["pseudo_key"].fillna(""), None).astype(object),
            "rule": np.where(hit, "deterministic_pseudo_key", "unlinked"),
            "match_probability": np.where(hit, 1.0, 0.0), "match_weight": np.nan}))
    rp = pd.concat(out, ignore_index=True).reindex(columns=RECORD_PERSON_COLUMNS)
    rp[["candidate_person_key", "candidate_record_id"]] = rp[["candidate_person_key", "candidate_record_id"]].astype(object)
    summary = {"mode": "upstream_pseudonymised", "spine_records": int(len(persons)),
               "spine_persons": int(persons["person_key"].nunique()),
               "source_records": int(len(rp) - len(persons)), "deterministic_records": n_det,
               "unlinked_records": n_unl, "threshold": None,
               "note": "extracts pseudonymised upstream: no identifiers received; linkage is "
                       "deterministic on the common pseudonymised key only"}
    return LinkResult(rp, persons, None, summary)


TARGET_PRECISION = 0.999


def choose_threshold(probabilities, target: float = TARGET_PRECISION) -> float:
    """The lowest match probability t at which the model's expected precision of the links it
    would accept (the mean match probability of the candidates scoring >= t) is at least
    ``target``; 1.0 when no t reaches it (nothing but certain links accepted)."""
    p = np.sort(np.asarray(probabilities, dtype=float))[::-1]
    if not len(p):
        return 1.0
    mean = np.cumsum(p) / np.arange(1, len(p) + 1)
    last_of_value = np.r_[p[1:] != p[:-1], True]  # ties: a threshold accepts all of them
    ok = np.nonzero(last_of_value & (mean >= target))[0]
    return float(p[ok[-1]]) if ok.size else 1.0


# the business case's linkage sensitivity (issue 17): links made where the model expects this
# precision of what it accepts, one stricter and one looser than the configured threshold
SCENARIO_TARGETS = {"stricter": 0.9999, "looser": 0.99}


def threshold_scenarios(probabilities, threshold: float) -> dict:
    """The configured threshold ('main') and the stricter and looser ones: the threshold at
    which the model's expected precision of the untied best candidates (``probabilities``)
    reaches the scenario's target (``choose_threshold``), never looser than the main one for
    'stricter' nor stricter for 'looser' (then that scenario is the main links). Each with the
    expected precision of the probabilistic links it accepts. No counts."""
    p = np.asarray(probabilities, dtype=float)
    bounds = {"stricter": max, "looser": min}
    out = {"main": {"target_expected_precision": None, "threshold": float(threshold)}}
    for name, target in SCENARIO_TARGETS.items():
        out[name] = {"target_expected_precision": target,
                     "threshold": float(bounds[name](threshold, choose_threshold(p, target)))}
    for sc in out.values():
        sc["expected_precision"] = expected_quality(p, sc["threshold"])["expected_precision"]
    return out


def expected_quality(probabilities, threshold: float) -> dict:
    """The model's own expectation of its links at ``threshold``: precision is the mean match
    probability of the accepted candidates, recall their summed probability over that of all
    scored candidates (true matches that no blocking rule brought together are not counted)."""
    p = np.asarray(probabilities, dtype=float)
    acc = p[p >= threshold]
    return {"expected_precision": float(acc.mean()) if acc.size else 1.0,
            "expected_recall": float(acc.sum() / p.sum()) if p.sum() > 0 else 1.0}


def one_to_one_matches(pairs: pd.DataFrame, persons: pd.DataFrame, taken_persons=()) -> pd.DataFrame:
    """Greedy one-to-one assignment: pairs (tuple_id, record_id, match_probability,
    match_weight) taken best weight first, each tuple and each right person at most once
    (``taken_persons`` are already linked, deterministically). A tuple whose best free
    candidates tie between persons stays unassigned. Returns tuple_id, person_key,
    match_probability, match_weight."""
    cols = ["tuple_id", "person_key", "match_probability", "match_weight"]
    if pairs.empty:
        return pd.DataFrame({c: [] for c in cols})
    p = pairs.merge(persons, on="record_id")
    p = p.sort_values(["match_weight", "tuple_id", "person_key"], ascending=[False, True, True])
    p = p.drop_duplicates(["tuple_id", "person_key"])
    used_t, used_p, out = set(), set(taken_persons), []
    rows = list(zip(p["tuple_id"], p["person_key"], p["match_probability"], p["match_weight"]))
    i = 0
    while i < len(rows):
        j = i  # rows of equal weight are decided together: a tuple with two free persons at it ties
        while j < len(rows) and rows[j][3] == rows[i][3]:
            j += 1
        group = [r for r in rows[i:j] if r[0] not in used_t and r[1] not in used_p]
        by_tuple: dict = {}
        for r in group:
            by_tuple.setdefault(r[0], []).append(r)
        by_person: dict = {}
        for r in group:
            by_person.setdefault(r[1], []).append(r)
        for t, rs in by_tuple.items():
            if len(rs) == 1 and len(by_person[rs[0][1]]) == 1:
                out.append(rs[0])
                used_p.add(rs[0][1])
            used_t.add(t)  # tied tuples and persons stay unlinked at this weight and below
        for pk, rs in by_person.items():
            if len(rs) > 1:
                used_p.add(pk)
        i = j
    return pd.DataFrame(out, columns=cols) if out else pd.DataFrame({c: [] for c in cols})


# -- any two files (ltceval link) ------------------------------------------------------------

def link_files(left: pd.DataFrame, right: pd.DataFrame, left_id: str, right_id: str,
               field_map: dict[str, tuple[str, str]], compare: dict[str, tuple[str, str]] | None = None,
               threshold: float | None = None, seed: int = SEEDS.linkage, one_to_one: bool = False,
               target_precision: float = TARGET_PRECISION) -> tuple[pd.DataFrame, dict]:
    """Link the records of ``left`` to those of ``right``: the deterministic rule of
    link_sources (right plays the spine: its records sharing a valid NHS number and date of
    birth are one person), then a splink model with ``file_comparisons`` (fields compared by
    what they are: postcodes of any country, typo-aware dates of birth, free-text columns),
    EM-trained on these files. ``field_map``: standard field -> (left column, right column);
    ``compare``: name -> (left column, right column), extra free-text comparisons.

    A left record links to its best-scoring right person (ties between persons stay
    unlinked) at match probability >= ``threshold``; without one, the threshold is chosen from
    the model (``choose_threshold``: the lowest at which the expected precision of the links
    accepted is >= ``target_precision``). ``one_to_one`` (both files deduplicated): each left
    record and each right person links at most once, best match weights first.

    Returns (pairs, summary): one row per (left record, right record of the linked person)
    with match_probability, match_weight and rule; unlinked left records are not listed."""
    t0 = time.perf_counter()
    compare = compare or {}
    unknown = [f for f in field_map if f not in FIELD_COLS]
    if unknown:
        raise LinkageError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(FIELD_COLS)}")
    if not field_map and not compare:
        raise LinkageError("nothing to compare: map at least one field")
    if not 0.0 < target_precision < 1.0:
        raise LinkageError("target precision must be between 0 and 1")
    cols = [FIELD_COLS[f] for f in FIELD_COLS if f in field_map]
    lstd = standardise_fields(left, left_id, {f: c[0] for f, c in field_map.items()},
                              {n: c[0] for n, c in compare.items()}, any_country=True)
    rstd = standardise_fields(right, right_id, {f: c[1] for f, c in field_map.items()},
                              {n: c[1] for n, c in compare.items()}, any_country=True)
    for side, std, name in (("left", lstd, left_id), ("right", rstd, right_id)):
        if std["record_id"].isna().any():
            raise LinkageError(f"{side} id column {name}: {int(std['record_id'].isna().sum())} empty id(s)")
        if std["record_id"].duplicated().any():
            raise LinkageError(f"{side} id column {name}: {int(std['record_id'].duplicated().sum())} "
                               "duplicated id(s); ids must be unique")
    extra = [EXTRA_PREFIX + n for n in compare]
    all_cols = cols + extra
    uk = postcodes_are_uk(lstd["postcode"], rstd["postcode"]) if "postcode" in cols else True
    categories = frozenset(e for e in extra if pd.concat([lstd[e], rstd[e]]).nunique() <= CATEGORY_VALUES)
    persons = spine_persons(rstd, prefix="right")
    tuples = lstd.rename(columns={"record_id": "tuple_id"})[["tuple_id"] + all_cols]
    tuples["tuple_id"] = tuples["tuple_id"].astype(str)
    rstd["record_id"] = rstd["record_id"].astype(str)
    persons["record_id"] = persons["record_id"].astype(str)
    spine_ids = rstd[["record_id"] + all_cols]

    det = deterministic_links(tuples, spine_ids, persons)
    if one_to_one:  # a right person linked deterministically to two left records: neither stays
        dup = det["person_key"].duplicated(keep=False)
        det = det[~dup]
    unmatched = tuples[~tuples["tuple_id"].isin(det["tuple_id"])]
    prob_cols = [c for c in cols if c != "nhs"]
    model, blocking_info = None, {"prediction_rules": [], "training": {}}
    pairs = pd.DataFrame({"tuple_id": [], "record_id": [], "match_probability": [], "match_weight": []})
    if (prob_cols or extra) and not unmatched.empty:
        progress.report("link", "model training on %s left records against %s right records",
                        f"{len(tuples):,}", f"{len(spine_ids):,}")
        model = train_model(tuples, spine_ids, seed=seed, cols=cols, extra=list(compare),
                            training=blocking_info["training"], settings=file_settings(cols, extra, uk, categories),
                            u_max_pairs=FILE_U_PAIRS, validate_settings=False,
                            em_without_tf=True, count_prior=True)
        model = recalibrate_prior(model, cols, cols + extra)
        pairs = predict_links(unmatched, spine_ids, model, None, blocking_info, validate_settings=False)
    if one_to_one:
        cand = one_to_one_matches(pairs, persons, set(det["person_key"]))
    else:
        best = best_matches(pairs, persons, 0.0)
        cand = best[best["linked"].astype(bool)]  # ties between persons never link
    chosen_by = "given" if threshold is not None else "model"
    if threshold is None:
        threshold = choose_threshold(cand["match_probability"], target_precision)
    expected = expected_quality(cand["match_probability"], threshold)
    prob = cand[cand["match_probability"].astype(float) >= threshold]
    links = pd.concat([
        pd.DataFrame({"tuple_id": det["tuple_id"].to_numpy(), "person_key": det["person_key"].to_numpy(),
                      "rule": deterministic_rule(cols), "match_probability": 1.0, "match_weight": np.nan}),
        pd.DataFrame({"tuple_id": prob["tuple_id"].to_numpy(), "person_key": prob["person_key"].to_numpy(),
                      "rule": "probabilistic", "match_probability": prob["match_probability"].to_numpy(dtype=float),
                      "match_weight": prob["match_weight"].to_numpy(dtype=float)})], ignore_index=True)
    pairs_out = links.merge(persons, on="person_key").rename(
        columns={"tuple_id": "left_id", "record_id": "right_id"})
    pairs_out = pairs_out[["left_id", "right_id", "match_probability", "match_weight", "rule"]] \
        .sort_values(["left_id", "right_id"]).reset_index(drop=True)
    n_linked = int(links["tuple_id"].nunique())
    summary = {
        "records": {"left": int(len(lstd)), "right": int(len(rstd))},
        "fields": {f: {"left": c[0], "right": c[1]} for f, c in field_map.items()},
        "compare": {n: {"left": c[0], "right": c[1]} for n, c in compare.items()},
        "candidate_pairs": int(len(pairs)),
        "blocking": blocking_info,  # pairs per rule, counted before scoring; rules over budget skipped
        "links": {"left_records_linked": n_linked, "pairs": int(len(pairs_out)),
                  "deterministic": int(len(det)), "probabilistic": int(len(prob)),
                  "unlinked": int(len(lstd) - n_linked), "one_to_one": bool(one_to_one)},
        "thresholds": {"match_probability": float(threshold), "chosen_by": chosen_by,
                       "target_expected_precision": float(target_precision) if chosen_by == "model" else None,
                       **expected,
                       "expected_from": "the model's match probabilities of the "
                                        + ("one-to-one assigned pair" if one_to_one else "best candidate")
                                        + " of each left record not linked deterministically (scored from 0.01)",
                       "candidate_pairs_scored_from": 0.01,
                       "deterministic": "valid NHS number (Modulus 11) equal"
                                        + (" and date of birth equal or day/month swapped" if "dob" in cols else "")},
        "model": {"comparisons": _model_columns(model),
                  "postcodes": ("UK" if uk else "any country") if "postcode" in cols else None,
                  "categories": sorted(categories)} if model else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return pairs_out, summary


# -- quality against ground truth ------------------------------------------------------------
def linkage_metrics(record_person: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Precision and recall of record -> spine-person links against ground truth
    (source, record_id, true_person_id). A link is correct when the linked spine person's
    records belong to the record's true person. Recall's denominator: non-spine records whose
    true person has a spine record. Also reports spine clusters that merge different people."""
    t = truth[["source", "record_id", "true_person_id"]]
    rp = record_person.merge(t, on=["source", "record_id"], how="left")
    spine = rp[rp["source"] == SPINE]
    key_truth = spine.groupby("person_key")["true_person_id"].agg(lambda s: set(s))
    impure = int((key_truth.map(len) > 1).sum())
    true_to_keys = spine.groupby("true_person_id")["person_key"].nunique()
    other = rp[rp["source"] != SPINE].copy()
    linked = other[other["person_key"].notna()]
    correct = linked.apply(lambda r: key_truth.get(r["person_key"], set()) == {r["true_person_id"]}, axis=1)
    linkable = other["true_person_id"].isin(spine["true_person_id"])
    n_correct = int(correct.sum())
    by_rule = {}
    for rule, grp in linked.assign(correct=correct.to_numpy()).groupby("rule"):
        by_rule[rule] = {"links": int(len(grp)), "wrong": int((~grp["correct"]).sum())}
    return {
        "precision": n_correct / len(linked) if len(linked) else 1.0,
        "recall": n_correct / int(linkable.sum()) if linkable.any() else 1.0,
        "links": int(len(linked)), "correct": n_correct, "linkable": int(linkable.sum()),
        "unlinked_linkable": int((linkable & other["person_key"].isna()).sum()),
        "spine_impure_clusters": impure,
        "spine_persons_split": int((true_to_keys > 1).sum()),
        "by_rule": by_rule,
    }


def _pr(grp: pd.DataFrame) -> dict:
    linked = grp["linked"]
    n_link, n_correct = int(linked.sum()), int((linked & grp["correct"]).sum())
    n_linkable = int(grp["linkable"].sum())
    n_found = int((grp["linkable"] & grp["correct"]).sum())
    return {"records": int(len(grp)), "links": n_link, "wrong_links": n_link - n_correct,
            "linkable": n_linkable,
            "precision": n_correct / n_link if n_link else 1.0,
            "recall": n_found / n_linkable if n_linkable else 1.0}


def linkage_quality(record_person: pd.DataFrame, truth: pd.DataFrame,
                    attributes: pd.DataFrame | None = None) -> dict:
    """Precision and recall against ground truth, overall, per source and per subgroup.

    ``truth``: source, record_id, true_person_id. ``attributes`` (optional): true_person_id
    plus subgroup columns (e.g. age_band, sex, ethnic_category, imd_decile); each becomes a
    breakdown. A link is correct when every spine record of the linked person belongs to the
    record's true person; recall's denominator is the records whose true person is on the
    spine (unregistered people count only against precision). ``impure_clusters``: linked
    persons whose records (spine and linked) belong to more than one true person."""
    t = truth[["source", "record_id", "true_person_id"]]
    rp = record_person[["source", "record_id", "person_key"]].merge(t, on=["source", "record_id"], how="left")
    spine = rp[rp["source"] == SPINE]
    key_truth = spine.groupby("person_key")["true_person_id"].agg(lambda s: frozenset(s))
    other = rp[rp["source"] != SPINE].copy()
    other["linked"] = other["person_key"].notna()
    kt = other["person_key"].map(key_truth)
    other["correct"] = [bool(ok) and k == frozenset([p]) for ok, k, p in
                        zip(other["linked"], kt.tolist(), other["true_person_id"].tolist())]
    other["linkable"] = other["true_person_id"].isin(set(spine["true_person_id"]))
    clusters = rp[rp["person_key"].notna()].groupby("person_key")["true_person_id"].nunique()
    out = {"overall": _pr(other), "by_source": {s: _pr(g) for s, g in other.groupby("source")},
           "impure_clusters": int((clusters > 1).sum()), "clusters": int(len(clusters)),
           "unregistered_records": int((~other["linkable"]).sum()),
           "unregistered_linked": int((~other["linkable"] & other["linked"]).sum()),
           "by_subgroup": {}}
    if attributes is not None:
        a = other.merge(attributes, on="true_person_id", how="left")
        for dim in [c for c in attributes.columns if c != "true_person_id"]:
            out["by_subgroup"][dim] = {str(v): _pr(g) for v, g in
                                       a.assign(**{dim: a[dim].astype(object).where(a[dim].notna(), "unknown")})
                                       .groupby(dim)}
    return out
