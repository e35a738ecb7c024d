"""Pseudonymised tables made straight from the ground truth (perfect linkage).

A test fixture for the analytical zone: it lets dbt models and the evaluation be tested on
their own, independent of linkage quality. The pipeline never uses it; the identifiable-zone
DAG produces the real pseudonymised tables from the landing extracts.
"""
from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from core.linkage_tables import ALTERNATIVES, ALTERNATIVES_SCHEMA, SCENARIOS, scenarios_table

IDENTIFIER_COLUMNS = {"NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth", "Postcode"}
DATE_COLUMNS = {
    "gp_appointments": ["BookedDate", "AppointmentDate"],
    "gp_conditions": ["DiagnosisDate"],
    "iapt_referral": ["ReferralRequestReceivedDate", "ServDischDate"],
    "iapt_care_contact": ["CareContDate"],
    "iapt_coded_scores": ["AssToolCompDate"],
    "ecds": ["Arrival_Date"],
    "apc": ["Admission_Date", "Discharge_Date"],
    "opa": ["APPTDATE"],
}
# The source record ids the identifiable zone publishes as keyed pseudonyms, each under its own
# domain (identifiable_zone.pseudonymise.record_pseudonym; foreign keys share their target's)
RECORD_ID_COLUMNS = ("ConditionRecordId", "AppointmentId", "ServiceRequestId", "CareContactId", "CareActId",
                     "LongTermConditionId", "CodedScoreId", "EC_Ident", "APCS_Ident", "ATTENDKEY")
PERSON_DATES_DAY = 15  # person dates at month grain, as the 15th (identifiable_zone.pseudonymise)
INT_COLUMNS = {"iapt_coded_scores": ["PersScore"], "ecds": ["Age_At_Arrival"],
               "apc": ["Der_Spell_LoS", "Age_At_Start_of_Spell_SUS"], "opa": ["APPTAGE"], "lsoa_imd": ["IMD_Decile"]}


def _read(landing: Path, name: str) -> pd.DataFrame:
    for suffix in (".parquet", ".csv"):
        path = landing / f"{name}{suffix}"
        if path.exists():
            return pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    raise FileNotFoundError(landing / name)


def _record_pseudonyms(values: pd.Series, domain: str, key: bytes) -> pd.Series:
    """The zone's record pseudonym: HMAC-SHA256 of "record_id:<domain>:<id>", 32 hex characters."""
    return values.map(lambda v: None if pd.isna(v) else hmac.new(
        key, f"record_id:{domain}:{v}".encode(), hashlib.sha256).hexdigest()[:32])


def _month_grain(dates: pd.Series):
    d = pd.to_datetime(dates)
    return pd.Series([None if pd.isna(x) else x.date().replace(day=PERSON_DATES_DAY) for x in d], dtype=object).to_numpy()


def write_pseudonymised_fixture(out: Path, key: bytes) -> dict:
    out = Path(out)
    landing, gt = out / "landing", out / "ground_truth"
    target = out / "analytical" / "pseudonymised"
    truth = pd.read_parquet(gt / "record_person.parquet")
    persons = pd.read_parquet(gt / "persons.parquet")
    pseudo = {p: hmac.new(key, f"person:{p}".encode(), hashlib.sha256).hexdigest() for p in persons["person"]}
    who = {s: g.set_index("record_id")["true_person_id"] for s, g in truth.groupby("source")}

    tables: dict[str, pd.DataFrame] = {}
    gp = _read(landing, "gp_patients")
    gp["person"] = who["gp_patients"].loc[gp["PatientRecordId"]].to_numpy()
    current = gp.drop_duplicates("person", keep="first")  # duplicates are appended after the main records
    dob = pd.to_datetime(persons.set_index("person").loc[current["person"], "date_of_birth"]).reset_index(drop=True)
    tables["person"] = pd.DataFrame({
        "person_id": current["person"].map(pseudo).to_numpy(),
        "sex": current["Sex"].map({"M": "M", "F": "F"}).fillna("U").to_numpy(),
        "year_of_birth": dob.dt.year.to_numpy(), "month_of_birth": dob.dt.month.to_numpy(),
        "ethnic_category": current["EthnicCategory"].to_numpy(), "lsoa11": current["LSOA11"].to_numpy(),
        "practice_code": current["PracticeCode"].to_numpy(),
        "registration_start": _month_grain(current["RegistrationStartDate"]),
        "registration_end": _month_grain(current["RegistrationEndDate"]),
        "date_of_death": _month_grain(current["DateOfDeath"]),
    })
    record_pseudo = gp.set_index("PatientRecordId")["person"].map(pseudo)
    for name in ("gp_conditions", "gp_appointments"):
        df = _read(landing, name)
        df.insert(0, "person_id", record_pseudo.loc[df["PatientRecordId"]].to_numpy())
        tables[name] = df.drop(columns="PatientRecordId")
    mpi = _read(landing, "iapt_ids001_mpi")
    lp = pd.Series(mpi["LocalPatientId"].map(who["iapt_ids001_mpi"]).map(pseudo).to_numpy(), index=mpi["LocalPatientId"])
    ref = _read(landing, "iapt_ids101_referral")
    ref.insert(0, "person_id", lp.loc[ref["LocalPatientId"]].to_numpy())
    tables["iapt_referral"] = ref.drop(columns="LocalPatientId")
    for src, name in (("iapt_ids201_care_contact", "iapt_care_contact"), ("iapt_ids202_care_activity", "iapt_care_activity"),
                      ("iapt_ids602_ltc", "iapt_ltc"), ("iapt_ids606_coded_scores", "iapt_coded_scores")):
        tables[name] = _read(landing, src)
    for name, rid in (("ecds", "EC_Ident"), ("apc", "APCS_Ident"), ("opa", "ATTENDKEY")):
        df = _read(landing, name)
        df.insert(0, "person_id", df[rid].map(who[name]).map(pseudo).to_numpy())
        tables[name] = df.drop(columns=[c for c in df.columns if c in IDENTIFIER_COLUMNS])
    tables["lsoa_imd"] = _read(landing / "reference", "lsoa_imd")

    for name, cols in DATE_COLUMNS.items():
        for c in cols:
            tables[name][c] = pd.to_datetime(tables[name][c]).dt.date
    for name, cols in INT_COLUMNS.items():
        for c in cols:
            tables[name][c] = pd.to_numeric(tables[name][c]).astype("Int64")
    for df in tables.values():
        for c in RECORD_ID_COLUMNS:
            if c in df.columns:
                df[c] = _record_pseudonyms(df[c], c, key)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name, df in tables.items():
        df.to_parquet(target / f"{name}.parquet", index=False)
    # perfect links: no threshold moves any record (the linkage sensitivity's tables, empty)
    pq.write_table(ALTERNATIVES_SCHEMA.empty_table(), target / f"{ALTERNATIVES}.parquet")
    pq.write_table(scenarios_table(None), target / f"{SCENARIOS}.parquet")
    return {name: len(df) for name, df in tables.items()}
