"""Pseudonymisation: HMAC-SHA256 person ids and the analytical-zone tables (contract §3).

The key comes from, in order: the environment variable ``LTCEVAL_PSEUDO_KEY``; the file named
by ``LTCEVAL_PSEUDO_KEY_FILE``; the Airflow Variable ``ltceval_pseudo_key``; the password of
the Airflow Connection ``ltceval_pseudo_key``. Airflow's ``Variable.get``/``Connection.get``
go through the configured secrets backends (environment ``AIRFLOW_VAR_*``/``AIRFLOW_CONN_*``,
HashiCorp Vault, AWS/GCP/Azure secret managers, ...) before the metadata database, so a
secrets backend needs no code here. Whatever the channel, the key is normalised the same way
(``core.keys.normalise_key``: surrounding whitespace stripped, then at least 32 characters, 16
of them different), so one secret gives one set of pseudonyms. A key file readable by group or
others is used with a warning. Errors name where the key was looked for, never the key. Only a
fingerprint (first 12 hex of SHA-256 of "fingerprint:" + key) is ever reported.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import progress
from core.linkage_tables import ALTERNATIVES, ALTERNATIVES_SCHEMA, SCENARIOS, scenarios_table
from identifiable_zone.blocking import connection, sql_path
from identifiable_zone.cross_file_rules import text_array
from identifiable_zone.sources import SPINE
from core.keys import (AIRFLOW_KEY_CONNECTION, AIRFLOW_KEY_VARIABLE, MIN_KEY_LENGTH, PseudoKeyError, key_file_exposure,
                       normalise_key, read_key_file)
from core.settings import KEY_ENV, KEY_FILE_ENV, env_value

log = logging.getLogger(__name__)
AIRFLOW_VARIABLE = AIRFLOW_KEY_VARIABLE
__all__ = ["MIN_KEY_LENGTH", "PseudoKeyError"]  # the key's rules live in core.keys; named here as before


AIRFLOW_CONNECTION = AIRFLOW_KEY_CONNECTION


def _airflow_variable() -> str | None:
    try:
        from airflow.sdk import Variable
    except Exception:  # not running with Airflow installed
        return None
    try:
        return Variable.get(AIRFLOW_VARIABLE, default=None)
    except Exception:  # no metadata database, or no such variable
        return None


def _airflow_connection() -> str | None:
    try:
        from airflow.sdk import Connection
    except Exception:
        return None
    try:
        return Connection.get(AIRFLOW_CONNECTION).password
    except Exception:  # no such connection
        return None


def load_key(use_airflow_variable: bool = True) -> bytes:
    """The project key as bytes (see the module docstring for where it is looked for)."""
    return load_key_with_source(use_airflow_variable)[0]


def load_key_with_source(use_airflow: bool = True) -> tuple[bytes, str]:
    """(key, where it came from). ``where`` names the source, never the key. Every channel's
    value goes through ``core.keys.normalise_key``."""
    raw, where = None, None
    if env_value(KEY_ENV) is not None:  # set, even to blanks: refused below, not passed over
        raw, where = env_value(KEY_ENV), f"environment variable {KEY_ENV}"
    elif env_value(KEY_FILE_ENV):
        path = Path(env_value(KEY_FILE_ENV))
        where = f"key file named by {KEY_FILE_ENV}"
        raw = read_key_file(path, where)
        exposed = key_file_exposure(path)
        if exposed:
            log.warning(exposed)
    elif use_airflow:
        raw, where = _airflow_variable(), f"Airflow Variable {AIRFLOW_VARIABLE}"
        if raw is None or raw == "":
            raw, where = _airflow_connection(), f"Airflow Connection {AIRFLOW_CONNECTION} (password)"
    key = normalise_key(raw, where) if raw is not None else None
    if key is None:
        raise PseudoKeyError(
            f"no pseudonymisation key: set {KEY_ENV}, or {KEY_FILE_ENV} to a file holding the key"
            f", or the Airflow Variable {AIRFLOW_VARIABLE} or Connection {AIRFLOW_CONNECTION} "
            f"(at least {MIN_KEY_LENGTH} characters)")
    return key, where


def key_fingerprint(key: bytes) -> str:
    """First 12 hex characters of SHA-256("fingerprint:" + key): identifies a key, reveals nothing."""
    return hashlib.sha256(b"fingerprint:" + key).hexdigest()[:12]


def pseudonym(canonical_id: str, key: bytes) -> str:
    return hmac.new(key, canonical_id.encode("utf-8"), hashlib.sha256).hexdigest()


# A record id's pseudonym: 128 bits are ample for uniqueness (tens of millions of records) and
# halve the warehouse's id columns against a whole SHA-256.
RECORD_ID_HEX = 32


def record_pseudonym(domain: str, record_id: str, key: bytes) -> str:
    """Pseudonym of a source record id (EC_Ident, APCS_Ident, ServiceRequestId, ...): HMAC-SHA256
    under the project key of "record_id:<domain>:<id>", first ``RECORD_ID_HEX`` hex characters.
    ``domain`` is the record id column of the source the id belongs to, so one value under two
    fields gives two unrelated pseudonyms (domain separation), a foreign key matches its target,
    and a new key changes every pseudonym (joining old and new tables on record ids no longer
    maps old person ids to new ones)."""
    return hmac.new(key, f"record_id:{domain}:{record_id}".encode("utf-8"), hashlib.sha256).hexdigest()[:RECORD_ID_HEX]


def _register_record_pseudonym(con, key: bytes) -> None:
    """SQL function ``record_pseudonym(domain, id)`` = ``record_pseudonym`` above, run by DuckDB
    on each vector of rows as it streams a table out (a table's ids never sit in memory at once);
    the key stays in this closure and never enters SQL text."""
    base = hmac.new(key, digestmod=hashlib.sha256)

    def udf(domains: pa.Array, ids: pa.Array) -> pa.Array:
        out = []
        for domain, rid in zip(domains.to_pylist(), ids.to_pylist()):
            if rid is None:
                out.append(None)
                continue
            h = base.copy()
            h.update(f"record_id:{domain}:{rid}".encode("utf-8"))
            out.append(h.hexdigest()[:RECORD_ID_HEX])
        return pa.array(out, type=pa.string())

    con.create_function("record_pseudonym", udf, ["VARCHAR", "VARCHAR"], "VARCHAR", type="arrow")


def pseudonymise_keys(person_keys: pd.Series, key: bytes) -> pd.Series:
    """Map canonical person keys to pseudonyms, hashing each distinct key once; None stays None."""
    from identifiable_zone import normalise as nz

    return nz._map(person_keys, lambda k: pseudonym(k, key))


# -- typed output ----------------------------------------------------------------------------

def to_arrow(df: pd.DataFrame, dates: list[str] = (), numeric: list[str] = ()) -> pa.Table:
    """Strings stay strings; ISO date columns become DATE; numeric columns int64 or float64."""
    arrays, names = [], []
    for c in df.columns:
        s = df[c]
        if c in dates:
            d = pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
            arr = pa.array(d.to_numpy().astype("datetime64[D]"), from_pandas=True).cast(pa.date32())
        elif c in numeric:
            n = pd.to_numeric(s, errors="coerce")
            if pd.api.types.is_integer_dtype(n):
                arr = pa.array(n.to_numpy(dtype="int64"), type=pa.int64())
            else:
                arr = pa.array(n.to_numpy(dtype="float64"), from_pandas=True, type=pa.float64())
                if n.dropna().mod(1).eq(0).all():
                    arr = arr.cast(pa.int64())
        elif pd.api.types.is_integer_dtype(s) and not s.isna().any():
            arr = pa.array(s.to_numpy(dtype="int64"), type=pa.int64())
        else:
            arr = text_array(s)
        arrays.append(arr)
        names.append(c)
    return pa.Table.from_arrays(arrays, names=names)


@contextmanager
def publish_folder_atomically(target: Path) -> Iterator[Path]:
    """A sibling temp folder to write into; on leaving without an error it is swapped in for
    ``target``.

    The swap is two renames on one file system (old -> .old-*, temp -> target); readers see
    either the complete old set or the complete new set, never a half-written table."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        old = target.parent / f".{target.name}.old-{tag}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- the analytical-zone tables ----------------------------------------------------------------

# source table -> published table name (contract §3)
PUBLISH_AS = {
    "gp_conditions": "gp_conditions", "gp_appointments": "gp_appointments",
    "iapt_ids101_referral": "iapt_referral", "iapt_ids201_care_contact": "iapt_care_contact",
    "iapt_ids202_care_activity": "iapt_care_activity", "iapt_ids602_ltc": "iapt_ltc",
    "iapt_ids606_coded_scores": "iapt_coded_scores", "ecds": "ecds", "apc": "apc", "opa": "opa",
    "lsoa_imd": "lsoa_imd",
}
# tables published with no person_id (no identifiers and no direct person key)
UNCHANGED = {"iapt_ids201_care_contact", "iapt_ids202_care_activity", "iapt_ids602_ltc",
             "iapt_ids606_coded_scores", "lsoa_imd"}


def _q(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _register_person_ids(con, record_person: Path, key: bytes) -> int:
    """Table ``person_ids`` (person_key, person_id): every distinct person key hashed once, in
    Python (the key never enters SQL text). Returns the number of persons."""
    keys = con.sql(f"SELECT DISTINCT person_key FROM read_parquet({sql_path(record_person)}) "
                   "WHERE person_key IS NOT NULL").to_arrow_table().column(0).to_pylist()
    ids = pa.table({"person_key": pa.array(keys, type=pa.string()),
                    "person_id": pa.array([pseudonym(k, key) for k in keys], type=pa.string())})
    con.register("person_ids_arrow", ids)
    con.execute("CREATE TEMP TABLE person_ids AS SELECT * FROM person_ids_arrow")
    con.unregister("person_ids_arrow")
    return len(keys)


def _hmac_on_spark(values, key: bytes, out: Path) -> Path:
    """Spark: each row (domain, raw) of the Spark DataFrame ``values`` (distinct) with its
    pseudonym, into Parquet folder ``out`` inside the identifiable zone: ``pseudonym(raw)`` for
    the domain ``PERSON_DOMAIN`` (person keys), else ``record_pseudonym(domain, raw)``. The
    HMAC is the one definition above, run by mapInPandas in Spark's Python workers; the key
    travels only in the function's closure (never in a Spark setting, SQL text or a log)."""
    def hash_batches(batches):
        for batch in batches:
            yield batch.assign(pseudonym=[
                pseudonym(raw, key) if domain == PERSON_DOMAIN else record_pseudonym(domain, raw, key)
                for domain, raw in zip(batch["domain"], batch["raw"])])

    values.mapInPandas(hash_batches, "domain string, raw string, pseudonym string") \
        .write.mode("overwrite").parquet(str(out))
    return out


PERSON_DOMAIN = ""  # not a column name: the domain of person keys among the values hashed on Spark


def _register_pseudonyms_from_spark(con, spark, accepted_dir: Path, sources: dict, record_person: Path,
                                    key: bytes, spill_dir: Path) -> int:
    """The spark engine's ``_register_person_ids`` and ``_register_record_pseudonym``: the
    distinct person keys of ``record_person`` and the distinct values of every record id column
    (``sources``: source -> its spec; column -> domain) are hashed on Spark (``_hmac_on_spark``);
    DuckDB reads the result as table ``person_ids`` and macro ``record_pseudonym(domain, id)``,
    so the tables are assembled by the same SQL as on DuckDB. Returns the number of persons."""
    from pyspark.sql import functions as F

    values = spark.read.parquet(str(record_person)).where(F.col("person_key").isNotNull()) \
        .select(F.lit(PERSON_DOMAIN).alias("domain"), F.col("person_key").alias("raw"))
    for source, spec in sources.items():
        frame = spark.read.parquet(str(accepted_dir / f"{source}.parquet"))
        for column, domain in spec.pseudonymised_columns.items():
            if column in frame.columns:
                values = values.unionByName(frame.where(F.col(column).isNotNull()).select(
                    F.lit(domain).alias("domain"), F.col(column).cast("string").alias("raw")))
    folder = spill_dir / "spark_pseudonyms"  # identifiers beside their pseudonyms: removed once read
    try:
        files = sql_path(str(_hmac_on_spark(values.distinct(), key, folder) / "*.parquet"))
        con.execute(f"CREATE TEMP TABLE person_ids AS SELECT raw AS person_key, pseudonym AS person_id "
                    f"FROM read_parquet({files}) WHERE domain = '{PERSON_DOMAIN}'")
        con.execute(f"CREATE TEMP TABLE record_pseudonyms AS SELECT domain, raw, pseudonym "
                    f"FROM read_parquet({files}) WHERE domain <> '{PERSON_DOMAIN}'")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    con.execute("CREATE TEMP MACRO record_pseudonym(d, i) AS "
                "(SELECT p.pseudonym FROM record_pseudonyms p WHERE p.domain = d AND p.raw = i)")
    return con.execute("SELECT count(*) FROM person_ids").fetchall()[0][0]


def _records_of(record_person: Path, source: str) -> str:
    """SQL: (record_id, person_id) of ``source``'s records linked to a person."""
    src = source.replace("'", "''")
    return (f"(SELECT r.record_id, p.person_id FROM read_parquet({sql_path(record_person)}) r "
            f"JOIN person_ids p USING (person_key) WHERE r.source = '{src}')")


def _sql_date(column: str) -> str:
    """SQL: the ISO date text in ``a.<column>`` as a DATE, missing where it does not parse."""
    return f"CAST(TRY_STRPTIME(a.{_q(column)}, '%Y-%m-%d') AS DATE)"


def _typed_columns(con, accepted: Path, keep: list[str], dates: list[str], numeric: list[str],
                   pseudonymised: Mapping[str, str] | None = None) -> list[str]:
    """SQL select items: ISO dates become DATE, numbers BIGINT when every value is whole (else
    DOUBLE), anything unparsable missing; record id columns (``pseudonymised``: column ->
    domain) their keyed pseudonyms; other columns stay text. Same types as ``to_arrow``."""
    pseudonymised = pseudonymised or {}
    whole = {}
    if numeric:
        probes = ", ".join(f"coalesce(bool_and(v{i} = floor(v{i})), true)" for i in range(len(numeric)))
        casts = ", ".join(f"TRY_CAST(a.{_q(c)} AS DOUBLE) AS v{i}" for i, c in enumerate(numeric))
        row = con.execute(f"SELECT {probes} FROM (SELECT {casts} FROM read_parquet({sql_path(accepted)}) a)").fetchall()[0]
        whole = dict(zip(numeric, row))
    items = []
    for c in keep:
        if c in pseudonymised:
            domain = pseudonymised[c].replace("'", "''")
            items.append(f"record_pseudonym('{domain}', a.{_q(c)}) AS {_q(c)}")
        elif c in dates:
            items.append(f"{_sql_date(c)} AS {_q(c)}")
        elif c in numeric:
            cast = f"TRY_CAST(a.{_q(c)} AS DOUBLE)"
            items.append(f"CAST({cast} AS BIGINT) AS {_q(c)}" if whole[c] else f"{cast} AS {_q(c)}")
        else:
            items.append(f"a.{_q(c)}")
    return items


def _write_query(con, sql: str, target: Path) -> None:
    """Stream a query's rows into a Parquet file, every column nullable: the published schema
    does not change with whether this extract happened to have a missing value."""
    reader = con.sql(sql).to_arrow_reader(256_000)
    schema = pa.schema([f.with_nullable(True) for f in reader.schema])
    with pq.ParquetWriter(target, schema) as writer:
        for batch in reader:
            writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))


