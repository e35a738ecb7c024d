"""Turn the simulated population into extracts shaped like the national data sets.

Every activity row carries the identifiers of its source's own demographic record for the
person, with that source's identifier faults (see params.DEFAULT_ERROR_RATES).

Built one chunk of people at a time (see synthetic.streams): persons are indexed within the
chunk, every draw comes from the blocks' streams, and every table is put in block order
before anything is drawn for its rows, so that the chunk size changes no row.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from .identifiers import invalidate_nhs_numbers, make_postcodes, nickname, typo, valid_nhs_numbers
from .names import pick, pick_forenames, surname_universe
from .params import SynthParams
from .population import Population, Setup, month_start
from .simulate import Simulation, _days
from .streams import BlockRNG, ChunkRecordIds, RecordIds

PROVIDERS = np.array(["RXG", "RWY", "RAE"])
ICD10_EMERGENCY = np.array(["J440", "J441", "I500", "I209", "R074", "E119", "R101", "J189", "N390", "K590", "M545", "R55X"])
# no cataract (H25-H26) or hernia (K40-K46) here: those spells are negative controls, made below
ICD10_ELECTIVE = np.array(["N40X", "M170", "K802", "N200", "C509", "D259"])
HRG = np.array(["DZ65K", "EB03E", "FD10M", "WD11Z", "LA04S", "HD26G", "KB02K"])
CHIEF_COMPLAINTS = np.array(["29857009", "21522001", "267036007", "25064002", "22253000", "271807003"])
TRETSPEF = np.array(["100", "101", "110", "300", "320", "330", "340", "410", "502"])
THERAPIES = np.array(["304891004", "443730003", "286711000000107", "748051000000105", "748041000000107"])
PHQ9, GAD7 = "720433000", "445455005"
POSTCODE_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
CLOCK = np.array([f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)], dtype=object)  # "HH:MM" by minute


def _iso(days: np.ndarray) -> np.ndarray:
    """Float epoch days -> ISO date strings (nan -> None); through Arrow, several times faster
    than numpy's datetime-to-text for the tens of millions of dates at 2 M people."""
    days = np.asarray(days, dtype=float)
    ok = ~np.isnan(days)
    arr = pa.array(np.where(ok, days, 0).astype(np.int32), type=pa.int32(), mask=~ok)
    return arr.cast(pa.date32()).cast(pa.string()).to_numpy(zero_copy_only=False)


def _iso_dates(d: np.ndarray) -> np.ndarray:
    """datetime64 dates -> ISO date strings (NaT -> None)."""
    d = np.asarray(d).astype("datetime64[D]")
    return _iso(np.where(np.isnat(d), np.nan, d.astype(np.int64).astype(float)))


def _clock(rows) -> np.ndarray:
    """Arrival times "HH:MM" drawn uniformly over the day."""
    k = rows.total
    return CLOCK[rows.integers(0, 24, size=k) * 60 + rows.integers(0, 60, size=k)]


def identity_variants(persons: pd.DataFrame, idx: np.ndarray, source: str, params: SynthParams,
                      rng: BlockRNG, setup: Setup) -> pd.DataFrame:
    """The demographic record a source holds for each person in idx (chunk indices in block
    order), faults included. A wrong NHS number is another registered person's."""
    e = params.error_rates[source]
    p = persons.iloc[idx]
    k = len(idx)
    rows = rng.for_rows(idx)
    sub = lambda mask: rng.for_rows(idx[mask])  # noqa: E731 (draws for a subset of the rows)
    nhs = p["nhs_number"].to_numpy(dtype=object).copy()
    draw = rows.random(k)
    invalid = draw < e.nhs_invalid
    wrong = (draw >= e.nhs_invalid) & (draw < e.nhs_invalid + e.nhs_wrong_person)
    missing = rows.random(k) < e.nhs_missing
    nhs[invalid] = invalidate_nhs_numbers(sub(invalid), nhs[invalid].astype(str)) if invalid.any() else nhs[invalid]
    everyone = setup.nhs_number
    nhs[wrong] = everyone[sub(wrong).integers(0, len(everyone), size=int(wrong.sum()))].astype(str).astype(object)
    nhs[missing] = None
    fore = p["forename"].to_numpy(dtype=object).copy()
    sur = p["surname"].to_numpy(dtype=object).copy()
    nick = rows.random(k) < e.nickname
    fore[nick] = nickname(fore[nick])
    ftypo = rows.random(k) < e.name_typo
    fore[ftypo] = typo(sub(ftypo), fore[ftypo])
    styp = rows.random(k) < e.name_typo
    sur[styp] = typo(sub(styp), sur[styp])
    dob = p["date_of_birth"].to_numpy("datetime64[D]")
    dob_s = _iso_dates(dob)
    swap = rows.random(k) < e.dob_day_month_swap
    if swap.any():
        # YYYY-MM-DD -> YYYY-DD-MM where the day could be a month and differs from it
        u = np.frombuffer(dob_s[swap].astype("S10").tobytes(), dtype=np.uint8).reshape(-1, 10)
        day_num = (u[:, 8].astype(int) - 48) * 10 + u[:, 9].astype(int) - 48
        ok = (day_num <= 12) & ~((u[:, 5] == u[:, 8]) & (u[:, 6] == u[:, 9]))
        out = np.where(ok[:, None], u[:, [0, 1, 2, 3, 4, 8, 9, 7, 5, 6]], u)
        dob_s[swap] = np.ascontiguousarray(out).view("S10").ravel().astype(str).astype(object)
    postcode = p["postcode"].to_numpy(dtype=object).copy()
    moved = rows.random(k) < e.postcode_changed
    if moved.any():
        mv = sub(moved)
        km = int(moved.sum())
        district = mv.integers(1, 30, size=km).astype(str).astype(object)
        sector = mv.integers(1, 10, size=km).astype(str).astype(object)
        unit = mv.choice(POSTCODE_LETTERS, size=km).astype(object) + mv.choice(POSTCODE_LETTERS, size=km).astype(object)
        area = np.array([pc[:2] for pc in postcode[moved]], dtype=object)
        postcode[moved] = area + district + " " + sector + unit
    # the harder profile's faults, drawn last and only when asked for: the default data keep
    # their random streams
    if e.surname_changed > 0:
        married = (rows.random(k) < e.surname_changed) & (p["sex"].to_numpy() == "F")
        sur[married] = pick(surname_universe(), sub(married).random(int(married.sum())))
    if e.names_swapped > 0:
        swapped = rows.random(k) < e.names_swapped
        fore[swapped], sur[swapped] = sur[swapped], fore[swapped].copy()
    return pd.DataFrame({"person": idx, "nhs": nhs, "forename": fore, "surname": sur, "dob": dob_s,
                         "sex": p["sex"].to_numpy(), "postcode": postcode})


