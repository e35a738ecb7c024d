"""Turn the simulated population into extracts shaped like the national data sets.

Every activity row carries the identifiers of its source's own demographic record for the
person, with that source's identifier faults (see params.DEFAULT_ERROR_RATES).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .identifiers import (FEMALE_NAMES, MALE_NAMES, SURNAMES, invalidate_nhs_numbers, make_postcodes,
                          nickname, typo, valid_nhs_numbers)
from .params import SynthParams
from .population import Population, month_start
from .simulate import Simulation, _days

PROVIDERS = np.array(["RXG", "RWY", "RAE"])
ICD10_EMERGENCY = np.array(["J440", "J441", "I500", "I209", "R074", "E119", "R101", "J189", "N390", "K590", "M545", "R55X"])
ICD10_ELECTIVE = np.array(["H251", "M170", "K802", "N200", "C509", "K409"])
HRG = np.array(["DZ65K", "EB03E", "FD10M", "WD11Z", "LA04S", "HD26G", "KB02K"])
CHIEF_COMPLAINTS = np.array(["29857009", "21522001", "267036007", "25064002", "22253000", "271807003"])
TRETSPEF = np.array(["100", "101", "110", "300", "320", "330", "340", "410", "502"])
THERAPIES = np.array(["304891004", "443730003", "286711000000107", "748051000000105", "748041000000107"])
PHQ9, GAD7 = "720433000", "445455005"


def _iso(days: np.ndarray) -> np.ndarray:
    """Float epoch days -> ISO date strings (nan -> None)."""
    out = np.full(len(days), None, dtype=object)
    ok = ~np.isnan(days)
    out[ok] = days[ok].astype("int64").astype("datetime64[D]").astype(str)
    return out


def _ids(prefix: str, n: int, rng: np.random.Generator, width: int = 10) -> np.ndarray:
    """Unique, unordered record ids so that ids carry no information about the person."""
    nums = rng.choice(10 ** (width - 1), size=n, replace=False) if n < 10 ** (width - 2) else np.arange(n)
    return np.char.add(prefix, np.char.zfill(nums.astype(str), width - 1)).astype(object)


def identity_variants(persons: pd.DataFrame, idx: np.ndarray, source: str, params: SynthParams,
                      rng: np.random.Generator) -> pd.DataFrame:
    """The demographic record a source holds for each person in idx, faults included."""
    e = params.error_rates[source]
    p = persons.iloc[idx]
    k = len(idx)
    nhs = p["nhs_number"].to_numpy(dtype=object).copy()
    draw = rng.random(k)
    invalid = draw < e.nhs_invalid
    wrong = (draw >= e.nhs_invalid) & (draw < e.nhs_invalid + e.nhs_wrong_person)
    missing = rng.random(k) < e.nhs_missing
    nhs[invalid] = invalidate_nhs_numbers(rng, nhs[invalid].astype(str)) if invalid.any() else nhs[invalid]
    nhs[wrong] = persons["nhs_number"].to_numpy(dtype=object)[rng.integers(0, len(persons), int(wrong.sum()))]
    nhs[missing] = None
    fore = p["forename"].to_numpy(dtype=object).copy()
    sur = p["surname"].to_numpy(dtype=object).copy()
    nick = rng.random(k) < e.nickname
    fore[nick] = nickname(fore[nick])
    ftypo = rng.random(k) < e.name_typo
    fore[ftypo] = typo(rng, fore[ftypo])
    styp = rng.random(k) < e.name_typo
    sur[styp] = typo(rng, sur[styp])
    dob = p["date_of_birth"].to_numpy("datetime64[D]")
    dob_s = dob.astype(str).astype(object)
    swap = rng.random(k) < e.dob_day_month_swap
    swapped = []
    for s in dob_s[swap]:
        y, m, d = s.split("-")
        swapped.append(f"{y}-{d}-{m}" if int(d) <= 12 and d != m else s)
    dob_s[swap] = swapped
    postcode = p["postcode"].to_numpy(dtype=object).copy()
    moved = rng.random(k) < e.postcode_changed
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    postcode[moved] = [f"{pc[:2]}{rng.integers(1, 30)} {rng.integers(1, 10)}{rng.choice(letters)}{rng.choice(letters)}"
                       for pc in postcode[moved]]
    return pd.DataFrame({"person": idx, "nhs": nhs, "forename": fore, "surname": sur, "dob": dob_s,
                         "sex": p["sex"].to_numpy(), "postcode": postcode})


def _events_from_counts(counts: np.ndarray, sim: Simulation, persons: pd.DataFrame, params: SynthParams,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand a (persons, months) count matrix into (person, month, day) events, each dated
    inside the part of its month the person was registered and alive."""
    person, month = np.nonzero(counts)
    reps = counts[person, month].astype(np.int64)
    person, month = np.repeat(person, reps), np.repeat(month, reps)
    month_days = _days(month_start(params, np.arange(params.months + 1)))
    start = _days(persons["registration_start"].to_numpy("datetime64[D]"))[person]
    end = _days(persons["registration_end"].to_numpy("datetime64[D]"))[person]
    end = np.where(np.isnan(end), np.inf, end)
    lo = np.maximum(start, month_days[month])
    hi = np.minimum(end, month_days[month + 1])
    day = np.floor(lo + rng.random(len(person)) * np.maximum(hi - lo, 1)).astype(float)
    return person, month, day