def _value_table(con, name: str, values: list, columns: dict[str, pa.Array]) -> None:
    """TEMP table ``name`` (raw, *columns): what a Python rule gives for each distinct raw value,
    so the SQL applies the one definition in ``normalise`` and not a copy of it."""
    con.register(f"{name}_arrow", pa.table({"raw": pa.array(values, type=pa.string()), **columns}))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


# Person dates leave the zone at month grain, written as the 15th of their month: a
# registration at birth gave the full date of birth, a date of death published to the day is
# itself identifying, and with sex, birth month, LSOA and practice they made everyone unique.
# Mid-month keeps the panel's exposure in a partial month half a month on average and
# eligibility ("registered before the baseline's first month", "alive at the index month") as
# day-level dates give it; event dates (admissions, discharges: bed days) keep their day.
PERSON_DATES_DAY = 15


def _month_grain(column: str) -> str:
    """SQL: the DATE in ``column`` as the ``PERSON_DATES_DAY`` of its month (missing stays missing)."""
    return f"make_date(year({column}), month({column}), {PERSON_DATES_DAY})"


def _write_person_table(con, spine_file: Path, spec, record_person: Path, target: Path) -> int:
    """One row per linked spine person (records of one person collapsed), in person-key order:
    sex, year and month of birth, ethnic category, LSOA and practice of the most recent
    registration (latest start; missing starts count as earliest; ties to the larger record
    id), the earliest start, the latest end unless some registration is still open, the
    latest date of death, the three dates at month grain (``PERSON_DATES_DAY``). Written by
    DuckDB from the accepted spine (it was a pandas groupby of every spine record: 74 s at
    2,000,000 people). Returns the persons written."""
    from identifiable_zone import normalise as nz

    src = f"read_parquet({sql_path(spine_file)})"
    if "dob" in spec.identifiers:
        birth, as_date = spec.identifiers["dob"], (lambda v: v)
    elif spec.demographics.get("birth_month"):  # pseudonymised upstream: YYYY-MM (or a date)
        birth, as_date = spec.demographics["birth_month"], (lambda v: v + "-01" if len(v) == 7 else v)
    else:
        birth = None
    sex_col = spec.identifiers.get("sex") or spec.demographics.get("sex")

    def distinct(col) -> list:
        return [] if col is None else con.sql(
            f"SELECT DISTINCT {_q(col)} FROM {src} WHERE {_q(col)} IS NOT NULL").to_arrow_table().column(0).to_pylist()

    births = distinct(birth)
    parsed = nz.parse_date(pd.Series(births, dtype=object).map(as_date)) if births else \
        pd.Series([], dtype="datetime64[s]")
    _value_table(con, "birth_values", births, {"yob": pa.array(parsed.dt.year.astype("Int64"), type=pa.int64()),
                                               "mob": pa.array(parsed.dt.month.astype("Int64"), type=pa.int64())})
    sexes = distinct(sex_col)
    sex = nz.normalise_sex(pd.Series(sexes, dtype=object)).tolist() if sexes else []
    _value_table(con, "sex_values", sexes, {"sex": pa.array([v if v in ("M", "F") else "U" for v in sex],
                                                            type=pa.string())})

    sql = f"""
        WITH s AS (
            SELECT p.person_key, a.{_q(spec.record_id)} AS record_id,
                   {_sql_date("RegistrationStartDate")} AS start_date, {_sql_date("RegistrationEndDate")} AS end_date,
                   {_sql_date("DateOfDeath")} AS death_date,
                   coalesce(sx.sex, 'U') AS sex, b.yob, b.mob,
                   a."EthnicCategory" AS ethnic_category, a."LSOA11" AS lsoa11, a."PracticeCode" AS practice_code
            FROM {src} a
            JOIN (SELECT record_id, person_key FROM read_parquet({sql_path(record_person)})
                  WHERE source = '{SPINE}') p ON a.{_q(spec.record_id)} = p.record_id
            LEFT JOIN birth_values b ON {f'a.{_q(birth)} = b.raw' if birth else 'false'}
            LEFT JOIN sex_values sx ON {f'a.{_q(sex_col)} = sx.raw' if sex_col else 'false'}),
        latest AS (
            SELECT *, row_number() OVER (PARTITION BY person_key
                                         ORDER BY start_date DESC NULLS LAST, record_id DESC) AS recency
            FROM s),
        spans AS (
            SELECT person_key, min(start_date) AS registration_start,
                   CASE WHEN bool_or(end_date IS NULL) THEN NULL ELSE max(end_date) END AS registration_end,
                   max(death_date) AS date_of_death
            FROM s GROUP BY person_key)
        SELECT i.person_id, l.sex, l.yob AS year_of_birth, l.mob AS month_of_birth, l.ethnic_category,
               l.lsoa11, l.practice_code, {_month_grain("sp.registration_start")} AS registration_start,
               {_month_grain("sp.registration_end")} AS registration_end,
               {_month_grain("sp.date_of_death")} AS date_of_death
        FROM latest l JOIN spans sp USING (person_key) JOIN person_ids i USING (person_key)
        WHERE l.recency = 1
        ORDER BY l.person_key"""
    _write_query(con, sql, target)
    return pq.ParquetFile(target).metadata.num_rows


