"""The synthetic extracts: national schemas, planted properties, identifier faults, ground truth."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from synthetic.generate import generate
from synthetic.identifiers import nhs_number_is_valid
from synthetic.params import SynthParams

LANDING_COLUMNS = {
    "gp_patients": ["PatientRecordId", "NHSNumber", "Forename", "Surname", "DateOfBirth", "Sex", "Postcode", "LSOA11",
                    "EthnicCategory", "PracticeCode", "RegistrationStartDate", "RegistrationEndDate", "DateOfDeath"],
    "iapt_ids001_mpi": ["LocalPatientId", "NHSNumber", "NHSNumberStatus", "PersonGivenName", "PersonFamilyName",
                        "PersonBirthDate", "Gender", "EthnicCategory", "Postcode", "OrgIDResidenceResp"],
    "iapt_ids101_referral": ["ServiceRequestId", "LocalPatientId", "OrgIDProv", "ReferralRequestReceivedDate",
                             "SourceOfReferralIAPT", "ServDischDate", "ENDCODE"],
    "iapt_ids201_care_contact": ["CareContactId", "ServiceRequestId", "CareContDate", "AttendOrDNACode", "APPTYPE",
                                 "ConsMechanism", "IAPTLTCServiceInd"],
    "iapt_ids606_coded_scores": ["CodedScoreId", "ServiceRequestId", "CareActId", "CodedAssToolType", "PersScore",
                                 "AssToolCompDate"],
    "ecds": ["EC_Ident", "NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth", "Sex", "Postcode",
             "Arrival_Date", "Arrival_Time", "EC_Department_Type", "EC_AttendanceCategory"],
    "apc": ["APCS_Ident", "NHS_Number", "Admission_Date", "Discharge_Date", "Admission_Method", "Patient_Classification",
            "Discharge_Method", "Der_Spell_LoS", "Der_Diagnosis_All"],
    "opa": ["ATTENDKEY", "NHS_Number", "APPTDATE", "ATTENDED", "FIRSTATT", "TRETSPEF", "PROCODE3", "APPTAGE"],
    "gp_appointments": ["AppointmentId", "PatientRecordId", "PracticeCode", "BookedDate", "AppointmentDate",
                        "AppointmentStatus", "HCPType", "ApptMode", "NationalCategory"],
}
PERSONS = 6000


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate(SynthParams(persons=PERSONS, seed=11), out)
    return out, summary


def read(out, name):
    return pd.read_csv(out / "landing" / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])


def test_tables_follow_the_national_schemas(synth):
    out, summary = synth
    for name, columns in LANDING_COLUMNS.items():
        df = read(out, name)
        assert list(df.columns[: len(columns)]) == columns if name in ("gp_patients", "iapt_ids001_mpi") else \
            set(columns) <= set(df.columns), name
        assert len(df) == summary["rows"][name] > 0
        assert df.iloc[:, 0].is_unique, f"{name} record id must be unique"


def test_every_identifiable_record_has_its_true_person(synth):
    out, _ = synth
    truth = pd.read_parquet(out / "ground_truth" / "record_person.parquet")
    for name, rid in (("gp_patients", "PatientRecordId"), ("iapt_ids001_mpi", "LocalPatientId"), ("ecds", "EC_Ident"),
                      ("apc", "APCS_Ident"), ("opa", "ATTENDKEY")):
        ids = set(truth.loc[truth["source"] == name, "record_id"])
        assert ids == set(read(out, name)[rid]), name
    registered = truth["true_person_id"] < PERSONS
    assert truth["true_person_id"].between(0, PERSONS - 1)[registered].all()
    # people on no GP list (visitors) appear in A&E only, with ids after the registered ones
    unreg = pd.read_parquet(out / "ground_truth" / "unregistered_persons.parquet")
    assert set(truth.loc[~registered, "source"]) == {"ecds"}
    assert set(truth.loc[~registered, "true_person_id"]) == set(unreg["person"])
    share = unreg["person"].nunique() / truth.loc[truth["source"] == "ecds", "true_person_id"].nunique()
    assert 0.008 < share < 0.025
    planted = json.loads((out / "ground_truth" / "planted_effects.json").read_text())
    assert planted["rate_ratio"]["ae_attendances"] < 1 and planted["rate_ratio"]["gp_appointments"] == 1


def test_identifier_faults_at_source_specific_rates(synth):
    out, _ = synth
    gp, ecds = read(out, "gp_patients"), read(out, "ecds")
    gp_valid = nhs_number_is_valid(gp["NHSNumber"].to_numpy(dtype=object))
    assert gp_valid.mean() > 0.99
    # ECDS: one demographic record per person; judge the rates per person record, not per row.
    per_person = ecds.drop_duplicates(["Patient_Surname", "Date_Of_Birth", "Postcode"])
    missing = per_person["NHS_Number"].isna().mean()
    assert 0.03 < missing < 0.10
    present = per_person["NHS_Number"].dropna().to_numpy(dtype=object)
    invalid_share = 1 - nhs_number_is_valid(present).mean()
    assert 0.002 < invalid_share < 0.03
    # Numbers keyed wrongly fail Modulus 11; the true numbers of the spine pass it.
    truth = pd.read_parquet(out / "ground_truth" / "persons.parquet")
    assert nhs_number_is_valid(truth["nhs_number"].to_numpy(dtype=object)).all()
    # Day/month swaps, nicknames and duplicate GP records exist.
    assert gp["PatientRecordId"].nunique() > PERSONS


def test_utilisation_rises_before_referral_and_falls_back_without_any_effect(tmp_path):
    out = tmp_path / "null"
    generate(SynthParams(persons=PERSONS, seed=5).with_null_effect(), out)
    persons = pd.read_parquet(out / "ground_truth" / "persons.parquet")
    counts = np.load(out / "ground_truth" / "monthly_counts.npz")
    total = sum(counts[o].astype(float) for o in ("ae_attendances", "emergency_admissions", "gp_appointments"))
    treated = persons[persons["treated_ltc_pathway"] & persons["referral_month"].between(12, 47)]
    assert len(treated) > 50
    rel = lambda r: np.mean([total[p, m + r] for p, m in zip(treated["person"], treated["referral_month"])])  # noqa: E731
    early = np.mean([rel(r) for r in range(-12, -6)])
    peak = np.mean([rel(r) for r in range(-2, 0)])
    after = np.mean([rel(r) for r in range(3, 12)])
    assert peak > 1.08 * early, "referral should follow a spell of higher use"
    assert after < peak, "use falls back after referral with no therapy effect (regression to the mean)"


def test_iapt_outcomes_match_national_rates(synth):
    out, _ = synth
    sc = read(out, "iapt_ids606_coded_scores")
    sc["PersScore"] = sc["PersScore"].astype(int)
    ref = read(out, "iapt_ids101_referral")
    finished = set(ref.loc[ref["ENDCODE"].isin(["46", "47", "48"]), "ServiceRequestId"])
    by = lambda code: sc[sc["CodedAssToolType"] == code].sort_values(["ServiceRequestId", "AssToolCompDate"]) \
        .groupby("ServiceRequestId")["PersScore"].agg(["first", "last"])  # noqa: E731
    f = by("720433000").join(by("445455005").add_suffix("_gad"))
    f = f[f.index.isin(finished)]
    case = (f["first"] >= 10) | (f["first_gad"] >= 8)
    recovered = case & (f["last"] < 10) & (f["last_gad"] < 8)
    improved = (f["first"] - f["last"] >= 6) | (f["first_gad"] - f["last_gad"] >= 4)
    assert 0.40 < recovered.sum() / case.sum() < 0.60
    assert 0.55 < improved.mean() < 0.80
    assert (ref["ENDCODE"].isin(["50", "10", "11", "12", "13", "14"])).mean() > 0.1  # ended before treatment


def test_same_seed_same_bytes_and_parquet_matches_csv(tmp_path, synth):
    out, _ = synth
    again = tmp_path / "again"
    generate(SynthParams(persons=PERSONS, seed=11), again)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(out / "landing" / "ecds.csv") == digest(again / "landing" / "ecds.csv")
    pq_out = tmp_path / "pq"
    generate(SynthParams(persons=PERSONS, seed=11), pq_out, fmt="parquet")
    a = pd.read_parquet(pq_out / "landing" / "apc.parquet")
    b = read(out, "apc")
    assert len(a) == len(b) and list(a.columns) == list(b.columns)
