"""Pseudonymisation: HMAC-SHA256 person ids and the analytical-zone tables (contract §3).

The key comes from, in order: the environment variable ``LTCEVAL_PSEUDO_KEY``; the file named
by ``LTCEVAL_PSEUDO_KEY_FILE``; the Airflow Variable ``ltceval_pseudo_key``; the password of
the Airflow Connection ``ltceval_pseudo_key``. Airflow's ``Variable.get``/``Connection.get``
go through the configured secrets backends (environment ``AIRFLOW_VAR_*``/``AIRFLOW_CONN_*``,
HashiCorp Vault, AWS/GCP/Azure secret managers, ...) before the metadata database, so a
secrets backend needs no code here. It must be at least 32 characters. Errors name where the key was looked for, never the key. Only a fingerprint
(first 12 hex of SHA-256 of "fingerprint:" + key) is ever reported.
"""
from __future__ import annotations

import hashlib
import hmac
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
from identifiable_zone.blocking import connection, sql_path
from identifiable_zone.cross_file_rules import text_array
from core.settings import KEY_ENV, KEY_FILE_ENV, env_value

MIN_KEY_LENGTH = 32
AIRFLOW_VARIABLE = "ltceval_pseudo_key"


class PseudoKeyError(RuntimeError):
    """The pseudonymisation key is missing or too short (message never contains the key)."""


AIRFLOW_CONNECTION = "ltceval_pseudo_key"


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
    """(key, where it came from). ``where`` names the source, never the key."""
    key, where = None, None
    if env_value(KEY_ENV):
        key, where = env_value(KEY_ENV), f"environment variable {KEY_ENV}"
    elif env_value(KEY_FILE_ENV):
        path = Path(env_value(KEY_FILE_ENV))
        where = f"key file named by {KEY_FILE_ENV}"
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise PseudoKeyError(f"cannot read the {where} ({type(e).__name__})") from None
    elif use_airflow:
        key, where = _airflow_variable(), f"Airflow Variable {AIRFLOW_VARIABLE}"
        if not key:
            key, where = _airflow_connection(), f"Airflow Connection {AIRFLOW_CONNECTION} (password)"
    if not key:
        raise PseudoKeyError(
            f"no pseudonymisation key: set {KEY_ENV}, or {KEY_FILE_ENV} to a file holding the key"
            f", or the Airflow Variable {AIRFLOW_VARIABLE} or Connection {AIRFLOW_CONNECTION} "
            f"(at least {MIN_KEY_LENGTH} characters)")
    if len(key) < MIN_KEY_LENGTH:
        raise PseudoKeyError(
            f"the pseudonymisation key from the {where} is too short: it must be at least "
            f"{MIN_KEY_LENGTH} characters")
    return key.encode("utf-8"), where


def key_fingerprint(key: bytes) -> str:
    """First 12 hex characters of SHA-256("fingerprint:" + key): identifies a key, reveals nothing."""
    return hashlib.sha256(b"fingerprint:" + key).hexdigest()[:12]


def pseudonym(canonical_id: str, key: bytes) -> str:
    return hmac.new(key, canonical_id.encode("utf-8"), hashlib.sha256).hexdigest()


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


def _records_of(record_person: Path, source: str) -> str:
    """SQL: (record_id, person_id) of ``source``'s records linked to a person."""
    src = source.replace("'", "''")
    return (f"(SELECT r.record_id, p.person_id FROM read_parquet({sql_path(record_person)}) r "
            f"JOIN person_ids p USING (person_key) WHERE r.source = '{src}')")


def _typed_columns(con, accepted: Path, keep: list[str], dates: list[str], numeric: list[str]) -> list[str]:
    """SQL select items: ISO dates become DATE, numbers BIGINT when every value is whole (else
    DOUBLE), anything unparsable missing; other columns stay text. Same types as ``to_arrow``."""
    whole = {}
    if numeric:
        probes = ", ".join(f"coalesce(bool_and(v{i} = floor(v{i})), true)" for i in range(len(numeric)))
        casts = ", ".join(f"TRY_CAST(a.{_q(c)} AS DOUBLE) AS v{i}" for i, c in enumerate(numeric))
        row = con.execute(f"SELECT {probes} FROM (SELECT {casts} FROM read_parquet({sql_path(accepted)}) a)").fetchall()[0]
        whole = dict(zip(numeric, row))
    items = []
    for c in keep:
        if c in dates:
            items.append(f"CAST(TRY_STRPTIME(a.{_q(c)}, '%Y-%m-%d') AS DATE) AS {_q(c)}")
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


