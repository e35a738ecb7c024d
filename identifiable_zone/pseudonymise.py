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
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import progress
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

def _missing_to_none(values) -> np.ndarray:
    """Object array with None wherever a value is missing (None, NaN, pd.NA)."""
    arr = np.asarray(values, dtype=object)
    return np.where(pd.isna(arr), None, arr)


def _text_array(s: pd.Series) -> pa.Array:
    try:
        return pa.array(_missing_to_none(s.to_numpy(dtype=object)), type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # a value that is not text (none from validation): as str
        return pa.array([None if v is None else str(v) for v in _missing_to_none(s.to_numpy(dtype=object))],
                        type=pa.string())


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
            arr = _text_array(s)
        arrays.append(arr)
        names.append(c)
    return pa.Table.from_arrays(arrays, names=names)


def write_tables_atomically(tables: dict[str, pa.Table], target: Path) -> None:
    """Write every table to a sibling temp folder, then swap it in for ``target``.

    The swap is two renames on one file system (old -> .old-*, temp -> target); readers see
    either the complete old set or the complete new set, never a half-written table."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        for i, (name, table) in enumerate(tables.items(), 1):
            pq.write_table(table, tmp / f"{name}.parquet")
            progress.report("pseudonymise", "wrote %s, %d/%d tables, %s rows", name, i, len(tables),
                            f"{table.num_rows:,}")
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


def _person_table(spine: pd.DataFrame, spec, spine_persons: pd.DataFrame, pid_of: dict) -> pa.Table:
    """One row per linked spine person (duplicates collapsed): the most recent registration's
    practice, earliest start, open-ended registration if any record is open."""
    from identifiable_zone import normalise as nz

    s = spine.rename(columns={spec.record_id: "record_id"}).merge(spine_persons, on="record_id")
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
    out["person_id"] = [pid_of[k] for k in out.index]
    out = out.reset_index(drop=True)
    for c in ("year_of_birth", "month_of_birth"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return to_arrow(out, dates=["registration_start", "registration_end", "date_of_death"],
                    numeric=["year_of_birth", "month_of_birth"])


def build_tables(accepted: Mapping[str, pd.DataFrame], cfg, record_person: pd.DataFrame,
                 key: bytes, row_counts: Mapping[str, int] | None = None) -> tuple[dict[str, pa.Table], dict]:
    """The pseudonymised tables of contract §3 and a summary (row counts, rows without a
    person, columns that left the zone per table, columns withheld). ``accepted`` may read
    each source when asked (each is asked for once); ``row_counts`` (accepted rows per
    source) gives the progress lines their total without reading every source first."""
    from identifiable_zone.sources import SPINE

    # hash every distinct person key once; tables then map record -> pseudonym by lookup
    distinct = pd.Series(pd.unique(record_person["person_key"].dropna()), dtype=object)
    pid_of = dict(zip(distinct.tolist(), pseudonymise_keys(distinct, key).tolist()))
    keys_by_source = {src: grp.set_index("record_id")["person_key"].map(pid_of)
                      for src, grp in record_person.groupby("source")}
    tables: dict[str, pa.Table] = {}
    summary: dict = {"tables": {}}
    spine_spec = cfg[SPINE]
    spine_persons = record_person[record_person["source"] == SPINE][["record_id", "person_key"]]
    tables["person"] = _person_table(accepted[SPINE], spine_spec, spine_persons, pid_of)
    summary["tables"]["person"] = {
        "rows": tables["person"].num_rows, "rows_without_person": 0,
        "columns": tables["person"].column_names,
        "withheld": sorted(spine_spec.columns)}

    todo = [s for s in PUBLISH_AS if s in accepted]
    rows_total = sum(row_counts.get(s, 0) for s in todo) if row_counts else sum(len(accepted[s]) for s in todo)
    rows_done = 0
    for i, source in enumerate(todo, 1):
        name = PUBLISH_AS[source]
        spec = cfg[source]
        df = accepted[source]  # read now, freed when the next source replaces it
        drop = set(spec.person_columns)
        person_id = None
        if source in UNCHANGED:
            pass
        elif spec.links_persons:
            person_id = df[spec.record_id].map(keys_by_source.get(source, pd.Series(dtype=object)))
        else:
            (fk, parent), = spec.parent.items()
            drop.add(fk)  # PatientRecordId / LocalPatientId: local patient ids leave nothing
            person_id = df[fk].map(keys_by_source.get(parent, pd.Series(dtype=object)))
        keep = [c for c in spec.columns if c not in drop]
        out = df[keep].copy()
        if person_id is not None:
            out.insert(0, "person_id", _missing_to_none(person_id.to_numpy(dtype=object)))
        dates = [c for c in spec.dates if c in keep]
        numeric = [c for c in spec.numeric if c in keep]
        tables[name] = to_arrow(out, dates=dates, numeric=numeric)
        summary["tables"][name] = {
            "rows": int(len(out)),
            "rows_without_person": int(out["person_id"].isna().sum()) if person_id is not None else None,
            "columns": list(out.columns),
            "withheld": sorted(drop & set(spec.columns)),
        }
        rows_done += len(out)
        progress.report("pseudonymise", "%s built, %d/%d tables, %s of %s rows", name, i, len(todo),
                        f"{rows_done:,}", f"{rows_total:,}")
    return tables, summary