def _scenario_records_of(record_person: Path, source: str, scenarios: dict) -> str:
    """SQL: (record_id, person_key, key_stricter, key_looser) of ``source``'s records: at the
    stricter threshold a probabilistic link below it is dropped; at the looser one an unlinked
    record whose untied best candidate scores at least it links to that candidate."""
    src = source.replace("'", "''")
    strict, loose = float(scenarios["stricter"]["threshold"]), float(scenarios["looser"]["threshold"])
    return (f"(SELECT record_id, person_key, "
            f"CASE WHEN rule = 'probabilistic' AND match_probability < {strict!r} THEN NULL ELSE person_key END "
            f"AS key_stricter, "
            f"CASE WHEN rule = 'unlinked' AND match_probability >= {loose!r} THEN candidate_person_key "
            f"ELSE person_key END AS key_looser "
            f"FROM read_parquet({sql_path(record_person)}) WHERE source = '{src}')")


def _write_scenarios(con, out: Path, scenarios: dict | None, parts: list[str]) -> dict:
    """``linkage_scenarios`` (main, stricter, looser: target, threshold, expected precision; no
    counts) and ``linkage_alternatives`` (the union of ``parts``: each published record whose
    person differs under a scenario); both with no rows when there are no ``scenarios``.
    Returns their summary entries."""
    table = scenarios_table(scenarios)
    pq.write_table(table, out / f"{SCENARIOS}.parquet")
    if parts:
        _write_query(con, " UNION ALL ".join(parts), out / f"{ALTERNATIVES}.parquet")
    else:
        pq.write_table(ALTERNATIVES_SCHEMA.empty_table(), out / f"{ALTERNATIVES}.parquet")
    rows = pq.ParquetFile(out / f"{ALTERNATIVES}.parquet").metadata.num_rows
    return {SCENARIOS: {"rows": table.num_rows, "rows_without_person": None,
                        "columns": table.column_names, "withheld": [], "pseudonymised": []},
            ALTERNATIVES: {"rows": int(rows), "rows_without_person": None,
                           "columns": ALTERNATIVES_SCHEMA.names, "withheld": [], "pseudonymised": ["record_id"]}}


