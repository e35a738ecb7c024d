"""A small, fast generator of contract-shaped pseudonymised tables (data-contracts.md §3).

Only for the analytical-zone tests: it plants the features the dbt models must handle
(LTC-pathway practices with launch months, treated people with a utilisation peak before
their index month, ordinary IAPT referrals elsewhere, unlinked records, deaths and
de-registrations), without going through the landing and linkage zones.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2021-01-01")
N_MONTHS = 48
LTC_CODES = ["13645005", "44054006", "46635009", "84114007", "53741008", "82423001", "10743008", "52702003"]


def _pid(i: int) -> str:
    return hashlib.sha256(f"person-{i}".encode()).hexdigest()


def _dates_in_month(month_idx: np.ndarray, rng: np.random.Generator) -> pd.Series:
    base = START + pd.to_timedelta(0, "D")
    months = pd.DatetimeIndex([base + pd.DateOffset(months=int(m)) for m in range(N_MONTHS)])
    days_in = np.asarray(months.days_in_month)
    day = (rng.random(len(month_idx)) * days_in[month_idx]).astype(int)
    return pd.Series(months[month_idx] + pd.to_timedelta(day, "D")).dt.date


def write_pseudonymised(out_dir: Path, n_persons: int = 3000, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = n_persons

    practices = [f"P{i:05d}" for i in range(20)]
    ltc_practices = practices[:8]
    launch = {p: 6 + 3 * k for k, p in enumerate(ltc_practices)}  # month index of launch
    lsoas = [f"E0100{i:04d}" for i in range(60)]
    imd = pd.DataFrame({"LSOA11": lsoas, "IMD_Decile": (np.arange(60) % 10 + 1).astype("int64")})

    pid = np.array([_pid(i) for i in range(n)])
    sex = rng.choice(["M", "F"], n)
    yob = rng.integers(1935, 2008, n)
    mob = rng.integers(1, 13, n)
    practice = rng.choice(practices, n)
    lsoa = rng.choice(lsoas, n)
    reg_start = pd.to_datetime("2015-01-01") + pd.to_timedelta(rng.integers(0, 365 * 8, n), "D")
    reg_end = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    leavers = rng.random(n) < 0.08
    reg_end[leavers] = pd.to_datetime("2022-01-01") + pd.to_timedelta(rng.integers(0, 900, leavers.sum()), "D")
    dod = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    dead = rng.random(n) < 0.03
    dod[dead] = pd.to_datetime("2021-06-01") + pd.to_timedelta(rng.integers(0, 1200, dead.sum()), "D")
    person = pd.DataFrame(
        {
            "person_id": pid,
            "sex": sex,
            "year_of_birth": yob.astype("int64"),
            "month_of_birth": mob.astype("int64"),
            "ethnic_category": rng.choice(list("ABCDHJKLMNPRS"), n),
            "lsoa11": lsoa,
            "practice_code": practice,
            "registration_start": reg_start.date,
            "registration_end": pd.to_datetime(reg_end).dt.date,
            "date_of_death": pd.to_datetime(dod).dt.date,
        }
    )

    # LTC register: 55% have 1-3 conditions
    n_ltc = np.where(rng.random(n) < 0.55, rng.integers(1, 4, n), 0)
    cond_rows = []
    for i in np.flatnonzero(n_ltc):
        for code in rng.choice(LTC_CODES, n_ltc[i], replace=False):
            cond_rows.append((pid[i], code, START - pd.Timedelta(days=int(rng.integers(30, 3000)))))
    gp_conditions = pd.DataFrame(cond_rows, columns=["person_id", "SNOMEDCode", "DiagnosisDate"])
    gp_conditions.insert(1, "ConditionRecordId", [f"C{i}" for i in range(len(gp_conditions))])
    gp_conditions["DiagnosisDate"] = pd.to_datetime(gp_conditions["DiagnosisDate"]).dt.date

    # treated: adults with an LTC at LTC-pathway practices, index after launch and after 2022
    age_2022 = 2022 - yob
    at_ltc = np.isin(practice, ltc_practices)
    eligible = at_ltc & (n_ltc > 0) & (age_2022 >= 20)
    treated = eligible & (rng.random(n) < 0.25)
    t_idx = np.flatnonzero(treated)
    index_m = np.array([max(launch[practice[i]], 13) + rng.integers(0, 24) for i in t_idx])
    index_m = np.minimum(index_m, N_MONTHS - 13)

    # monthly activity: person base rates x (a pre-index peak for the treated)
    age = np.clip(age_2022, 0, 100)
    frail = np.exp(0.3 * rng.standard_normal(n)) * (1 + 0.02 * np.maximum(age - 40, 0)) * (1 + 0.25 * n_ltc)
    mult = np.ones((n, N_MONTHS))
    for k, i in enumerate(t_idx):
        m0 = index_m[k]
        for d in range(1, 7):
            if m0 - d >= 0:
                mult[i, m0 - d] *= 1 + 0.25 * (7 - d)
        mult[i, m0 + 1 :] *= 0.85
    base = {"ae": 0.03, "em": 0.012, "op": 0.08, "gp": 0.35}
    tables: dict[str, pd.DataFrame] = {}
    counts = {k: rng.poisson(v * frail[:, None] * mult) for k, v in base.items()}

    def events(key):
        c = counts[key]
        who, mon = np.nonzero(c)
        reps = c[who, mon]
        who, mon = np.repeat(who, reps), np.repeat(mon, reps)
        return who, mon, _dates_in_month(mon, rng)

    who, mon, d = events("ae")
    m = len(who)
    tables["ecds"] = pd.DataFrame(
        {
            "person_id": pid[who],
            "EC_Ident": [f"EC{i}" for i in range(m)],
            "Arrival_Date": d.values,
            "Arrival_Time": "12:00",
            "EC_Department_Type": rng.choice(["01", "03"], m, p=[0.9, 0.1]),
            "EC_AttendanceCategory": "1",
            "EC_Arrival_Mode_SNOMED_CT": "1048031000000100",
            "EC_Chief_Complaint_SNOMED_CT": "21522001",
            "EC_Diagnosis_01": "22298006",
            "Discharge_Destination_SNOMED_CT": "306706006",
            "Age_At_Arrival": (2022 - yob[who]).astype("int64"),
            "Der_Postcode_LSOA_2011_Code": lsoa[who],
            "GP_Practice_Code": practice[who],
            "Der_Provider_Code": "RBA",
        }
    )
    who, mon, d = events("em")
    m = len(who)
    los = rng.integers(0, 15, m)
    adm = pd.to_datetime(d.values)
    tables["apc"] = pd.DataFrame(
        {
            "person_id": pid[who],
            "APCS_Ident": [f"APC{i}" for i in range(m)],
            "Admission_Date": adm.date,
            "Discharge_Date": (adm + pd.to_timedelta(los, "D")).date,
            "Admission_Method": rng.choice(["21", "2A", "11"], m, p=[0.6, 0.2, 0.2]),
            "Patient_Classification": "1",
            "Discharge_Method": "1",
            "Der_Spell_LoS": los.astype("int64"),
            "Der_Diagnosis_All": "J44.1",
            "Spell_Core_HRG_SUS": "DZ65",
            "Age_At_Start_of_Spell_SUS": (2022 - yob[who]).astype("int64"),
            "GP_Practice_Code": practice[who],
            "Der_Provider_Code": "RBA",
        }
    )
    who, mon, d = events("op")
    m = len(who)
    tables["opa"] = pd.DataFrame(
        {
            "person_id": pid[who],
            "ATTENDKEY": [f"OP{i}" for i in range(m)],
            "APPTDATE": d.values,
            "ATTENDED": rng.choice(["5", "6", "3"], m, p=[0.8, 0.1, 0.1]),
            "FIRSTATT": rng.choice(["1", "2"], m),
            "TRETSPEF": "300",
            "PROCODE3": "RBA",
            "APPTAGE": (2022 - yob[who]).astype("int64"),
            "LSOA11": lsoa[who],
            "GPPRAC": practice[who],
        }
    )
    who, mon, d = events("gp")
    m = len(who)
    tables["gp_appointments"] = pd.DataFrame(
        {
            "person_id": pid[who],
            "AppointmentId": [f"GP{i}" for i in range(m)],
            "PracticeCode": practice[who],
            "BookedDate": d.values,
            "AppointmentDate": d.values,
            "AppointmentStatus": rng.choice(["Attended", "DNA", "Cancelled"], m, p=[0.85, 0.08, 0.07]),
            "HCPType": "GP",
            "ApptMode": "Face-to-Face",
            "NationalCategory": "General Consultation Routine",
        }
    )

    # IAPT: treated (LTC pathway) plus ordinary referrals for some others
    ref_rows, con_rows, score_rows = [], [], []
    months = [START + pd.DateOffset(months=k) for k in range(N_MONTHS)]
    others = rng.choice(np.flatnonzero(~treated), size=max(1, n // 25), replace=False)
    jobs = [(i, index_m[k], True) for k, i in enumerate(t_idx)] + [
        (i, int(rng.integers(12, N_MONTHS - 6)), False) for i in others
    ]
    for r, (i, m0, ltc) in enumerate(jobs):
        srid = f"SR{r}"
        first = months[m0] + pd.Timedelta(days=int(rng.integers(0, 20)))
        refd = first - pd.Timedelta(days=int(rng.integers(10, 40)))
        n_tc = int(rng.integers(1, 9)) if not ltc else int(rng.integers(2, 10))
        dates = [first + pd.Timedelta(days=7 * j) for j in range(n_tc)]
        disch = dates[-1] + pd.Timedelta(days=7)
        ref_rows.append((pid[i], srid, "RXX", refd.date(), "01", disch.date(), "46"))
        con_rows.append((f"{srid}-A", srid, refd.date() + pd.Timedelta(days=5), "5", "01", "02", "Y" if ltc else "N"))
        for j, dt in enumerate(dates):
            con_rows.append((f"{srid}-{j}", srid, dt.date(), "5" if rng.random() < 0.9 else "3", "02", "01", "Y" if ltc else "N"))
        phq0, gad0 = int(rng.integers(5, 25)), int(rng.integers(4, 21))
        phq1, gad1 = max(0, phq0 - int(rng.integers(-3, 12))), max(0, gad0 - int(rng.integers(-3, 9)))
        for code, s0, s1 in (("720433000", phq0, phq1), ("445455005", gad0, gad1)):
            score_rows.append((f"{srid}-{code}-0", srid, None, code, s0, dates[0].date()))
            score_rows.append((f"{srid}-{code}-1", srid, None, code, s1, dates[-1].date()))
    tables["iapt_referral"] = pd.DataFrame(
        ref_rows,
        columns=["person_id", "ServiceRequestId", "OrgIDProv", "ReferralRequestReceivedDate",
                 "SourceOfReferralIAPT", "ServDischDate", "ENDCODE"],
    )
    tables["iapt_care_contact"] = pd.DataFrame(
        con_rows,
        columns=["CareContactId", "ServiceRequestId", "CareContDate", "AttendOrDNACode", "APPTYPE",
                 "ConsMechanism", "IAPTLTCServiceInd"],
    )
    tables["iapt_care_activity"] = pd.DataFrame(
        {"CareActId": [f"CA-{c}" for c in tables["iapt_care_contact"]["CareContactId"]],
         "CareContactId": tables["iapt_care_contact"]["CareContactId"],
         "CodeProcAndProcStatus": "304891004"}
    )
    tables["iapt_ltc"] = pd.DataFrame(
        {"LongTermConditionId": [f"L{i}" for i in range(len(ref_rows))],
         "ServiceRequestId": [r[1] for r in ref_rows], "LongTermCondition": "13645005"}
    )
    tables["iapt_coded_scores"] = pd.DataFrame(
        score_rows,
        columns=["CodedScoreId", "ServiceRequestId", "CareActId", "CodedAssToolType", "PersScore", "AssToolCompDate"],
    ).astype({"CareActId": "string", "PersScore": "int64"})

    # a few unlinked records
    for key in ("ecds", "apc", "opa"):
        t = tables[key]
        t.loc[t.sample(frac=0.01, random_state=seed).index, "person_id"] = None

    tables["person"] = person
    tables["gp_conditions"] = gp_conditions
    tables["lsoa_imd"] = imd
    for name, t in tables.items():
        for c in t.columns:
            if "Date" in c or c in ("registration_start", "registration_end", "date_of_death"):
                t[c] = pd.to_datetime(t[c]).astype("datetime64[s]")
        t.to_parquet(out_dir / f"{name}.parquet", index=False)
    return out_dir