def _events_from_counts(counts: np.ndarray, persons: pd.DataFrame, params: SynthParams,
                        rng: BlockRNG) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand a (persons, months) count matrix into (person, month, day) events, each dated
    inside the part of its month the person was registered and alive (in person order)."""
    person, month = np.nonzero(counts)
    reps = counts[person, month].astype(np.int64)
    person, month = np.repeat(person, reps), np.repeat(month, reps)
    month_days = _days(month_start(params, np.arange(params.months + 1)))
    start = _days(persons["registration_start"].to_numpy("datetime64[D]"))[person]
    end = _days(persons["registration_end"].to_numpy("datetime64[D]"))[person]
    end = np.where(np.isnan(end), np.inf, end)
    lo = np.maximum(start, month_days[month])
    hi = np.minimum(end, month_days[month + 1])
    day = np.floor(lo + rng.for_rows(person).random(len(person)) * np.maximum(hi - lo, 1)).astype(float)
    return person, month, day


def _per_person_matrix(rng: BlockRNG, method: str, lam: np.ndarray) -> np.ndarray:
    """A (persons, months) draw, each person's row from their block's stream."""
    n, T = lam.shape
    return getattr(rng.per_person(T), method)(lam.ravel()).reshape(n, T)


def _age_at(persons: pd.DataFrame, person: np.ndarray, day: np.ndarray) -> np.ndarray:
    dob = _days(persons["date_of_birth"].to_numpy("datetime64[D]"))[person]
    return np.floor((day - dob) / 365.25).astype(int)


def _with_identity(df: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """Add the SUS/ECDS-style identifier columns of each row's person (sex coded 1/2)."""
    pos = pd.Index(variants["person"].to_numpy()).get_indexer(df["person"].to_numpy())
    for target, source in {"NHS_Number": "nhs", "Patient_Forename": "forename", "Patient_Surname": "surname",
                           "Date_Of_Birth": "dob", "Sex": "sex", "Postcode": "postcode"}.items():
        df[target] = variants[source].to_numpy()[pos]
    df["Sex"] = df["Sex"].map({"M": "1", "F": "2"})
    return df


# Negative-control outcomes as the extracts record them (dbt's int_negative_control_events
# selects them by these codes): outpatient treatment function codes, and planned spells by
# primary diagnosis (ICD-10) with their HRG.
NEGATIVE_CONTROL_SPECIALTIES = {
    "ophthalmology_attendances": np.array(["130"]),
    "ent_attendances": np.array(["120"]),
    "oral_surgery_attendances": np.array(["140", "143", "144"]),
    "audiology_attendances": np.array(["840"]),
    "plastic_surgery_attendances": np.array(["160"]),
}
NEGATIVE_CONTROL_SPELLS = {
    "cataract_admissions": (np.array(["H251", "H259", "H268"]), "BZ34B"),
    "hernia_repair_admissions": (np.array(["K409", "K429", "K439"]), "FF62B"),
}
# substream of the negative-control events' rows (the counts are drawn on params'
# NEGATIVE_CONTROL_STREAM): every draw for the other rows is as it was before they existed
NEGATIVE_CONTROL_ROWS_STREAM = 2