def build_tables(accepted_dir: Path, cfg, record_person: Path, key: bytes, out: Path,
                 spill_dir: Path | None = None,
                 row_counts: Mapping[str, int] | None = None,
                 threshold_scenarios: dict | None = None, spark=None) -> dict:
    """Write the pseudonymised tables of contract §3 into ``out`` and return a summary (row
    counts, rows without a person, columns that left the zone per table, columns withheld).

    Each source is copied from its accepted Parquet by DuckDB (bounded by its memory limit,
    spilling to ``spill_dir``), in its own row order, with the person id joined on from the
    links, and the person table (one row per spine person) from the accepted spine; ``row_counts``
    (accepted rows per source) gives the progress lines their total. Also ``linkage_scenarios``
    and ``linkage_alternatives`` (``core.linkage_tables``): with ``threshold_scenarios``
    (``link.threshold_scenarios``) the records of each person-linked table whose person differs
    at the stricter or looser threshold (the business case's linkage sensitivity), else none.

    ``spark`` (a session, the spark engine): the HMAC of the distinct person keys and record ids
    runs on Spark (``_register_pseudonyms_from_spark``; ``spill_dir`` then required); the
    tables are still assembled by DuckDB, with the same SQL, so the files are the same."""
    summary: dict = {"tables": {}}
    present = [s for s in PUBLISH_AS if s in cfg.sources and (accepted_dir / f"{s}.parquet").exists()]
    if spark is not None and spill_dir is None:
        raise ValueError("pseudonymisation on Spark needs a spill folder in the identifiable zone")
    with connection(spill_dir) as con:
        con.execute("SET preserve_insertion_order = true")
        if spark is None:
            _register_person_ids(con, record_person, key)
            _register_record_pseudonym(con, key)
        else:
            _register_pseudonyms_from_spark(con, spark, accepted_dir, {s: cfg[s] for s in present}, record_person,
                                            key, spill_dir)

        spine_spec = cfg[SPINE]
        persons = _write_person_table(con, accepted_dir / f"{SPINE}.parquet", spine_spec, record_person,
                                      out / "person.parquet")
        progress.report("pseudonymise", "person written, %s persons", f"{persons:,}")
        summary["tables"]["person"] = {
            "rows": persons, "rows_without_person": 0, "columns": pq.read_schema(out / "person.parquet").names,
            "withheld": sorted(spine_spec.columns)}

        rows_total = sum(row_counts.get(s, 0) for s in present) if row_counts else 0
        rows_done = 0
        alternatives = []
        for i, source in enumerate(present, 1):
            name, spec = PUBLISH_AS[source], cfg[source]
            src_file = accepted_dir / f"{source}.parquet"
            drop = set(spec.person_columns)
            join = ""
            if source not in UNCHANGED:
                if spec.links_persons:
                    fk, of = spec.record_id, source
                else:
                    (fk, of), = spec.parent.items()
                    drop.add(fk)  # PatientRecordId / LocalPatientId: local patient ids leave nothing
                join = f"LEFT JOIN {_records_of(record_person, of)} m ON a.{_q(fk)} = m.record_id"
                if threshold_scenarios:
                    domain = spec.pseudonymised_columns[spec.record_id].replace("'", "''")
                    alternatives.append(
                        f"SELECT '{name}' AS table_name, record_pseudonym('{domain}', a.{_q(spec.record_id)}) AS record_id, "
                        f"ps.person_id AS person_id_stricter, pl.person_id AS person_id_looser "
                        f"FROM read_parquet({sql_path(src_file)}) a "
                        f"JOIN {_scenario_records_of(record_person, of, threshold_scenarios)} r ON a.{_q(fk)} = r.record_id "
                        f"LEFT JOIN person_ids ps ON ps.person_key = r.key_stricter "
                        f"LEFT JOIN person_ids pl ON pl.person_key = r.key_looser "
                        f"WHERE r.key_stricter IS DISTINCT FROM r.person_key OR r.key_looser IS DISTINCT FROM r.person_key")
            keep = [c for c in spec.columns if c not in drop]
            pseudonymised = {c: d for c, d in spec.pseudonymised_columns.items() if c in keep}
            items = _typed_columns(con, src_file, keep, [c for c in spec.dates if c in keep],
                                   [c for c in spec.numeric if c in keep], pseudonymised)
            if join:
                items.insert(0, "m.person_id")
            target = out / f"{name}.parquet"
            _write_query(con, f"SELECT {', '.join(items)} FROM read_parquet({sql_path(src_file)}, file_row_number = true) a "
                              f"{join} ORDER BY a.file_row_number", target)
            rows_in = con.execute(f"SELECT count(*) FROM read_parquet({sql_path(src_file)})").fetchall()[0][0]
            rows, with_person = con.execute(
                f"SELECT count(*), {'count(person_id)' if join else 'NULL'} FROM read_parquet({sql_path(target)})").fetchall()[0]
            if rows != rows_in:  # a record id linked twice would repeat its rows: never publish that
                raise RuntimeError(f"pseudonymise {source}: {rows_in:,} accepted rows became {rows:,} "
                                   f"published rows; each record must link to at most one person")
            summary["tables"][name] = {
                "rows": int(rows),
                "rows_without_person": int(rows - with_person) if join else None,
                "columns": (["person_id"] if join else []) + keep,
                "withheld": sorted(drop & set(spec.columns)),
                "pseudonymised": sorted(pseudonymised),
            }
            rows_done += rows
            progress.report("pseudonymise", "%s written, %d/%d tables, %s of %s rows", name, i, len(present),
                            f"{rows_done:,}", f"{max(rows_total, rows_done):,}")
        summary["tables"].update(_write_scenarios(con, out, threshold_scenarios, alternatives))
    return summary
