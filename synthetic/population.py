"""The registered population: practices, people, deprivation, long-term conditions, lifetimes.

Practices, LSOAs, postcodes and NHS numbers span people and are drawn once (``build_setup``);
people are built chunk by chunk from their blocks' random streams (``build_persons``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .identifiers import make_postcodes, valid_nhs_numbers
from .names import pick, pick_forenames, surname_universe
from .params import LTC_CODES, SynthParams
from .streams import BlockRNG

# Age structure of a registered list (share per 5-year band from 0-4 to 90-94).
AGE_BAND_WEIGHTS = np.array([5.6, 6.0, 5.9, 5.5, 6.1, 6.6, 6.9, 6.8, 6.5, 6.4, 6.8, 6.9, 6.2, 5.3,
                             5.0, 3.7, 2.6, 1.6, 0.8])
POSTAL_AREAS = ("HX", "HD", "BD", "WF", "LS")
ETHNIC_CATEGORIES = np.array(list("ABCDEFGHJKLMNPRSZ"))
ETHNIC_WEIGHTS = np.array([78, 2, 3, 0.5, 0.5, 0.5, 0.5, 3.5, 5.5, 1, 1, 1, 0.5, 0.5, 1, 1, 0.5])


@dataclass
class Setup:
    """What spans people, drawn once from streams of its own (independent of chunking)."""

    practices: pd.DataFrame  # PracticeCode, ltc_launch_month (-1 = never), imd_centre
    lsoa: pd.DataFrame  # LSOA11, IMD_Decile, area
    practice_share: np.ndarray  # share of the population on each practice's list
    postcode_pool: np.ndarray  # (LSOAs, POSTCODES_PER_LSOA) postcodes of each LSOA
    nhs_number: np.ndarray  # true NHS number of every registered person (bytes, S10)


@dataclass
class Population:
    """One chunk of the registered population (global person ids ``first`` ...)."""

    practices: pd.DataFrame
    lsoa: pd.DataFrame
    persons: pd.DataFrame  # one row per true person of the chunk (see build_persons)
    ltc: pd.DataFrame  # person (index within the chunk), ltc_group, SNOMEDCode, DiagnosisDate; in block order
    first: int = 0  # global id of the chunk's first person


LSOAS_PER_PRACTICE = 8
POSTCODES_PER_LSOA = 12


def month_start(params: SynthParams, month_index) -> np.ndarray:
    start = np.datetime64(params.start, "M")
    return (start + np.asarray(month_index, dtype="timedelta64[M]")).astype("datetime64[D]")


def build_setup(params: SynthParams) -> Setup:
    """Practices, LSOAs and their postcodes, pathway launches and every true NHS number."""
    rng = np.random.default_rng([params.seed, 0x5E7])
    n = params.persons
    n_practices = max(params.min_practices, round(n / params.practice_list_size))
    practice_codes = np.array([f"Y{10000 + i * 7:05d}" for i in range(n_practices)])

    # Practices differ in deprivation: each serves a run of LSOAs around its own IMD centre.
    n_lsoa = n_practices * LSOAS_PER_PRACTICE
    practice_imd_centre = rng.uniform(*params.practice_imd_spread, size=n_practices)
    lsoa_practice = np.repeat(np.arange(n_practices), LSOAS_PER_PRACTICE)
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
    # List sizes vary by practice.
    sizes = rng.dirichlet(np.full(n_practices, 8.0))
    pool = np.stack([make_postcodes(rng, POSTCODES_PER_LSOA, lsoa_area[li]) for li in range(n_lsoa)])
    nhs = valid_nhs_numbers(np.random.default_rng([params.seed, 0x4E5]), n).astype("S10")
    lsoa = pd.DataFrame({"LSOA11": lsoa_codes, "IMD_Decile": lsoa_imd, "area": lsoa_area})
    return Setup(practices=practices, lsoa=lsoa, practice_share=sizes, postcode_pool=pool, nhs_number=nhs)


def build_persons(params: SynthParams, setup: Setup, rng: BlockRNG) -> Population:
    """The persons ``rng.first`` .. ``rng.first + rng.n - 1``, every draw from their blocks' streams."""
    n, first = rng.n, rng.first
    every = rng.per_person()
    practices = setup.practices
    n_practices = len(practices)
    practice_codes = practices["PracticeCode"].to_numpy()
    lsoa_codes = setup.lsoa["LSOA11"].to_numpy()
    lsoa_imd = setup.lsoa["IMD_Decile"].to_numpy()

    practice = every.choice(n_practices, size=n, p=setup.practice_share)
    sex = np.where(every.random(n) < 0.5, "F", "M")
    band = every.choice(len(AGE_BAND_WEIGHTS), size=n, p=AGE_BAND_WEIGHTS / AGE_BAND_WEIGHTS.sum())
    age_at_start = np.minimum(band * 5 + every.integers(0, 5, size=n), 99)
    start = np.datetime64(params.start, "D")
    dob = start - (age_at_start * 365.25 + every.integers(0, 365, size=n)).astype("timedelta64[D]")
    lsoa_idx = practice * LSOAS_PER_PRACTICE + every.integers(0, LSOAS_PER_PRACTICE, size=n)
    imd = lsoa_imd[lsoa_idx]
    ethnic = every.choice(ETHNIC_CATEGORIES, size=n, p=ETHNIC_WEIGHTS / ETHNIC_WEIGHTS.sum())

    # Long-term conditions: adult prevalence rising with age and deprivation.
    age_factor = np.clip(np.exp(0.035 * (age_at_start - 50)), 0.05, 4.0) * (age_at_start >= 16)
    dep_factor = 1 + 0.06 * (5.5 - imd)
    ltc_rows = []
    n_ltc_person = np.zeros(n, dtype=int)
    for group, prevalence in params.ltc_prevalence.items():
        group_age = np.ones(n) if group in ("ibs", "chronic_fatigue", "mus", "chronic_pain_msk") else age_factor
        p = np.clip(prevalence * group_age * dep_factor * (age_at_start >= 16), 0, 0.9)
        has = every.random(n) < p
        idx = np.flatnonzero(has)
        some = rng.for_rows(idx)
        codes = LTC_CODES[group]
        code = np.array(codes)[some.integers(0, len(codes), size=len(idx))]
        # Most conditions were diagnosed before the data period; some during it.
        months_before = some.integers(-params.months, 240, size=len(idx))
        diag = month_start(params, -months_before) + some.integers(0, 28, size=len(idx)).astype("timedelta64[D]")
        diag = np.maximum(diag, dob[idx] + np.timedelta64(16 * 365, "D"))
        ltc_rows.append(pd.DataFrame({"person": idx, "ltc_group": group, "SNOMEDCode": code, "DiagnosisDate": diag}))
        n_ltc_person += has
    ltc = pd.concat(ltc_rows, ignore_index=True)
    ltc = ltc.iloc[rng.order(ltc["person"].to_numpy())].reset_index(drop=True)  # block order

    frailty = every.gamma(params.frailty_shape, 1 / params.frailty_shape, size=n)

    # Registration: most people were registered before the period; some join during it.
    joins = every.random(n) < params.share_registering_during_period
    reg_start_month = np.where(joins, every.integers(1, params.months, size=n), -every.integers(1, 240, size=n))
    reg_start = month_start(params, reg_start_month) + every.integers(0, 28, size=n).astype("timedelta64[D]")
    reg_start = np.maximum(reg_start, dob)
    # Deaths: Gompertz-like annual hazard by age, higher with frailty; leavers move away.
    annual_death = np.clip(np.exp(-10.2 + 0.095 * age_at_start) * frailty ** 0.5, 0, 0.5)
    death_month = every.geometric(1 - (1 - annual_death) ** (1 / 12)) - 1
    leave_month = every.geometric(params.monthly_deregistration, size=n) - 1
    died = death_month < params.months
    left = (leave_month < params.months) & (leave_month < death_month)
    death_date = np.where(died, month_start(params, np.minimum(death_month, params.months))
                          + every.integers(0, 28, size=n).astype("timedelta64[D]"), np.datetime64("NaT"))
    leave_date = np.where(left, month_start(params, np.minimum(leave_month, params.months))
                          + every.integers(0, 28, size=n).astype("timedelta64[D]"), np.datetime64("NaT"))
    reg_end = np.where(died & ~left, death_date, leave_date)
    joined_late = reg_start_month >= 0
    bad = ~np.isnat(reg_end) & (reg_end <= reg_start)
    reg_end = np.where(bad & joined_late, np.datetime64("NaT"), reg_end)
    death_date = np.where(bad & joined_late & died, np.datetime64("NaT"), death_date)

    # True identity: names from the long-tailed name model (synthetic.names).
    nhs = setup.nhs_number[first:first + n].astype(str).astype(object)
    forename = pick_forenames(sex, every.random(n))
    surname = pick(surname_universe(), every.random(n))
    postcode = setup.postcode_pool[lsoa_idx, every.integers(0, POSTCODES_PER_LSOA, size=n)]

    persons = pd.DataFrame({
        "person": np.arange(first, first + n), "nhs_number": nhs, "forename": forename, "surname": surname,
        "date_of_birth": dob, "sex": sex, "postcode": postcode, "lsoa11": lsoa_codes[lsoa_idx],
        "imd_decile": imd, "ethnic_category": ethnic, "practice": practice,
        "practice_code": practice_codes[practice], "age_at_start": age_at_start,
        "n_ltc": n_ltc_person, "frailty": frailty, "registration_start": reg_start,
        "registration_end": reg_end, "date_of_death": death_date,
    })
    return Population(practices=practices, lsoa=setup.lsoa, persons=persons, ltc=ltc, first=first)