def _control_events(sim: Simulation, P: pd.DataFrame, params: SynthParams, crng: BlockRNG,
                    streams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(person, day, stream) of the negative-control events of ``streams``, in block order."""
    parts = [(*_events_from_counts(sim.counts[o], P, params, crng), o) for o in streams]
    person = np.concatenate([p for p, _, _, _ in parts]) if parts else np.zeros(0, np.int64)
    day = np.concatenate([d for _, _, d, _ in parts]) if parts else np.zeros(0)
    kind = np.concatenate([np.full(len(p), o, dtype=object) for p, _, _, o in parts]) if parts else np.zeros(0, object)
    return _block_sorted(crng, person, day, kind)


def _identities_with(variants: pd.DataFrame, person: np.ndarray, P: pd.DataFrame, source: str,
                     params: SynthParams, crng: BlockRNG, setup: Setup) -> pd.DataFrame:
    """``variants`` plus the source's record of the people in ``person`` it does not hold yet
    (drawn from the negative controls' stream)."""
    new = np.setdiff1d(np.unique(person), variants["person"].to_numpy())
    if not len(new):
        return variants
    return pd.concat([variants, identity_variants(P, new, source, params, crng, setup)], ignore_index=True)


def _with_control_rows(df: pd.DataFrame, controls: pd.DataFrame, rng: BlockRNG, id_column: str,
                       id_prefix: str, ids) -> pd.DataFrame:
    """A source's rows and its negative-control rows in one table, in block order (the source's
    rows first within a block), record ids taken in that order: the table is the same whatever
    the chunk size."""
    both = pd.concat([df, controls], ignore_index=True)
    both = both.iloc[rng.order(both["person"].to_numpy())].reset_index(drop=True)
    both[id_column] = ids.take(id_prefix, len(both), 12)
    return both


def _block_sorted(rng: BlockRNG, person: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """person and cols re-ordered into block order (stable within a block)."""
    order = rng.order(person)
    return (person[order],) + tuple(c[order] for c in cols)


# The columns that hold record ids, with the prefix of the ids (``ids.take(prefix, ...)``):
# the record's own id and the ids of the records it points at. Ground truth: record_id.
RECORD_ID_COLUMNS: dict[str, dict[str, str]] = {
    "gp_patients": {"PatientRecordId": "G"},
    "gp_conditions": {"ConditionRecordId": "C", "PatientRecordId": "G"},
    "gp_appointments": {"AppointmentId": "A", "PatientRecordId": "G"},
    "ecds": {"EC_Ident": "E"},
    "apc": {"APCS_Ident": "S"},
    "opa": {"ATTENDKEY": "O"},
    "iapt_ids001_mpi": {"LocalPatientId": "L"},
    "iapt_ids101_referral": {"ServiceRequestId": "R", "LocalPatientId": "L"},
    "iapt_ids201_care_contact": {"CareContactId": "K", "ServiceRequestId": "R"},
    "iapt_ids202_care_activity": {"CareActId": "T", "CareContactId": "K"},
    "iapt_ids606_coded_scores": {"CodedScoreId": "Q", "ServiceRequestId": "R", "CareActId": "T"},
    "iapt_ids602_ltc": {"LongTermConditionId": "M", "ServiceRequestId": "R"},
}
TRUTH_ID_PREFIX = {"gp_patients": "G", "ecds": "E", "apc": "S", "opa": "O", "iapt_ids001_mpi": "L"}


def label_record_ids(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame],
                     labels: dict[str, np.ndarray]) -> None:
    """Replace the positions that ``ChunkRecordIds`` handed out with the chunk's record ids
    (``streams.label_chunk_ids``), in place, in every id column of the extracts and the truth."""
    used = set()
    for name, df in tables.items():
        for col, prefix in RECORD_ID_COLUMNS.get(name, {}).items():
            df[col] = labels[prefix][df[col].to_numpy(dtype=np.int64)]
            used.add(prefix)
    for name, prefix in TRUTH_ID_PREFIX.items():
        if name in truth:
            truth[name]["record_id"] = labels[prefix][truth[name]["record_id"].to_numpy(dtype=np.int64)]
    if set(labels) - used:
        raise ValueError(f"record ids {sorted(set(labels) - used)} taken but in no column of RECORD_ID_COLUMNS")


def build_tables(params: SynthParams, setup: Setup, pop: Population, sim: Simulation, rng: BlockRNG,
                 ids: RecordIds | ChunkRecordIds) -> tuple[dict, dict]:
    """Return (extracts, ground truth) of one chunk as dicts of DataFrames. Ground truth
    ``record_person`` is per source; ``ecds_persons`` counts the registered people in A&E.
    With ``ChunkRecordIds`` the id columns hold positions within the chunk until
    ``label_record_ids`` turns them into ids."""
    P = pop.persons
    first = pop.first
    n = len(P)
    tables: dict[str, pd.DataFrame] = {}
    truth: dict[str, pd.DataFrame] = {}
    every = rng.per_person()

    # --- GP registered list (spine) with a few duplicate records of the same person.
    gpv = identity_variants(P, np.arange(n), "gp_patients", params, rng, setup)
    dup = np.flatnonzero(every.random(n) < params.error_rates["gp_patients"].duplicate_record)
    gpv_dup = identity_variants(P, dup, "gp_patients", params, rng, setup)
    reg_start = P["registration_start"].to_numpy("datetime64[D]")
    # A duplicate is a stale earlier registration that ended when the current one began.
    dup_start = reg_start[dup] - rng.for_rows(dup).integers(400, 3000, size=len(dup)).astype("timedelta64[D]")
    gp = pd.concat([gpv, gpv_dup], ignore_index=True)
    gp["RegistrationStartDate"] = _iso_dates(np.r_[reg_start, dup_start])
    gp["RegistrationEndDate"] = _iso_dates(np.r_[P["registration_end"].to_numpy("datetime64[D]"), reg_start[dup]])
    gp["DateOfDeath"] = _iso_dates(np.r_[P["date_of_death"].to_numpy("datetime64[D]"),
                                         np.full(len(dup), np.datetime64("NaT"))])
    gp["is_dup"] = np.r_[np.zeros(n, bool), np.ones(len(dup), bool)]
    # each block's current records, then its duplicates (the fixture relies on current first)
    gp = gp.iloc[rng.order(gp["person"].to_numpy())].reset_index(drop=True)
    gp["PatientRecordId"] = ids.take("G", len(gp))
    pi = gp["person"].to_numpy()
    gp_patients = pd.DataFrame({
        "PatientRecordId": gp["PatientRecordId"], "NHSNumber": gp["nhs"], "Forename": gp["forename"],
        "Surname": gp["surname"], "DateOfBirth": gp["dob"], "Sex": gp["sex"], "Postcode": gp["postcode"],
        "LSOA11": P["lsoa11"].to_numpy()[pi], "EthnicCategory": P["ethnic_category"].to_numpy()[pi],
        "PracticeCode": P["practice_code"].to_numpy()[pi],
        "RegistrationStartDate": gp["RegistrationStartDate"], "RegistrationEndDate": gp["RegistrationEndDate"],
        "DateOfDeath": gp["DateOfDeath"],
    })
    tables["gp_patients"] = gp_patients
    truth["gp_patients"] = pd.DataFrame({"source": "gp_patients", "record_id": gp["PatientRecordId"],
                                         "true_person_id": pi + first})
    main_record = np.empty(n, dtype=object)  # current record of each person
    current = ~gp["is_dup"].to_numpy()
    main_record[pi[current]] = gp["PatientRecordId"].to_numpy()[current]

    # --- GP long-term-condition register.
    ltc = pop.ltc
    tables["gp_conditions"] = pd.DataFrame({
        "ConditionRecordId": ids.take("C", len(ltc)), "PatientRecordId": main_record[ltc["person"].to_numpy()],
        "SNOMEDCode": ltc["SNOMEDCode"].to_numpy(), "DiagnosisDate": _iso_dates(ltc["DiagnosisDate"].to_numpy("datetime64[D]")),
    })

    # --- GP appointments: attended ones are the outcome; DNAs and cancellations ride along.
    person, month, day = _events_from_counts(sim.counts["gp_appointments"], P, params, rng)
    n_att = len(person)
    extra = rng.for_rows(person).random(n_att) < 0.09
    xr = rng.for_rows(person[extra])
    n_extra = int(extra.sum())
    xday = np.minimum(day[extra] + xr.integers(1, 20, size=n_extra), day[extra])
    xstatus = np.where(xr.random(n_extra) < 0.6, "DNA", "Cancelled").astype(object)
    person, day, status = _block_sorted(rng, np.r_[person, person[extra]], np.r_[day, xday],
                                        np.r_[np.full(n_att, "Attended", dtype=object), xstatus])
    k = len(person)
    rows = rng.for_rows(person)
    tables["gp_appointments"] = pd.DataFrame({
        "AppointmentId": ids.take("A", k, 12), "PatientRecordId": main_record[person],
        "PracticeCode": P["practice_code"].to_numpy()[person],
        "BookedDate": _iso(day - rows.integers(0, 15, size=k)), "AppointmentDate": _iso(day),
        "AppointmentStatus": status,
        "HCPType": np.where(rows.random(k) < 0.6, "GP", "Other Practice staff"),
        "ApptMode": rows.choice(np.array(["Face-to-Face", "Telephone", "Home Visit", "Video Conference/Online"]), k,
                                p=[0.65, 0.28, 0.02, 0.05]),
        "NationalCategory": rows.choice(np.array(["General Consultation Routine", "General Consultation Acute",
                                                  "Clinical Triage", "Planned Clinics", "Chronic Disease Management"]), k),
    })

    # --- ECDS: analytic A&E attendances (type 01, unplanned first) plus other attendances.
    person, month, day = _events_from_counts(sim.counts["ae_attendances"], P, params, rng)
    extra_counts = _per_person_matrix(rng, "poisson", 0.35 * sim.counts["ae_attendances"] + 0.004 * sim.exposure).astype(np.int16)
    xp, xm, xd = _events_from_counts(extra_counts, P, params, rng)
    n_main = len(person)
    xr = rng.for_rows(xp)
    xdept = xr.choice(np.array(["01", "03", "04"]), len(xp), p=[0.3, 0.55, 0.15]).astype(object)
    xcat = np.where(xdept == "01", xr.choice(np.array(["2", "3"]), len(xp)), "1").astype(object)
    person, day, dept, cat = _block_sorted(rng, np.r_[person, xp], np.r_[day, xd],
                                           np.r_[np.full(n_main, "01", dtype=object), xdept],
                                           np.r_[np.full(n_main, "1", dtype=object), xcat])
    k = len(person)
    ecv = identity_variants(P, np.unique(person), "ecds", params, rng, setup)
    rows = rng.for_rows(person)
    ecds = pd.DataFrame({"EC_Ident": ids.take("E", k, 12), "person": person})
    ecds = _with_identity(ecds, ecv)
    ecds["Arrival_Date"] = _iso(day)
    ecds["Arrival_Time"] = _clock(rows)
    ecds["EC_Department_Type"] = dept
    ecds["EC_AttendanceCategory"] = cat
    ecds["EC_Arrival_Mode_SNOMED_CT"] = np.where(rows.random(k) < 0.25, "1048031000000100", "1048001000000106")
    ecds["EC_Chief_Complaint_SNOMED_CT"] = rows.choice(CHIEF_COMPLAINTS, k)
    ecds["EC_Diagnosis_01"] = rows.choice(np.array(["82271004", "62315008", "22298006", "195967001", "68566005"]), k)
    ecds["Discharge_Destination_SNOMED_CT"] = np.where(rows.random(k) < 0.2, "306706006", "306689006")
    ecds["Age_At_Arrival"] = _age_at(P, person, day)
    ecds["Der_Postcode_LSOA_2011_Code"] = P["lsoa11"].to_numpy()[person]
    ecds["GP_Practice_Code"] = P["practice_code"].to_numpy()[person]
    ecds["Der_Provider_Code"] = rows.choice(PROVIDERS, k)
    tables["ecds"] = ecds.drop(columns="person")
    truth["ecds"] = pd.DataFrame({"source": "ecds", "record_id": ecds["EC_Ident"], "true_person_id": person + first})
    truth["ecds_persons"] = len(ecv)

    # --- APC spells: emergency admissions are the outcome; elective spells ride along.
    person, month, day = _events_from_counts(sim.counts["emergency_admissions"], P, params, rng)
    age = _age_at(P, person, day)
    n_em = len(person)
    er = rng.for_rows(person)
    los_em = np.where(er.random(n_em) < 0.25, 0, 1 + er.geometric(1 / (2.5 + np.clip(age, 0, 95) / 25)) - 1)
    el_counts = _per_person_matrix(rng, "poisson", 0.004 * sim.exposure * P["frailty"].to_numpy()[:, None]).astype(np.int16)
    ep, em, ed = _events_from_counts(el_counts, P, params, rng)
    los_el = np.where(rng.for_rows(ep).random(len(ep)) < 0.7, 0, rng.for_rows(ep).integers(1, 6, size=len(ep)))
    person, day, los, emergency = _block_sorted(rng, np.r_[person, ep], np.r_[day, ed], np.r_[los_em, los_el],
                                                np.r_[np.ones(n_em, bool), np.zeros(len(ep), bool)])
    k = len(person)
    apv = identity_variants(P, np.unique(person), "apc", params, rng, setup)
    rows = rng.for_rows(person)
    apc = pd.DataFrame({"APCS_Ident": np.zeros(k, dtype=object), "person": person})
    apc = _with_identity(apc, apv)
    apc["Admission_Date"] = _iso(day)
    apc["Discharge_Date"] = _iso(day + los)
    apc["Admission_Method"] = np.where(emergency, rows.choice(np.array(["21", "22", "23", "24", "28", "2A", "2B", "2D"]), k,
                                                              p=[0.7, 0.12, 0.02, 0.04, 0.04, 0.03, 0.03, 0.02]),
                                       rows.choice(np.array(["11", "12", "13"]), k, p=[0.6, 0.1, 0.3]))
    apc["Patient_Classification"] = np.where(~emergency & (los == 0), "2", "1")
    apc["Discharge_Method"] = "1"
    apc["Der_Spell_LoS"] = los
    apc["Der_Diagnosis_All"] = np.where(emergency, rows.choice(ICD10_EMERGENCY, k), rows.choice(ICD10_ELECTIVE, k))
    apc["Spell_Core_HRG_SUS"] = rows.choice(HRG, k)
    apc["Age_At_Start_of_Spell_SUS"] = _age_at(P, person, day)
    apc["GP_Practice_Code"] = P["practice_code"].to_numpy()[person]
    apc["Der_Provider_Code"] = rows.choice(PROVIDERS, k)
    # planned cataract and hernia spells (negative controls), from their own stream
    crng = rng.substream(NEGATIVE_CONTROL_ROWS_STREAM)
    cp, cday, ckind = _control_events(sim, P, params, crng, NEGATIVE_CONTROL_SPELLS)
    kc = len(cp)
    apv = _identities_with(apv, cp, P, "apc", params, crng, setup)
    crows = crng.for_rows(cp)
    los_c = np.where(crows.random(kc) < 0.85, 0, crows.integers(1, 4, size=kc))
    diagnosis = np.empty(kc, dtype=object)
    hrg = np.empty(kc, dtype=object)
    for o, (codes, group) in NEGATIVE_CONTROL_SPELLS.items():
        at = ckind == o
        diagnosis[at] = codes[crng.for_rows(cp[at]).integers(0, len(codes), size=int(at.sum()))]
        hrg[at] = group
    controls = _with_identity(pd.DataFrame({"person": cp}), apv)
    controls["Admission_Date"] = _iso(cday)
    controls["Discharge_Date"] = _iso(cday + los_c)
    controls["Admission_Method"] = crows.choice(np.array(["11", "12", "13"]), kc, p=[0.6, 0.1, 0.3])
    controls["Patient_Classification"] = np.where(los_c == 0, "2", "1")
    controls["Discharge_Method"] = "1"
    controls["Der_Spell_LoS"] = los_c
    controls["Der_Diagnosis_All"] = diagnosis
    controls["Spell_Core_HRG_SUS"] = hrg
    controls["Age_At_Start_of_Spell_SUS"] = _age_at(P, cp, cday)
    controls["GP_Practice_Code"] = P["practice_code"].to_numpy()[cp]
    controls["Der_Provider_Code"] = crows.choice(PROVIDERS, kc)
    apc = _with_control_rows(apc, controls, rng, "APCS_Ident", "S", ids)
    person = apc["person"].to_numpy()
    tables["apc"] = apc.drop(columns="person")
    truth["apc"] = pd.DataFrame({"source": "apc", "record_id": apc["APCS_Ident"], "true_person_id": person + first})

    # --- Outpatients: attended appointments are the outcome; DNAs and cancellations ride along.
    person, month, day = _events_from_counts(sim.counts["outpatient_attendances"], P, params, rng)
    n_att = len(person)
    ar = rng.for_rows(person)
    extra = ar.random(n_att) < 0.12
    att_code = ar.choice(np.array(["5", "6"]), n_att, p=[0.9, 0.1])
    xcode = rng.for_rows(person[extra]).choice(np.array(["3", "2", "4"]), int(extra.sum()), p=[0.65, 0.2, 0.15])
    person, day, attended = _block_sorted(rng, np.r_[person, person[extra]], np.r_[day, day[extra]],
                                          np.r_[att_code, xcode])
    k = len(person)
    opv = identity_variants(P, np.unique(person), "opa", params, rng, setup)
    rows = rng.for_rows(person)
    opa = pd.DataFrame({"ATTENDKEY": np.zeros(k, dtype=object), "person": person})
    opa = _with_identity(opa, opv)
    opa["APPTDATE"] = _iso(day)
    opa["ATTENDED"] = attended
    opa["FIRSTATT"] = np.where(rows.random(k) < 0.3, "1", "2")
    opa["TRETSPEF"] = rows.choice(TRETSPEF, k)
    opa["PROCODE3"] = rows.choice(PROVIDERS, k)
    opa["APPTAGE"] = _age_at(P, person, day)
    opa["LSOA11"] = P["lsoa11"].to_numpy()[person]
    opa["GPPRAC"] = P["practice_code"].to_numpy()[person]
    # attendances in the negative-control specialties, from their own stream
    cp, cday, ckind = _control_events(sim, P, params, crng, NEGATIVE_CONTROL_SPECIALTIES)
    kc = len(cp)
    opv = _identities_with(opv, cp, P, "opa", params, crng, setup)
    crows = crng.for_rows(cp)
    specialty = np.empty(kc, dtype=object)
    for o, codes in NEGATIVE_CONTROL_SPECIALTIES.items():
        at = ckind == o
        specialty[at] = codes[crng.for_rows(cp[at]).integers(0, len(codes), size=int(at.sum()))]
    controls = _with_identity(pd.DataFrame({"person": cp}), opv)
    controls["APPTDATE"] = _iso(cday)
    controls["ATTENDED"] = crows.choice(np.array(["5", "6"]), kc, p=[0.9, 0.1])
    controls["FIRSTATT"] = np.where(crows.random(kc) < 0.3, "1", "2")
    controls["TRETSPEF"] = specialty
    controls["PROCODE3"] = crows.choice(PROVIDERS, kc)
    controls["APPTAGE"] = _age_at(P, cp, cday)
    controls["LSOA11"] = P["lsoa11"].to_numpy()[cp]
    controls["GPPRAC"] = P["practice_code"].to_numpy()[cp]
    opa = _with_control_rows(opa, controls, rng, "ATTENDKEY", "O", ids)
    person = opa["person"].to_numpy()
    tables["opa"] = opa.drop(columns="person")
    truth["opa"] = pd.DataFrame({"source": "opa", "record_id": opa["ATTENDKEY"], "true_person_id": person + first})

    iapt_tables, iapt_truth = _iapt_tables(params, setup, pop, sim, rng, ids)
    tables.update(iapt_tables)
    truth["iapt_ids001_mpi"] = iapt_truth
    return tables, truth


class Identities:
    """The true identity of every registered person, compactly, kept across chunks for the
    unregistered A&E attenders who borrow a registered person's surname, address or birth date."""

    def __init__(self, n: int):
        self.forename = np.empty(n, dtype=object)
        self.surname = np.empty(n, dtype=object)
        self.postcode = np.empty(n, dtype=object)
        self.dob = np.empty(n, dtype="datetime64[D]")

    def add(self, persons: pd.DataFrame, first: int) -> None:
        sl = slice(first, first + len(persons))
        self.forename[sl] = persons["forename"].to_numpy(dtype=object)
        self.surname[sl] = persons["surname"].to_numpy(dtype=object)
        self.postcode[sl] = persons["postcode"].to_numpy(dtype=object)
        self.dob[sl] = persons["date_of_birth"].to_numpy("datetime64[D]")


def unregistered_ecds(params: SynthParams, spine: Identities, setup: Setup, columns, n_ecds_persons: int,
                      ids: RecordIds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A&E attendances of people on no GP list of the footprint (params.share_ecds_unregistered).

    Drawn from a random stream of their own, after every chunk, so the rest of the extracts
    are unchanged by the share. Person ids follow the registered ones (persons, persons + 1,
    ...). A fifth are relatives of a registered person (same surname and postcode, own
    forename and birth date), a tenth namesakes (same surname and date of birth, own forename
    and address): the people probabilistic linkage could wrongly pull onto the spine."""
    share = params.share_ecds_unregistered
    k = int(round(share / max(1 - share, 1e-9) * n_ecds_persons)) if share > 0 else 0
    empty_p = pd.DataFrame({"person": pd.Series(dtype="int64"), "kind": pd.Series(dtype=object),
                            "sex": pd.Series(dtype=object), "date_of_birth": pd.Series(dtype="datetime64[s]"),
                            "ethnic_category": pd.Series(dtype=object)})
    if k == 0:
        return pd.DataFrame(columns=list(columns)), empty_p
    rng = np.random.default_rng([params.seed, 0x5EED, 17])
    n = len(spine.surname)
    pid = np.arange(n, n + k)
    sex = np.where(rng.random(k) < 0.5, "F", "M")
    fore = pick_forenames(sex, rng.random(k))
    sur = pick(surname_universe(), rng.random(k))
    start = np.datetime64(params.start, "D")
    dob = start - (rng.integers(0, 90, k) * 365.25 + rng.integers(0, 365, k)).astype("timedelta64[D]")
    postcode = make_postcodes(rng, k, "M")  # an address outside the footprint
    kind = np.full(k, "visitor", dtype=object)
    draw = rng.random(k)
    rel = np.flatnonzero(draw < 0.2)
    nam = np.flatnonzero((draw >= 0.2) & (draw < 0.3))
    other = rng.integers(0, n, k)
    sur[rel] = spine.surname[other[rel]]
    postcode[rel] = spine.postcode[other[rel]]
    kind[rel] = "relative"
    sur[nam] = spine.surname[other[nam]]
    dob[nam] = spine.dob[other[nam]]
    kind[nam] = "namesake"
    # a namesake with the same forename too would be indistinguishable without an NHS number
    # (HARRIET and BERNARD are never drawn: synthetic.names.RESERVED_FORENAMES)
    same = (fore[nam] == spine.forename[other[nam]])
    fore[nam[same]] = np.where(sex[nam[same]] == "F", "HARRIET", "BERNARD")
    # numbers of their own: about 0.5% of candidates are a registered person's at 2 M people
    spare = 64
    while True:
        cand = valid_nhs_numbers(rng, k + spare).astype("S10")
        cand = cand[~np.isin(cand, setup.nhs_number)]
        if len(cand) >= k:
            break
        spare *= 4
    nhs = cand[:k].astype(str).astype(object)
    nhs[rng.random(k) < 0.15] = None  # visitors' numbers are missing more often
    # attendances: mostly one, dated in the data period
    n_att = 1 + (rng.random(k) < 0.15).astype(int)
    person = np.repeat(pid, n_att)
    pi = person - n
    m = len(person)
    first = start.astype("datetime64[D]").astype(np.int64)
    last = (np.datetime64(params.start, "M") + np.timedelta64(params.months, "M")).astype("datetime64[D]").astype(np.int64)
    day = rng.integers(first, np.maximum(last, first + 1), m)
    dob_days = dob.astype("datetime64[D]").astype(np.int64)[pi]
    day = np.maximum(day, dob_days)
    # record ids continue the registered people's A&E ids, so they are distinct from them
    ident = ids.take("E", m, 12)
    dept = rng.choice(["01", "03", "04"], m, p=[0.6, 0.3, 0.1]).astype(object)
    v = pd.DataFrame({
        "EC_Ident": ident, "person": person, "NHS_Number": nhs[pi], "Patient_Forename": fore[pi],
        "Patient_Surname": sur[pi], "Date_Of_Birth": dob.astype(str).astype(object)[pi],
        "Sex": np.where(sex[pi] == "M", "1", "2").astype(object), "Postcode": postcode[pi],
        "Arrival_Date": day.astype("datetime64[D]").astype(str).astype(object),
        "Arrival_Time": CLOCK[rng.integers(0, 24, m) * 60 + rng.integers(0, 60, m)],
        "EC_Department_Type": dept, "EC_AttendanceCategory": "1",
        "EC_Arrival_Mode_SNOMED_CT": np.where(rng.random(m) < 0.25, "1048031000000100", "1048001000000106"),
        "EC_Chief_Complaint_SNOMED_CT": rng.choice(CHIEF_COMPLAINTS, m),
        "EC_Diagnosis_01": rng.choice(["82271004", "62315008", "22298006", "195967001", "68566005"], m),
        "Discharge_Destination_SNOMED_CT": np.where(rng.random(m) < 0.1, "306706006", "306689006"),
        "Age_At_Arrival": np.floor((day - dob_days) / 365.25).astype(int),
        "Der_Postcode_LSOA_2011_Code": None, "GP_Practice_Code": None,
        "Der_Provider_Code": rng.choice(PROVIDERS, m),
    })
    persons = pd.DataFrame({"person": pid, "kind": kind, "sex": sex, "date_of_birth": dob.astype("datetime64[s]"),
                            "ethnic_category": None})
    return v[list(columns)], persons


def _iapt_tables(params: SynthParams, setup: Setup, pop: Population, sim: Simulation, rng: BlockRNG,
                 ids: RecordIds | ChunkRecordIds):
    P, R = pop.persons, sim.referrals.reset_index(drop=True)
    end_of_data = _days(month_start(params, np.array([params.months])))[0]
    nref = len(R)
    # MPI: one record per referred person, and a second record for some (re-registered at the provider).
    people = R["person"].to_numpy()  # one referral per person, in block order
    per_ref = rng.for_rows(people)
    v = identity_variants(P, people, "iapt_ids001_mpi", params, rng, setup)
    dup = per_ref.random(nref) < params.error_rates["iapt_ids001_mpi"].duplicate_record
    vdup = identity_variants(P, people[dup], "iapt_ids001_mpi", params, rng, setup)
    mpi_v = pd.concat([v, vdup], ignore_index=True)
    order = rng.order(mpi_v["person"].to_numpy())  # each block's records, then its duplicates
    lpid = np.empty(len(mpi_v), dtype=object)
    lpid[order] = ids.take("L", len(mpi_v))
    # The referral hangs off the duplicate record half the time.
    ref_lpid = lpid[:nref].copy()
    dup_ref = np.flatnonzero(dup)
    use_dup = rng.for_rows(people[dup_ref]).random(len(dup_ref)) < 0.5
    ref_lpid[dup_ref[use_dup]] = lpid[nref:][use_dup]
    mpi_v = mpi_v.iloc[order].reset_index(drop=True)
    mp = mpi_v["person"].to_numpy()
    mpi = pd.DataFrame({
        "LocalPatientId": lpid[order], "NHSNumber": mpi_v["nhs"],
        "NHSNumberStatus": np.where(mpi_v["nhs"].isna(), "07", "01"),
        "PersonGivenName": mpi_v["forename"], "PersonFamilyName": mpi_v["surname"], "PersonBirthDate": mpi_v["dob"],
        "Gender": mpi_v["sex"].map({"M": "1", "F": "2"}), "EthnicCategory": P["ethnic_category"].to_numpy()[mp],
        "Postcode": mpi_v["postcode"], "OrgIDResidenceResp": "15F",
    })
    truth = pd.DataFrame({"source": "iapt_ids001_mpi", "record_id": mpi["LocalPatientId"],
                          "true_person_id": mp + pop.first})

    # Referrals and their contacts.
    sr = ids.take("R", nref)
    n_treat = R["n_treatment"].to_numpy()
    never_seen = R["never_seen"].to_numpy()
    first_treat = R["first_treatment_day"].to_numpy()
    # Treatment contacts every 7-15 days; 10% of booked sessions are missed.
    n_booked = np.where(n_treat > 0, n_treat + per_ref.binomial(n_treat, 0.1), 0)
    c_ref = np.repeat(np.arange(nref), n_booked)
    per_contact = rng.for_rows(people[c_ref])
    seq = np.arange(len(c_ref)) - np.repeat(np.cumsum(n_booked) - n_booked, n_booked)
    gaps = per_contact.integers(7, 16, size=len(c_ref))
    gaps[seq == 0] = 0
    c_day = first_treat[c_ref] + pd.Series(gaps).groupby(c_ref).cumsum().to_numpy()
    # Missed sessions: the booked slots beyond n_treat, drawn at random among all but the first
    # (the first treatment contact is attended by definition).
    key = np.where(seq == 0, 2.0, per_contact.random(len(c_ref)))
    rank = pd.Series(key).groupby(c_ref).rank(method="first").to_numpy()
    missed = rank <= (n_booked - n_treat)[c_ref]
    c_attend = np.where(missed, "3", per_contact.choice(np.array(["5", "6"]), len(c_ref), p=[0.95, 0.05])).astype(object)
    # Assessment contacts: everyone seen.
    a_ref = np.flatnonzero(~never_seen)
    contact_ref = np.r_[a_ref, c_ref]
    contact_day = np.r_[R["assessment_day"].to_numpy()[a_ref], c_day].astype(float)
    apptype = np.r_[np.full(len(a_ref), "01", dtype=object), np.full(len(c_ref), "02", dtype=object)]
    attend = np.r_[np.full(len(a_ref), "5", dtype=object), c_attend]
    in_data = contact_day < end_of_data
    contact_ref, contact_day, apptype, attend = contact_ref[in_data], contact_day[in_data], apptype[in_data], attend[in_data]
    order = rng.order(people[contact_ref])
    contact_ref, contact_day, apptype, attend = contact_ref[order], contact_day[order], apptype[order], attend[order]
    per_row = rng.for_rows(people[contact_ref])
    cc = pd.DataFrame({
        "CareContactId": ids.take("K", len(contact_ref), 12), "ServiceRequestId": sr[contact_ref],
        "CareContDate": _iso(contact_day), "AttendOrDNACode": attend, "APPTYPE": apptype,
        "ConsMechanism": per_row.choice(np.array(["01", "02", "11"]), len(contact_ref), p=[0.45, 0.35, 0.2]),
        "IAPTLTCServiceInd": R["pathway"].to_numpy()[contact_ref],
        "block": rng.block_of(people[contact_ref]), "referral": contact_ref,
    })
    # each referral's contacts together, in date order (within a block: see synthetic.streams);
    # referrals in their own order, not their ids', which are not known while a chunk is built
    cc = cc.sort_values(["block", "referral", "CareContDate"], kind="stable").reset_index(drop=True)
    cc_block = cc.pop("block").to_numpy()
    cc.pop("referral")

    # Discharge: after the last contact; open referrals at the end of the data have no end code.
    last_contact = pd.Series(contact_day).groupby(contact_ref).max().reindex(range(nref)).to_numpy()
    disch = np.where(np.isnan(last_contact), R["referral_day"].to_numpy() + per_ref.integers(20, 60, size=nref),
                     last_contact + per_ref.integers(0, 15, size=nref))
    endcode = np.where(never_seen, "50", np.where(n_treat == 0, per_ref.choice(np.array(["10", "11", "12", "13", "14"]), nref),
                                                  per_ref.choice(np.array(["46", "47", "48"]), nref, p=[0.72, 0.18, 0.10]))).astype(object)
    open_ref = disch >= end_of_data
    endcode[open_ref] = None
    disch = np.where(open_ref, np.nan, disch)
    referral = pd.DataFrame({
        "ServiceRequestId": sr, "LocalPatientId": ref_lpid, "OrgIDProv": "RXG",
        "ReferralRequestReceivedDate": _iso(R["referral_day"].to_numpy().astype(float)),
        "SourceOfReferralIAPT": per_ref.choice(np.array(["A1", "B1", "A3"]), nref, p=[0.55, 0.4, 0.05]),
        "ServDischDate": _iso(disch), "ENDCODE": endcode,
    })

    # Care activities and PHQ-9 / GAD-7 scores at every attended contact.
    attended = cc["AttendOrDNACode"].isin(["5", "6"]).to_numpy()
    att = cc[attended].reset_index(drop=True)
    att_block = cc_block[attended]
    therapy = per_ref.choice(THERAPIES, nref, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    ref_pos = pd.Series(np.arange(nref), index=sr)
    att_ref = ref_pos.loc[att["ServiceRequestId"]].to_numpy()
    activity = pd.DataFrame({"CareActId": ids.take("T", len(att), 12), "CareContactId": att["CareContactId"],
                             "CodeProcAndProcStatus": therapy[att_ref]})
    seq = att.groupby("ServiceRequestId").cumcount().to_numpy()
    n_seq = att.groupby("ServiceRequestId")["CareContactId"].transform("size").to_numpy()
    # Scores start mostly at caseness and improve by a referral-specific share by the last session,
    # tuned so about half of finished courses recover and about two-thirds reliably improve.
    phq0 = np.clip(per_ref.normal(16, 5, size=nref), 0, 27)
    gad0 = np.clip(per_ref.normal(13, 4, size=nref), 0, 21)
    improve = per_ref.beta(1.3, 1.0, size=nref) * 1.2 - 0.22
    frac = np.where(n_seq > 1, seq / np.maximum(n_seq - 1, 1), 0.0)
    per_att = rng.for_rows(people[att_ref])
    phq = np.clip(np.rint(phq0[att_ref] * (1 - improve[att_ref] * frac) + per_att.normal(0, 1.2, size=len(att))), 0, 27).astype(int)
    gad = np.clip(np.rint(gad0[att_ref] * (1 - improve[att_ref] * frac) + per_att.normal(0, 1.0, size=len(att))), 0, 21).astype(int)
    scores = pd.DataFrame({
        "ServiceRequestId": np.r_[att["ServiceRequestId"], att["ServiceRequestId"]],
        "CareActId": np.r_[activity["CareActId"], activity["CareActId"]],
        "CodedAssToolType": np.r_[np.full(len(att), PHQ9), np.full(len(att), GAD7)],
        "PersScore": np.r_[phq, gad], "AssToolCompDate": np.r_[att["CareContDate"], att["CareContDate"]],
    })
    # each block's PHQ-9 scores, then its GAD-7 scores
    scores = scores.iloc[np.argsort(np.r_[att_block, att_block], kind="stable")].reset_index(drop=True)
    scores.insert(0, "CodedScoreId", ids.take("Q", len(scores), 12))

    # IDS602: the long-term conditions recorded on referrals of people who have them.
    lt = pop.ltc.merge(pd.DataFrame({"person": people, "ServiceRequestId": sr}), on="person")
    ltc_tab = pd.DataFrame({"LongTermConditionId": ids.take("M", len(lt)), "ServiceRequestId": lt["ServiceRequestId"],
                            "LongTermCondition": lt["SNOMEDCode"]})
    return ({"iapt_ids001_mpi": mpi, "iapt_ids101_referral": referral, "iapt_ids201_care_contact": cc,
             "iapt_ids202_care_activity": activity, "iapt_ids602_ltc": ltc_tab, "iapt_ids606_coded_scores": scores},
            truth)