def _age_at(persons: pd.DataFrame, person: np.ndarray, day: np.ndarray) -> np.ndarray:
    dob = _days(persons["date_of_birth"].to_numpy("datetime64[D]"))[person]
    return np.floor((day - dob) / 365.25).astype(int)


def _with_identity(df: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """Add the SUS/ECDS-style identifier columns of each row's person (sex coded 1/2)."""
    ident = variants.set_index("person").loc[df["person"].to_numpy()]
    for target, source in {"NHS_Number": "nhs", "Patient_Forename": "forename", "Patient_Surname": "surname",
                           "Date_Of_Birth": "dob", "Sex": "sex", "Postcode": "postcode"}.items():
        df[target] = ident[source].to_numpy()
    df["Sex"] = df["Sex"].map({"M": "1", "F": "2"})
    return df


def build_tables(params: SynthParams, pop: Population, sim: Simulation, rng: np.random.Generator) -> tuple[dict, dict]:
    """Return (extracts, ground_truth) as dicts of DataFrames."""
    P = pop.persons
    tables: dict[str, pd.DataFrame] = {}
    truth_records = []

    # --- GP registered list (spine) with a few duplicate records of the same person.
    gpv = identity_variants(P, np.arange(len(P)), "gp_patients", params, rng)
    dup = np.flatnonzero(rng.random(len(P)) < params.error_rates["gp_patients"].duplicate_record)
    gpv_dup = identity_variants(P, dup, "gp_patients", params, rng)
    reg_start = P["registration_start"].to_numpy("datetime64[D]")
    gp = pd.concat([gpv, gpv_dup], ignore_index=True)
    gp["PatientRecordId"] = _ids("G", len(gp), rng)
    pi = gp["person"].to_numpy()
    # A duplicate is a stale earlier registration that ended when the current one began.
    dup_start = reg_start[dup] - rng.integers(400, 3000, size=len(dup)).astype("timedelta64[D]")
    gp_patients = pd.DataFrame({
        "PatientRecordId": gp["PatientRecordId"], "NHSNumber": gp["nhs"], "Forename": gp["forename"],
        "Surname": gp["surname"], "DateOfBirth": gp["dob"], "Sex": gp["sex"], "Postcode": gp["postcode"],
        "LSOA11": P["lsoa11"].to_numpy()[pi], "EthnicCategory": P["ethnic_category"].to_numpy()[pi],
        "PracticeCode": P["practice_code"].to_numpy()[pi],
        "RegistrationStartDate": np.r_[reg_start, dup_start].astype(str),
        "RegistrationEndDate": np.r_[P["registration_end"].to_numpy("datetime64[D]"), reg_start[dup]].astype(str),
        "DateOfDeath": np.r_[P["date_of_death"].to_numpy("datetime64[D]"), np.full(len(dup), np.datetime64("NaT"))].astype(str),
    })
    for c in ("RegistrationEndDate", "DateOfDeath"):
        gp_patients.loc[gp_patients[c] == "NaT", c] = None
    tables["gp_patients"] = gp_patients
    truth_records.append(pd.DataFrame({"source": "gp_patients", "record_id": gp["PatientRecordId"], "true_person_id": pi}))
    main_record = gp["PatientRecordId"].to_numpy()[: len(P)]  # current record of each person

    # --- GP long-term-condition register.
    ltc = pop.ltc
    tables["gp_conditions"] = pd.DataFrame({
        "ConditionRecordId": _ids("C", len(ltc), rng), "PatientRecordId": main_record[ltc["person"].to_numpy()],
        "SNOMEDCode": ltc["SNOMEDCode"].to_numpy(), "DiagnosisDate": ltc["DiagnosisDate"].to_numpy("datetime64[D]").astype(str),
    })

    # --- GP appointments: attended ones are the outcome; DNAs and cancellations ride along.
    person, month, day = _events_from_counts(sim.counts["gp_appointments"], sim, P, params, rng)
    n_att = len(person)
    extra = rng.random(n_att) < 0.09
    person = np.r_[person, person[extra]]
    day = np.r_[day, np.minimum(day[extra] + rng.integers(1, 20, int(extra.sum())), day[extra])]
    status = np.r_[np.full(n_att, "Attended", dtype=object),
                   np.where(rng.random(int(extra.sum())) < 0.6, "DNA", "Cancelled").astype(object)]
    k = len(person)
    tables["gp_appointments"] = pd.DataFrame({
        "AppointmentId": _ids("A", k, rng, 12), "PatientRecordId": main_record[person],
        "PracticeCode": P["practice_code"].to_numpy()[person],
        "BookedDate": _iso(day - rng.integers(0, 15, k)), "AppointmentDate": _iso(day),
        "AppointmentStatus": status,
        "HCPType": np.where(rng.random(k) < 0.6, "GP", "Other Practice staff"),
        "ApptMode": rng.choice(["Face-to-Face", "Telephone", "Home Visit", "Video Conference/Online"], k, p=[0.65, 0.28, 0.02, 0.05]),
        "NationalCategory": rng.choice(["General Consultation Routine", "General Consultation Acute", "Clinical Triage",
                                        "Planned Clinics", "Chronic Disease Management"], k),
    })

    # --- ECDS: analytic A&E attendances (type 01, unplanned first) plus other attendances.
    person, month, day = _events_from_counts(sim.counts["ae_attendances"], sim, P, params, rng)
    extra_counts = rng.poisson(0.35 * sim.counts["ae_attendances"] + 0.004 * sim.exposure).astype(np.int16)
    xp, xm, xd = _events_from_counts(extra_counts, sim, P, params, rng)
    n_main = len(person)
    person, day = np.r_[person, xp], np.r_[day, xd]
    k = len(person)
    dept = np.r_[np.full(n_main, "01", dtype=object), rng.choice(["01", "03", "04"], len(xp), p=[0.3, 0.55, 0.15]).astype(object)]
    cat = np.r_[np.full(n_main, "1", dtype=object), np.where(dept[n_main:] == "01", rng.choice(["2", "3"], len(xp)), "1").astype(object)]
    ecv = identity_variants(P, np.unique(person), "ecds", params, rng)
    ecds = pd.DataFrame({"EC_Ident": _ids("E", k, rng, 12), "person": person})
    ecds = _with_identity(ecds, ecv)
    ecds["Arrival_Date"] = _iso(day)
    ecds["Arrival_Time"] = [f"{h:02d}:{m:02d}" for h, m in zip(rng.integers(0, 24, k), rng.integers(0, 60, k))]
    ecds["EC_Department_Type"] = dept
    ecds["EC_AttendanceCategory"] = cat
    ecds["EC_Arrival_Mode_SNOMED_CT"] = np.where(rng.random(k) < 0.25, "1048031000000100", "1048001000000106")
    ecds["EC_Chief_Complaint_SNOMED_CT"] = rng.choice(CHIEF_COMPLAINTS, k)
    ecds["EC_Diagnosis_01"] = rng.choice(["82271004", "62315008", "22298006", "195967001", "68566005"], k)
    ecds["Discharge_Destination_SNOMED_CT"] = np.where(rng.random(k) < 0.2, "306706006", "306689006")
    ecds["Age_At_Arrival"] = _age_at(P, person, day)
    ecds["Der_Postcode_LSOA_2011_Code"] = P["lsoa11"].to_numpy()[person]
    ecds["GP_Practice_Code"] = P["practice_code"].to_numpy()[person]
    ecds["Der_Provider_Code"] = rng.choice(PROVIDERS, k)
    visitors, visitor_persons = unregistered_ecds(params, P, ecds.columns, len(np.unique(person)),
                                                  set(ecds["EC_Ident"].tolist()))
    ecds = pd.concat([ecds, visitors], ignore_index=True) if len(visitors) else ecds
    tables["ecds"] = ecds.drop(columns="person")
    truth_records.append(pd.DataFrame({"source": "ecds", "record_id": ecds["EC_Ident"],
                                       "true_person_id": ecds["person"].to_numpy()}))

    # --- APC spells: emergency admissions are the outcome; elective spells ride along.
    person, month, day = _events_from_counts(sim.counts["emergency_admissions"], sim, P, params, rng)
    age = _age_at(P, person, day)
    n_em = len(person)
    los_em = np.where(rng.random(n_em) < 0.25, 0, 1 + rng.geometric(1 / (2.5 + np.clip(age, 0, 95) / 25)) - 1)
    el_counts = rng.poisson(0.004 * sim.exposure * P["frailty"].to_numpy()[:, None]).astype(np.int16)
    ep, em, ed = _events_from_counts(el_counts, sim, P, params, rng)
    los_el = np.where(rng.random(len(ep)) < 0.7, 0, rng.integers(1, 6, len(ep)))
    person, day, los = np.r_[person, ep], np.r_[day, ed], np.r_[los_em, los_el]
    k = len(person)
    emergency = np.r_[np.ones(n_em, bool), np.zeros(len(ep), bool)]
    apv = identity_variants(P, np.unique(person), "apc", params, rng)
    apc = pd.DataFrame({"APCS_Ident": _ids("S", k, rng, 12), "person": person})
    apc = _with_identity(apc, apv)
    apc["Admission_Date"] = _iso(day)
    apc["Discharge_Date"] = _iso(day + los)
    apc["Admission_Method"] = np.where(emergency, rng.choice(["21", "22", "23", "24", "28", "2A", "2B", "2D"], k,
                                                             p=[0.7, 0.12, 0.02, 0.04, 0.04, 0.03, 0.03, 0.02]),
                                       rng.choice(["11", "12", "13"], k, p=[0.6, 0.1, 0.3]))
    apc["Patient_Classification"] = np.where(~emergency & (los == 0), "2", "1")
    apc["Discharge_Method"] = "1"
    apc["Der_Spell_LoS"] = los
    apc["Der_Diagnosis_All"] = np.where(emergency, rng.choice(ICD10_EMERGENCY, k), rng.choice(ICD10_ELECTIVE, k))
    apc["Spell_Core_HRG_SUS"] = rng.choice(HRG, k)
    apc["Age_At_Start_of_Spell_SUS"] = _age_at(P, person, day)
    apc["GP_Practice_Code"] = P["practice_code"].to_numpy()[person]
    apc["Der_Provider_Code"] = rng.choice(PROVIDERS, k)
    tables["apc"] = apc.drop(columns="person")
    truth_records.append(pd.DataFrame({"source": "apc", "record_id": apc["APCS_Ident"], "true_person_id": person}))

    # --- Outpatients: attended appointments are the outcome; DNAs and cancellations ride along.
    person, month, day = _events_from_counts(sim.counts["outpatient_attendances"], sim, P, params, rng)
    n_att = len(person)
    extra = rng.random(n_att) < 0.12
    person, day = np.r_[person, person[extra]], np.r_[day, day[extra]]
    k = len(person)
    attended = np.r_[rng.choice(["5", "6"], n_att, p=[0.9, 0.1]), rng.choice(["3", "2", "4"], int(extra.sum()), p=[0.65, 0.2, 0.15])]
    opv = identity_variants(P, np.unique(person), "opa", params, rng)
    opa = pd.DataFrame({"ATTENDKEY": _ids("O", k, rng, 12), "person": person})
    opa = _with_identity(opa, opv)
    opa["APPTDATE"] = _iso(day)
    opa["ATTENDED"] = attended
    opa["FIRSTATT"] = np.where(rng.random(k) < 0.3, "1", "2")
    opa["TRETSPEF"] = rng.choice(TRETSPEF, k)
    opa["PROCODE3"] = rng.choice(PROVIDERS, k)
    opa["APPTAGE"] = _age_at(P, person, day)
    opa["LSOA11"] = P["lsoa11"].to_numpy()[person]
    opa["GPPRAC"] = P["practice_code"].to_numpy()[person]
    tables["opa"] = opa.drop(columns="person")
    truth_records.append(pd.DataFrame({"source": "opa", "record_id": opa["ATTENDKEY"], "true_person_id": person}))

    iapt_tables, iapt_truth = _iapt_tables(params, pop, sim, rng)
    tables.update(iapt_tables)
    truth_records.append(iapt_truth)
    tables["reference/lsoa_imd"] = pop.lsoa[["LSOA11", "IMD_Decile"]]
    truth = {"record_person": pd.concat(truth_records, ignore_index=True),
             "unregistered_persons": visitor_persons}
    return tables, truth


def unregistered_ecds(params: SynthParams, P: pd.DataFrame, columns, n_ecds_persons: int,
                      taken_ids: set = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A&E attendances of people on no GP list of the footprint (params.share_ecds_unregistered).

    Drawn from a random stream of their own, so the rest of the extracts are unchanged by the
    share. Person ids follow the registered ones (persons, persons + 1, ...). A fifth are
    relatives of a registered person (same surname and postcode, own forename and birth date),
    a tenth namesakes (same surname and date of birth, own forename and address): the people
    probabilistic linkage could wrongly pull onto the spine."""
    share = params.share_ecds_unregistered
    k = int(round(share / max(1 - share, 1e-9) * n_ecds_persons)) if share > 0 else 0
    empty_p = pd.DataFrame({"person": pd.Series(dtype="int64"), "kind": pd.Series(dtype=object),
                            "sex": pd.Series(dtype=object), "date_of_birth": pd.Series(dtype="datetime64[s]"),
                            "ethnic_category": pd.Series(dtype=object)})
    if k == 0:
        return pd.DataFrame(columns=list(columns)), empty_p
    rng = np.random.default_rng([params.seed, 0x5EED, 17])
    n = len(P)
    ids = np.arange(n, n + k)
    sex = np.where(rng.random(k) < 0.5, "F", "M")
    fore = np.where(sex == "F", np.array(FEMALE_NAMES, dtype=object)[rng.zipf(1.6, k) % len(FEMALE_NAMES)],
                    np.array(MALE_NAMES, dtype=object)[rng.zipf(1.6, k) % len(MALE_NAMES)])
    sur = np.array(SURNAMES, dtype=object)[rng.integers(0, len(SURNAMES), k)]
    start = np.datetime64(params.start, "D")
    dob = start - (rng.integers(0, 90, k) * 365.25 + rng.integers(0, 365, k)).astype("timedelta64[D]")
    postcode = make_postcodes(rng, k, "M")  # an address outside the footprint
    kind = np.full(k, "visitor", dtype=object)
    draw = rng.random(k)
    rel = np.flatnonzero(draw < 0.2)
    nam = np.flatnonzero((draw >= 0.2) & (draw < 0.3))
    other = rng.integers(0, n, k)
    sur[rel] = P["surname"].to_numpy(dtype=object)[other[rel]]
    postcode[rel] = P["postcode"].to_numpy(dtype=object)[other[rel]]
    kind[rel] = "relative"
    sur[nam] = P["surname"].to_numpy(dtype=object)[other[nam]]
    dob[nam] = P["date_of_birth"].to_numpy("datetime64[D]")[other[nam]]
    kind[nam] = "namesake"
    # a namesake with the same forename too would be indistinguishable without an NHS number
    same = (fore[nam] == P["forename"].to_numpy(dtype=object)[other[nam]])
    fore[nam[same]] = np.where(sex[nam[same]] == "F", "HARRIET", "BERNARD")
    spine_nhs = set(P["nhs_number"].tolist())
    nhs = np.array([x for x in valid_nhs_numbers(rng, k + 64) if x not in spine_nhs][:k], dtype=object)
    nhs[rng.random(k) < 0.15] = None  # visitors' numbers are missing more often
    # attendances: mostly one, dated in the data period
    n_att = 1 + (rng.random(k) < 0.15).astype(int)
    person = np.repeat(ids, n_att)
    pi = person - n
    m = len(person)
    first = start.astype("datetime64[D]").astype(np.int64)
    last = (np.datetime64(params.start, "M") + np.timedelta64(params.months, "M")).astype("datetime64[D]").astype(np.int64)
    day = rng.integers(first, np.maximum(last, first + 1), m)
    dob_days = dob.astype("datetime64[D]").astype(np.int64)[pi]
    day = np.maximum(day, dob_days)
    cand = np.char.add("E", np.char.zfill(rng.choice(10 ** 11, size=2 * m + 16, replace=False).astype(str), 11))
    ident = np.array([c for c in cand.tolist() if c not in taken_ids][:m], dtype=object)
    dept = rng.choice(["01", "03", "04"], m, p=[0.6, 0.3, 0.1]).astype(object)
    v = pd.DataFrame({
        "EC_Ident": ident, "person": person, "NHS_Number": nhs[pi], "Patient_Forename": fore[pi],
        "Patient_Surname": sur[pi], "Date_Of_Birth": dob.astype(str).astype(object)[pi],
        "Sex": np.where(sex[pi] == "M", "1", "2").astype(object), "Postcode": postcode[pi],
        "Arrival_Date": day.astype("datetime64[D]").astype(str).astype(object),
        "Arrival_Time": [f"{h:02d}:{mi:02d}" for h, mi in zip(rng.integers(0, 24, m), rng.integers(0, 60, m))],
        "EC_Department_Type": dept, "EC_AttendanceCategory": "1",
        "EC_Arrival_Mode_SNOMED_CT": np.where(rng.random(m) < 0.25, "1048031000000100", "1048001000000106"),
        "EC_Chief_Complaint_SNOMED_CT": rng.choice(CHIEF_COMPLAINTS, m),
        "EC_Diagnosis_01": rng.choice(["82271004", "62315008", "22298006", "195967001", "68566005"], m),
        "Discharge_Destination_SNOMED_CT": np.where(rng.random(m) < 0.1, "306706006", "306689006"),
        "Age_At_Arrival": np.floor((day - dob_days) / 365.25).astype(int),
        "Der_Postcode_LSOA_2011_Code": None, "GP_Practice_Code": None,
        "Der_Provider_Code": rng.choice(PROVIDERS, m),
    })
    persons = pd.DataFrame({"person": ids, "kind": kind, "sex": sex, "date_of_birth": dob.astype("datetime64[s]"),
                            "ethnic_category": None})
    return v[list(columns)], persons


def _iapt_tables(params: SynthParams, pop: Population, sim: Simulation, rng: np.random.Generator):
    P, R = pop.persons, sim.referrals.reset_index(drop=True)
    end_of_data = _days(month_start(params, np.array([params.months])))[0]
    nref = len(R)
    # MPI: one record per referred person, and a second record for some (re-registered at the provider).
    people = R["person"].to_numpy()
    v = identity_variants(P, people, "iapt_ids001_mpi", params, rng)
    dup = rng.random(nref) < params.error_rates["iapt_ids001_mpi"].duplicate_record
    vdup = identity_variants(P, people[dup], "iapt_ids001_mpi", params, rng)
    mpi_v = pd.concat([v, vdup], ignore_index=True)
    mpi_v["LocalPatientId"] = _ids("L", len(mpi_v), rng)
    # The referral hangs off the duplicate record half the time.
    ref_lpid = mpi_v["LocalPatientId"].to_numpy()[:nref].copy()
    use_dup = np.flatnonzero(dup)[rng.random(int(dup.sum())) < 0.5]
    dup_pos = {p: i for i, p in enumerate(np.flatnonzero(dup))}
    for i in use_dup:
        ref_lpid[i] = mpi_v["LocalPatientId"].to_numpy()[nref + dup_pos[i]]
    mp = mpi_v["person"].to_numpy()
    mpi = pd.DataFrame({
        "LocalPatientId": mpi_v["LocalPatientId"], "NHSNumber": mpi_v["nhs"],
        "NHSNumberStatus": np.where(mpi_v["nhs"].isna(), "07", "01"),
        "PersonGivenName": mpi_v["forename"], "PersonFamilyName": mpi_v["surname"], "PersonBirthDate": mpi_v["dob"],
        "Gender": mpi_v["sex"].map({"M": "1", "F": "2"}), "EthnicCategory": P["ethnic_category"].to_numpy()[mp],
        "Postcode": mpi_v["postcode"], "OrgIDResidenceResp": "15F",
    })
    truth = pd.DataFrame({"source": "iapt_ids001_mpi", "record_id": mpi["LocalPatientId"], "true_person_id": mp})

    # Referrals and their contacts.
    sr = _ids("R", nref, rng)
    n_treat = R["n_treatment"].to_numpy()
    never_seen = R["never_seen"].to_numpy()
    first_treat = R["first_treatment_day"].to_numpy()
    # Treatment contacts every 7-15 days; 10% of booked sessions are missed.
    n_booked = np.where(n_treat > 0, n_treat + rng.binomial(n_treat, 0.1), 0)
    c_ref = np.repeat(np.arange(nref), n_booked)
    seq = np.arange(len(c_ref)) - np.repeat(np.cumsum(n_booked) - n_booked, n_booked)
    gaps = rng.integers(7, 16, size=len(c_ref))
    gaps[seq == 0] = 0
    c_day = first_treat[c_ref] + pd.Series(gaps).groupby(c_ref).cumsum().to_numpy()
    # Missed sessions: the booked slots beyond n_treat, drawn at random among all but the first
    # (the first treatment contact is attended by definition).
    key = np.where(seq == 0, 2.0, rng.random(len(c_ref)))
    rank = pd.Series(key).groupby(c_ref).rank(method="first").to_numpy()
    missed = rank <= (n_booked - n_treat)[c_ref]
    # Assessment contacts: everyone seen.
    a_ref = np.flatnonzero(~never_seen)
    contact_ref = np.r_[a_ref, c_ref]
    contact_day = np.r_[R["assessment_day"].to_numpy()[a_ref], c_day].astype(float)
    apptype = np.r_[np.full(len(a_ref), "01", dtype=object), np.full(len(c_ref), "02", dtype=object)]
    attend = np.r_[np.full(len(a_ref), "5", dtype=object), np.where(missed, "3", rng.choice(["5", "6"], len(c_ref), p=[0.95, 0.05])).astype(object)]
    in_data = contact_day < end_of_data
    contact_ref, contact_day, apptype, attend = contact_ref[in_data], contact_day[in_data], apptype[in_data], attend[in_data]
    cc = pd.DataFrame({
        "CareContactId": _ids("K", len(contact_ref), rng, 12), "ServiceRequestId": sr[contact_ref],
        "CareContDate": _iso(contact_day), "AttendOrDNACode": attend, "APPTYPE": apptype,
        "ConsMechanism": rng.choice(["01", "02", "11"], len(contact_ref), p=[0.45, 0.35, 0.2]),
        "IAPTLTCServiceInd": R["pathway"].to_numpy()[contact_ref],
    }).sort_values(["ServiceRequestId", "CareContDate"], kind="stable").reset_index(drop=True)

    # Discharge: after the last contact; open referrals at the end of the data have no end code.
    last_contact = pd.Series(contact_day).groupby(contact_ref).max().reindex(range(nref)).to_numpy()
    disch = np.where(np.isnan(last_contact), R["referral_day"].to_numpy() + rng.integers(20, 60, nref),
                     last_contact + rng.integers(0, 15, nref))
    endcode = np.where(never_seen, "50", np.where(n_treat == 0, rng.choice(["10", "11", "12", "13", "14"], nref),
                                                  rng.choice(["46", "47", "48"], nref, p=[0.72, 0.18, 0.10]))).astype(object)
    open_ref = disch >= end_of_data
    endcode[open_ref] = None
    disch = np.where(open_ref, np.nan, disch)
    referral = pd.DataFrame({
        "ServiceRequestId": sr, "LocalPatientId": ref_lpid, "OrgIDProv": "RXG",
        "ReferralRequestReceivedDate": _iso(R["referral_day"].to_numpy().astype(float)),
        "SourceOfReferralIAPT": rng.choice(["A1", "B1", "A3"], nref, p=[0.55, 0.4, 0.05]),
        "ServDischDate": _iso(disch), "ENDCODE": endcode,
    })

    # Care activities and PHQ-9 / GAD-7 scores at every attended contact.
    att = cc[cc["AttendOrDNACode"].isin(["5", "6"])].reset_index(drop=True)
    therapy = rng.choice(THERAPIES, nref, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    ref_pos = pd.Series(np.arange(nref), index=sr)
    att_ref = ref_pos.loc[att["ServiceRequestId"]].to_numpy()
    activity = pd.DataFrame({"CareActId": _ids("T", len(att), rng, 12), "CareContactId": att["CareContactId"],
                             "CodeProcAndProcStatus": therapy[att_ref]})
    seq = att.groupby("ServiceRequestId").cumcount().to_numpy()
    n_seq = att.groupby("ServiceRequestId")["CareContactId"].transform("size").to_numpy()
    # Scores start mostly at caseness and improve by a referral-specific share by the last session,
    # tuned so about half of finished courses recover and about two-thirds reliably improve.
    phq0 = np.clip(rng.normal(16, 5, nref), 0, 27)
    gad0 = np.clip(rng.normal(13, 4, nref), 0, 21)
    improve = rng.beta(1.3, 1.0, nref) * 1.2 - 0.22
    frac = np.where(n_seq > 1, seq / np.maximum(n_seq - 1, 1), 0.0)
    phq = np.clip(np.rint(phq0[att_ref] * (1 - improve[att_ref] * frac) + rng.normal(0, 1.2, len(att))), 0, 27).astype(int)
    gad = np.clip(np.rint(gad0[att_ref] * (1 - improve[att_ref] * frac) + rng.normal(0, 1.0, len(att))), 0, 21).astype(int)
    scores = pd.DataFrame({
        "ServiceRequestId": np.r_[att["ServiceRequestId"], att["ServiceRequestId"]],
        "CareActId": np.r_[activity["CareActId"], activity["CareActId"]],
        "CodedAssToolType": np.r_[np.full(len(att), PHQ9), np.full(len(att), GAD7)],
        "PersScore": np.r_[phq, gad], "AssToolCompDate": np.r_[att["CareContDate"], att["CareContDate"]],
    })
    scores.insert(0, "CodedScoreId", _ids("Q", len(scores), rng, 12))

    # IDS602: the long-term conditions recorded on referrals of people who have them.
    lt = pop.ltc.merge(pd.DataFrame({"person": people, "ServiceRequestId": sr}), on="person")
    ltc_tab = pd.DataFrame({"LongTermConditionId": _ids("M", len(lt), rng), "ServiceRequestId": lt["ServiceRequestId"],
                            "LongTermCondition": lt["SNOMEDCode"]})
    return ({"iapt_ids001_mpi": mpi, "iapt_ids101_referral": referral, "iapt_ids201_care_contact": cc,
             "iapt_ids202_care_activity": activity, "iapt_ids602_ltc": ltc_tab, "iapt_ids606_coded_scores": scores},
            truth)