def _person_table(spine: pd.DataFrame, spec, spine_persons: pd.DataFrame, pid_of: pd.Series) -> pa.Table:
    """One row per linked spine person (duplicates collapsed): the most recent registration's
    practice, earliest start, open-ended registration if any record is open."""
    from identifiable_zone import normalise as nz

    s = spine.rename(columns={spec.record_id: "record_id"}).merge(spine_persons, on="record_id")
    for c in ("RegistrationStartDate", "RegistrationEndDate", "DateOfDeath"):
        # as datetimes: pandas takes the per-person min/max of text in a Python loop
        s[c] = pd.to_datetime(s[c], format="%Y-%m-%d", errors="coerce")
    if "dob" in spec.identifiers:
        dob = nz.parse_date(s[spec.identifiers["dob"]])
    elif spec.demographics.get("birth_month"):  # pseudonymised upstream: YYYY-MM (or a date)
        bm = s[spec.demographics["birth_month"]]
        dob = nz.parse_date(bm.map(lambda v: None if v is None else (v + "-01" if len(str(v)) == 7 else v)))
    else:
        dob = pd.Series(pd.NaT, index=s.index, dtype="datetime64[s]")
    sex_col = spec.identifiers.get("sex") or spec.demographics.get("sex")
    sex = nz.normalise_sex(s[sex_col]) if sex_col else pd.Series(None, index=s.index, dtype=object)
    s = s.assign(
        _sex=[v if v in ("M", "F") else "U" for v in sex.tolist()],
        _yob=dob.dt.year.astype("Int64"), _mob=dob.dt.month.astype("Int64"),
        _open=s["RegistrationEndDate"].isna(),
    ).sort_values(["person_key", "RegistrationStartDate", "record_id"], na_position="first")
    g = s.groupby("person_key", sort=True)
    latest = g.tail(1).set_index("person_key")
    out = pd.DataFrame({
        "person_id": None,
        "sex": latest["_sex"],
        "year_of_birth": latest["_yob"],
        "month_of_birth": latest["_mob"],
        "ethnic_category": latest["EthnicCategory"],
        "lsoa11": latest["LSOA11"],
        "practice_code": latest["PracticeCode"],
        "registration_start": g["RegistrationStartDate"].min(),
        "registration_end": g["RegistrationEndDate"].max().where(~g["_open"].any(), None),
        "date_of_death": g["DateOfDeath"].max(),
    })
    out["person_id"] = pid_of.reindex(out.index).to_numpy(dtype=object)
    out = out.reset_index(drop=True)
    for c in ("year_of_birth", "month_of_birth"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return to_arrow(out, dates=["registration_start", "registration_end", "date_of_death"],
                    numeric=["year_of_birth", "month_of_birth"])


# spine columns the person table reads besides its identifiers and demographics
PERSON_TABLE_COLUMNS = ["RegistrationStartDate", "RegistrationEndDate", "EthnicCategory", "LSOA11",
                        "PracticeCode", "DateOfDeath"]


def build_tables(accepted_dir: Path, cfg, record_person: Path, key: bytes, out: Path,
                 read_accepted, spill_dir: Path | None = None,
                 row_counts: Mapping[str, int] | None = None) -> dict:
    """Write the pseudonymised tables of contract §3 into ``out`` and return a summary (row
    counts, rows without a person, columns that left the zone per table, columns withheld).

    Each source is copied from its accepted Parquet by DuckDB (bounded by its memory limit,
    spilling to ``spill_dir``), in its own row order, with the person id joined on from the
    links; only the person table (one row per spine person) is built in memory.
    ``read_accepted(table, columns)`` reads a source's accepted rows as text; ``row_counts``
    (accepted rows per source) gives the progress lines their total."""
    from identifiable_zone.sources import SPINE

    summary: dict = {"tables": {}}
    present = [s for s in PUBLISH_AS if s in cfg.sources and (accepted_dir / f"{s}.parquet").exists()]
    with connection(spill_dir) as con:
        con.execute("SET preserve_insertion_order = true")
        _register_person_ids(con, record_person, key)

        spine_spec = cfg[SPINE]
        wanted = [spine_spec.record_id, *spine_spec.identifiers.values(), *spine_spec.demographics.values(),
                  *PERSON_TABLE_COLUMNS]
        spine = read_accepted(SPINE, [c for c in dict.fromkeys(wanted) if c in spine_spec.columns])
        spine_persons = con.sql(f"SELECT record_id, person_key FROM read_parquet({sql_path(record_person)}) "
                                f"WHERE source = '{SPINE}'").df().astype(object)
        pid_of = con.sql("SELECT person_key, person_id FROM person_ids").df().set_index("person_key")["person_id"]
        person = _person_table(spine, spine_spec, spine_persons, pid_of)
        del spine, spine_persons, pid_of
        pq.write_table(person, out / "person.parquet")
        progress.report("pseudonymise", "person written, %s persons", f"{person.num_rows:,}")
        summary["tables"]["person"] = {
            "rows": person.num_rows, "rows_without_person": 0, "columns": person.column_names,
            "withheld": sorted(spine_spec.columns)}

        rows_total = sum(row_counts.get(s, 0) for s in present) if row_counts else 0
        rows_done = 0
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
            keep = [c for c in spec.columns if c not in drop]
            items = _typed_columns(con, src_file, keep, [c for c in spec.dates if c in keep],
                                   [c for c in spec.numeric if c in keep])
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
            }
            rows_done += rows
            progress.report("pseudonymise", "%s written, %d/%d tables, %s of %s rows", name, i, len(present),
                            f"{rows_done:,}", f"{max(rows_total, rows_done):,}")
    return summary
