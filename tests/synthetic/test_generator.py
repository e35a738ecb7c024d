"""The synthetic extracts: national schemas, planted properties, identifier faults, ground truth."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.settings import GENERATOR_WORKERS_ENV, generator_workers
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
    # three chunks, so that every test below also checks what spans chunks
    summary = generate(SynthParams(persons=PERSONS, seed=11), out, chunk_persons=2_000)
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


def _digests(out):
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt, options", [
    ("parquet", {}),
    ("csv", {"monthly_from": "2023-10", "upstream_pseudonymised": True}),
])
def test_same_seed_same_files_whatever_the_chunk_size_and_workers(tmp_path, fmt, options):
    params = SynthParams(persons=3_000, seed=8)
    # small row groups, so that Parquet row groups straddle the chunks; one chunk built here,
    # against three built by two worker processes
    one = generate(params, tmp_path / "one", fmt=fmt, chunk_persons=3_000, row_group=5_000, workers=1, **options)
    three = generate(params, tmp_path / "three", fmt=fmt, chunk_persons=1_000, row_group=5_000, workers=2,
                     **options)
    a, b = _digests(tmp_path / "one"), _digests(tmp_path / "three")
    assert len(a) >= 19 and a == b
    assert one["rows"] == three["rows"] and one["treated_ltc_pathway"] == three["treated_ltc_pathway"]
    if fmt == "parquet":
        assert pq.ParquetFile(tmp_path / "one" / "landing" / "gp_appointments.parquet").metadata.num_row_groups > 5
    else:
        assert any(".2023-10." in name for name in a) and any("_2023-09." in name for name in a)
    # no temporary files are left behind
    assert not [name for name in a if "/." in name or name.startswith(".")]


def test_chunking_keeps_what_spans_people(synth):
    out, _ = synth
    truth = pd.read_parquet(out / "ground_truth" / "record_person.parquet")
    persons = pd.read_parquet(out / "ground_truth" / "persons.parquet")
    assert persons["person"].tolist() == list(range(PERSONS))
    assert persons["nhs_number"].is_unique
    # record ids unique in every source, across chunks
    assert not truth.duplicated(["source", "record_id"]).any()
    assert list(dict.fromkeys(truth["source"])) == ["gp_patients", "ecds", "apc", "opa", "iapt_ids001_mpi"]
    # wrong NHS numbers are other registered people's, from any chunk
    ecds = read(out, "ecds").merge(truth[truth["source"] == "ecds"], left_on="EC_Ident", right_on="record_id")
    ecds = ecds[ecds["true_person_id"] < PERSONS]
    owner = persons.set_index("nhs_number")["person"]
    holder = ecds["NHS_Number"].map(owner)
    wrong = holder.notna() & (holder != ecds["true_person_id"])
    assert wrong.any()
    assert (holder[wrong] // 2_000 != ecds.loc[wrong, "true_person_id"] // 2_000).any()
    # the GP list: each person's current record before any stale duplicate
    gp = read(out, "gp_patients").merge(truth[truth["source"] == "gp_patients"], left_on="PatientRecordId",
                                        right_on="record_id")
    first = gp.drop_duplicates("true_person_id")
    assert (first["RegistrationStartDate"].to_numpy()
            == persons.set_index("person").loc[first["true_person_id"], "registration_start"]
            .dt.strftime("%Y-%m-%d").to_numpy()).all()
    # practices and their pathway launches are one set for the whole population
    practices = pd.read_parquet(out / "ground_truth" / "practices.parquet")
    assert set(persons["practice_code"]) <= set(practices["PracticeCode"])
    assert (practices["ltc_launch_month"] >= 0).sum() >= 2


@pytest.mark.parametrize("kwargs, message", [
    ({"chunk_persons": 1_500}, "chunk_persons must be a positive multiple of 1,000"),
    ({"chunk_persons": 0}, "chunk_persons must be"),
    ({"chunk_persons": 2_000.0}, "chunk_persons must be"),
    ({"row_group": 0}, "row_group must be"),
    ({"fmt": "xlsx"}, "format must be csv or parquet"),
    ({"workers": 0}, "workers must be a positive whole number"),
    ({"workers": "2"}, "workers must be a positive whole number"),
])
def test_bad_generator_options_are_refused_clearly(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(SynthParams(persons=1_000, seed=1), tmp_path, **kwargs)


def test_bad_population_size_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="persons must be a positive whole number"):
        generate(SynthParams(persons=0, seed=1), tmp_path)


def test_generator_workers_come_from_the_environment_and_must_be_a_positive_whole_number():
    with pytest.raises(ValueError, match=GENERATOR_WORKERS_ENV):
        generator_workers({GENERATOR_WORKERS_ENV: "two"})
    with pytest.raises(ValueError, match="at least 1 process builds"):
        generator_workers({GENERATOR_WORKERS_ENV: "0"})
    assert generator_workers({GENERATOR_WORKERS_ENV: "3"}) == 3
    assert 1 <= generator_workers({}) <= 2


def _simulated(params):
    from synthetic.population import build_persons, build_setup
    from synthetic.simulate import simulate
    from synthetic.streams import BlockRNG

    rng = BlockRNG(params.seed, 0, params.persons)
    pop = build_persons(params, build_setup(params), rng)
    return simulate(params, pop, rng)


def _treated_rate_after_index(sim, streams) -> float:
    """Events per exposed person-month of treated people from their index month on."""
    ref = sim.referrals
    treated = ref[(ref["pathway"] == "Y") & (ref["n_treatment"] >= 2)]
    after = np.zeros(sim.exposure.shape, dtype=bool)
    for person, index in zip(treated["person"], treated["index_month"]):
        after[person, index:] = True
    events = sum(int(sim.counts[s][after].sum()) for s in streams)
    return events / float(sim.exposure[after].sum())


def test_negative_controls_never_get_the_planted_effect_and_confounding_moves_them_all():
    """The planted effect lowers treated people's A&E use after their index month and leaves
    the negative controls alone; residual confounding lowers both alike. (Poisson draws take
    more or fewer random numbers as their rates change, so the runs differ person by person
    after any change: the check is on rates.)"""
    from dataclasses import replace

    from core.contract import NEGATIVE_CONTROLS
    from synthetic.params import SynthParams

    base = SynthParams(persons=40_000, seed=5)
    null = _simulated(base.with_null_effect())
    effect = _simulated(base)
    confounded = _simulated(replace(base.with_null_effect(), residual_confounding_rate_ratio=0.5))
    ae = ("ae_attendances",)
    assert _treated_rate_after_index(effect, ae) / _treated_rate_after_index(null, ae) < 0.93
    assert 0.9 < _treated_rate_after_index(effect, NEGATIVE_CONTROLS) / _treated_rate_after_index(null, NEGATIVE_CONTROLS) < 1.1
    for streams in (NEGATIVE_CONTROLS, ae):
        ratio = _treated_rate_after_index(confounded, streams) / _treated_rate_after_index(null, streams)
        assert 0.4 < ratio < 0.6, (streams, ratio)


def _edits(a: str, b: str) -> int:
    """Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _names_against_truth(out) -> pd.DataFrame:
    """ECDS rows with their true person's names and sex."""
    ecds = read(out, "ecds")
    truth = pd.read_parquet(out / "ground_truth" / "record_person.parquet")
    persons = pd.read_parquet(out / "ground_truth" / "persons.parquet")
    rows = ecds.merge(truth[truth["source"] == "ecds"], left_on="EC_Ident", right_on="record_id")
    return rows.merge(persons[["person", "forename", "surname", "sex"]], left_on="true_person_id", right_on="person")


def test_the_harder_identifier_profile_adds_married_names_and_transposed_names(tmp_path, synth):
    from synthetic.params import HARD_ERROR_RATES

    generate(SynthParams(persons=3000, seed=11, error_rates=HARD_ERROR_RATES), tmp_path)
    for out, hard in ((tmp_path, True), (synth[0], False)):
        rows = _names_against_truth(out)
        # a keying error is one edit (two for letters swapped): within 2 is the same name
        def near(a, b):
            return pd.Series([_edits(x, y) <= 2 for x, y in zip(rows[a].fillna(""), rows[b])], index=rows.index)

        swapped = near("Patient_Forename", "surname") & near("Patient_Surname", "forename") & \
            ~near("Patient_Forename", "forename")
        other = ~near("Patient_Surname", "surname") & ~swapped  # another surname altogether: women only
        if hard:
            assert swapped.any()
            assert other[rows["sex"] == "F"].mean() > 0.02
        else:
            assert not swapped.any()
        assert other[rows["sex"] == "M"].mean() < 0.01
