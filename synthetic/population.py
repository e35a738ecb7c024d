"""The registered population: practices, people, deprivation, long-term conditions, lifetimes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .identifiers import FEMALE_NAMES, MALE_NAMES, SURNAMES, make_postcodes, valid_nhs_numbers
from .params import LTC_CODES, SynthParams

# Age structure of a registered list (share per 5-year band from 0-4 to 90-94).
AGE_BAND_WEIGHTS = np.array([5.6, 6.0, 5.9, 5.5, 6.1, 6.6, 6.9, 6.8, 6.5, 6.4, 6.8, 6.9, 6.2, 5.3,
                             5.0, 3.7, 2.6, 1.6, 0.8])
POSTAL_AREAS = ("HX", "HD", "BD", "WF", "LS")
ETHNIC_CATEGORIES = np.array(list("ABCDEFGHJKLMNPRSZ"))
ETHNIC_WEIGHTS = np.array([78, 2, 3, 0.5, 0.5, 0.5, 0.5, 3.5, 5.5, 1, 1, 1, 0.5, 0.5, 1, 1, 0.5])


@dataclass
class Population:
    practices: pd.DataFrame  # PracticeCode, ltc_launch_month (-1 = never), lsoas
    lsoa: pd.DataFrame  # LSOA11, IMD_Decile, postal area
    persons: pd.DataFrame  # one row per true person (see build_population)
    ltc: pd.DataFrame  # person, ltc_group, SNOMEDCode, DiagnosisDate


def month_start(params: SynthParams, month_index) -> np.ndarray:
    start = np.datetime64(params.start, "M")
    return (start + np.asarray(month_index, dtype="timedelta64[M]")).astype("datetime64[D]")


def build_population(params: SynthParams, rng: np.random.Generator) -> Population:
    n = params.persons
    n_practices = max(params.min_practices, round(n / params.practice_list_size))
    practice_codes = np.array([f"Y{10000 + i * 7:05d}" for i in range(n_practices)])

    # Practices differ in deprivation: each serves a run of LSOAs around its own IMD centre.
    lsoas_per_practice = 8
    n_lsoa = n_practices * lsoas_per_practice
    practice_imd_centre = rng.uniform(*params.practice_imd_spread, size=n_practices)
    lsoa_practice = np.repeat(np.arange(n_practices), lsoas_per_practice)
    lsoa_imd = np.clip(np.rint(practice_imd_centre[lsoa_practice] + rng.normal(0, params.lsoa_imd_sd, n_lsoa)), 1, 10).astype(int)
    lsoa_codes = np.array([f"E0{1000001 + i * 3:07d}" for i in range(n_lsoa)])
    lsoa_area = np.array(POSTAL_AREAS)[lsoa_practice % len(POSTAL_AREAS)]

    # Early implementers launch the IAPT-LTC pathway at staggered months; others keep core IAPT.
    n_ltc = max(2, round(n_practices * params.share_practices_ltc))
    ltc_practices = rng.choice(n_practices, size=n_ltc, replace=False)
    launch = np.full(n_practices, -1)
    lo, hi = params.ltc_launch_months
    launch[ltc_practices] = np.sort(rng.integers(lo, hi + 1, size=n_ltc))
    practices = pd.DataFrame({"PracticeCode": practice_codes, "ltc_launch_month": launch,
                              "imd_centre": practice_imd_centre})

    # People: list sizes vary by practice.
    sizes = rng.dirichlet(np.full(n_practices, 8.0))
    practice = rng.choice(n_practices, size=n, p=sizes)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    band = rng.choice(len(AGE_BAND_WEIGHTS), size=n, p=AGE_BAND_WEIGHTS / AGE_BAND_WEIGHTS.sum())
    age_at_start = np.minimum(band * 5 + rng.integers(0, 5, size=n), 99)
    start = np.datetime64(params.start, "D")
    dob = start - (age_at_start * 365.25 + rng.integers(0, 365, size=n)).astype("timedelta64[D]")
    lsoa_idx = practice * lsoas_per_practice + rng.integers(0, lsoas_per_practice, size=n)
    imd = lsoa_imd[lsoa_idx]
    ethnic = rng.choice(ETHNIC_CATEGORIES, size=n, p=ETHNIC_WEIGHTS / ETHNIC_WEIGHTS.sum())

    # Long-term conditions: adult prevalence rising with age and deprivation.
    age_factor = np.clip(np.exp(0.035 * (age_at_start - 50)), 0.05, 4.0) * (age_at_start >= 16)
    dep_factor = 1 + 0.06 * (5.5 - imd)
    ltc_rows = []
    n_ltc_person = np.zeros(n, dtype=int)
    for group, prevalence in params.ltc_prevalence.items():
        group_age = np.ones(n) if group in ("ibs", "chronic_fatigue", "mus", "chronic_pain_msk") else age_factor
        p = np.clip(prevalence * group_age * dep_factor * (age_at_start >= 16), 0, 0.9)
        has = rng.random(n) < p
        idx = np.flatnonzero(has)
        codes = LTC_CODES[group]
        code = np.array(codes)[rng.integers(0, len(codes), size=len(idx))]
        # Most conditions were diagnosed before the data period; some during it.
        months_before = rng.integers(-params.months, 240, size=len(idx))
        diag = month_start(params, -months_before) + rng.integers(0, 28, size=len(idx)).astype("timedelta64[D]")
        diag = np.maximum(diag, dob[idx] + np.timedelta64(16 * 365, "D"))
        ltc_rows.append(pd.DataFrame({"person": idx, "ltc_group": group, "SNOMEDCode": code, "DiagnosisDate": diag}))
        n_ltc_person += has
    ltc = pd.concat(ltc_rows, ignore_index=True)

    frailty = rng.gamma(params.frailty_shape, 1 / params.frailty_shape, size=n)

    # Registration: most people were registered before the period; some join during it.
    joins = rng.random(n) < params.share_registering_during_period
    reg_start_month = np.where(joins, rng.integers(1, params.months, size=n), -rng.integers(1, 240, size=n))
    reg_start = month_start(params, reg_start_month) + rng.integers(0, 28, size=n).astype("timedelta64[D]")
    reg_start = np.maximum(reg_start, dob)
    # Deaths: Gompertz-like annual hazard by age, higher with frailty; leavers move away.
    annual_death = np.clip(np.exp(-10.2 + 0.095 * age_at_start) * frailty ** 0.5, 0, 0.5)
    death_month = rng.geometric(1 - (1 - annual_death) ** (1 / 12)) - 1
    leave_month = rng.geometric(params.monthly_deregistration, size=n) - 1
    died = death_month < params.months
    left = (leave_month < params.months) & (leave_month < death_month)
    death_date = np.where(died, month_start(params, np.minimum(death_month, params.months))
                          + rng.integers(0, 28, size=n).astype("timedelta64[D]"), np.datetime64("NaT"))
    leave_date = np.where(left, month_start(params, np.minimum(leave_month, params.months))
                          + rng.integers(0, 28, size=n).astype("timedelta64[D]"), np.datetime64("NaT"))
    reg_end = np.where(died & ~left, death_date, leave_date)
    joined_late = reg_start_month >= 0
    bad = ~np.isnat(reg_end) & (reg_end <= reg_start)
    reg_end = np.where(bad & joined_late, np.datetime64("NaT"), reg_end)
    death_date = np.where(bad & joined_late & died, np.datetime64("NaT"), death_date)

    # True identity.
    nhs = valid_nhs_numbers(rng, n)
    forename = np.where(sex == "F", np.array(FEMALE_NAMES, dtype=object)[rng.zipf(1.6, n) % len(FEMALE_NAMES)],
                        np.array(MALE_NAMES, dtype=object)[rng.zipf(1.6, n) % len(MALE_NAMES)])
    surname = np.array(SURNAMES, dtype=object)[(rng.zipf(1.3, n) + rng.integers(0, len(SURNAMES), n) * (rng.random(n) < 0.6)) % len(SURNAMES)]
    postcode_pool = {}
    postcode = np.empty(n, dtype=object)
    for li in np.unique(lsoa_idx):
        members = np.flatnonzero(lsoa_idx == li)
        pool = make_postcodes(rng, 12, lsoa_area[li])
        postcode_pool[li] = pool
        postcode[members] = pool[rng.integers(0, len(pool), size=len(members))]

    persons = pd.DataFrame({
        "person": np.arange(n), "nhs_number": nhs, "forename": forename, "surname": surname,
        "date_of_birth": dob, "sex": sex, "postcode": postcode, "lsoa11": lsoa_codes[lsoa_idx],
        "imd_decile": imd, "ethnic_category": ethnic, "practice": practice,
        "practice_code": practice_codes[practice], "age_at_start": age_at_start,
        "n_ltc": n_ltc_person, "frailty": frailty, "registration_start": reg_start,
        "registration_end": reg_end, "date_of_death": death_date,
    })
    lsoa = pd.DataFrame({"LSOA11": lsoa_codes, "IMD_Decile": lsoa_imd, "area": lsoa_area})
    return Population(practices=practices, lsoa=lsoa, persons=persons, ltc=ltc)
