"""Month-by-month simulation of utilisation, spells of poor health, referral and treatment.

Vectorised across people; the loop runs over months only, because referral depends on the
utilisation each person has shown so far (selection on a peak, hence regression to the mean).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .params import NEGATIVE_CONTROL_STREAM, NEGATIVE_CONTROLS, OUTCOMES, SynthParams
from .population import Population, month_start
from .streams import BlockRNG

NO_EFFECT = np.iinfo(np.int32).max
# Weights turning recent events into the "how unwell has this person looked" score GPs act on.
REFERRAL_UTIL_WEIGHTS = {"ae_attendances": 1.0, "emergency_admissions": 2.0,
                         "outpatient_attendances": 0.2, "gp_appointments": 0.3}


@dataclass
class Simulation:
    counts: dict  # outcome or negative control (params.STREAMS) -> (persons, months) int16 counts
    exposure: np.ndarray  # (persons, months) float32 share of the month registered and alive
    referrals: pd.DataFrame  # one row per referral


def _days(d: np.ndarray) -> np.ndarray:
    """datetime64 (NaT allowed) -> float days since epoch, NaT -> nan."""
    out = d.astype("datetime64[D]").astype("int64").astype(float)
    out[np.isnat(d)] = np.nan
    return out


def simulate(params: SynthParams, pop: Population, rng: BlockRNG) -> Simulation:
    """One chunk of people; persons and referrals are indexed within the chunk."""
    persons = pop.persons
    n, T = len(persons), params.months
    start_day = _days(persons["registration_start"].to_numpy("datetime64[D]"))
    end_day = _days(persons["registration_end"].to_numpy("datetime64[D]"))
    end_day = np.where(np.isnan(end_day), np.inf, end_day)
    age0 = persons["age_at_start"].to_numpy().astype(float)
    n_ltc = persons["n_ltc"].to_numpy()
    has_ltc = n_ltc > 0
    imd = persons["imd_decile"].to_numpy()
    practice = persons["practice"].to_numpy()
    launch = pop.practices["ltc_launch_month"].to_numpy()[practice]

    person_mult = (persons["frailty"].to_numpy() * params.ltc_rate_multiplier ** n_ltc
                   * (1 + params.deprivation_gradient * (5.5 - imd)))
    # Older people use more acute care; children and young adults use less.
    age_slope = {"ae_attendances": 0.012, "emergency_admissions": 0.03,
                 "outpatient_attendances": 0.02, "gp_appointments": 0.015}

    counts = {o: np.zeros((n, T), dtype=np.int16) for o in (*OUTCOMES, *NEGATIVE_CONTROLS)}
    exposure = np.zeros((n, T), dtype=np.float32)
    spell_left = np.zeros(n, dtype=np.int8)
    referred = np.zeros(n, dtype=bool)
    effect_start = np.full(n, NO_EFFECT, dtype=np.int64)
    rr = {o: params.planted_rate_ratio.get(o, 1.0) for o in OUTCOMES}
    ref_rows = []
    month_days = _days(month_start(params, np.arange(T + 1)))
    every = rng.per_person()
    every_control = rng.substream(NEGATIVE_CONTROL_STREAM).per_person()
    confounding = params.residual_confounding_rate_ratio

    for t in range(T):
        ms, me = month_days[t], month_days[t + 1]
        exp_t = np.clip((np.minimum(end_day, me) - np.maximum(start_day, ms)) / (me - ms), 0, 1)
        exposure[:, t] = exp_t
        onset = (spell_left == 0) & (every.random(n) < params.spell_monthly_onset * np.where(has_ltc, 1.5, 1.0))
        lo, hi = params.spell_length_months
        spell_left[onset] = rng.for_rows(np.flatnonzero(onset)).integers(lo, hi + 1, size=int(onset.sum()))
        in_spell = spell_left > 0
        calendar_month = (params.start.month - 1 + t) % 12 + 1
        season = (params.winter_multiplier if calendar_month in (12, 1, 2)
                  else params.summer_multiplier if calendar_month in (6, 7, 8) else 1.0)
        age_t = age0 + t / 12
        common = person_mult * season * np.where(in_spell, params.spell_multiplier, 1.0) * exp_t
        treated_now = t >= effect_start
        if confounding != 1.0:
            common = np.where(treated_now, common * confounding, common)
        for o in OUTCOMES:
            rate = params.base_rates[o] * common * np.exp(age_slope[o] * np.clip(age_t - 50, -35, 40))
            if rr[o] != 1.0:
                rate = np.where(treated_now, rate * rr[o], rate)
            counts[o][:, t] = every.poisson(rate)
        for o in NEGATIVE_CONTROLS:  # never the planted effect
            slope = params.negative_control_age_slope[o]
            rate = params.negative_control_base_rates[o] * common * np.exp(slope * np.clip(age_t - 50, -35, 40))
            counts[o][:, t] = every_control.poisson(rate)
        spell_left = np.maximum(spell_left - 1, 0).astype(np.int8)

        # Referral this month depends on what the last six months looked like.
        lo6 = max(0, t - 6)
        util6 = sum(w * counts[o][:, lo6:t].sum(axis=1) for o, w in REFERRAL_UTIL_WEIGHTS.items())
        pathway_live = (launch >= 0) & (t >= launch) & has_ltc
        logit = (params.referral_base_logit + params.referral_ltc_logit * has_ltc
                 + params.referral_util_logit * np.log1p(util6) + params.referral_ltc_pathway_logit * pathway_live)
        eligible = (~referred) & (age_t >= 18) & (exp_t >= 1.0)
        new = eligible & (every.random(n) < 1 / (1 + np.exp(-logit)))
        idx = np.flatnonzero(new)
        if len(idx) == 0:
            continue
        referred[idx] = True
        ref = _plan_referrals(params, rng.for_rows(idx), idx, t, ms, pathway_live[idx])
        # Effect of an IAPT-LTC course starts in the month of the first treatment contact, which is
        # the referral month or one or two months after it (the evaluation's post period starts
        # the month after the index month, so it is fully exposed when the index is the referral).
        on_pathway_course = (ref["pathway"] == "Y") & (ref["n_treatment"] >= 2)
        effect_start[idx[on_pathway_course.to_numpy()]] = ref.loc[on_pathway_course, "index_month"].to_numpy()
        ref_rows.append(ref)

    referrals = pd.concat(ref_rows, ignore_index=True) if ref_rows else _plan_referrals(
        params, rng.for_rows(np.zeros(0, dtype=np.int64)), np.zeros(0, dtype=np.int64), 0, 0.0, np.zeros(0, bool))
    # block order (months in order within a block), so that the chunk size changes nothing
    referrals = referrals.iloc[rng.order(referrals["person"].to_numpy())].reset_index(drop=True)
    return Simulation(counts=counts, exposure=exposure, referrals=referrals)


def _plan_referrals(params: SynthParams, rng, idx: np.ndarray, t: int,
                    month_start_day: float, pathway_live: np.ndarray) -> pd.DataFrame:
    k = len(idx)
    referral_day = month_start_day + rng.integers(0, 28, size=k)
    pathway = np.where(pathway_live & (rng.random(k) < params.share_ltc_referrals_to_pathway), "Y", "N")
    not_treated = rng.random(k) < params.share_not_treated
    never_seen = not_treated & (rng.random(k) < 0.4)
    n_treat = np.where(not_treated, 0, 2 + rng.poisson(params.mean_treatment_sessions - 2, size=k))
    assessment_day = referral_day + rng.integers(5, 26, size=k)
    first_treat_day = assessment_day + rng.integers(7, 31, size=k)
    first_month = first_treat_day.astype("int64").astype("datetime64[D]").astype("datetime64[M]")
    index_month = (first_month - np.datetime64(params.start, "M")).astype(int)
    return pd.DataFrame({
        "person": idx, "referral_month": t, "referral_day": referral_day, "pathway": pathway,
        "never_seen": never_seen, "n_treatment": n_treat, "assessment_day": assessment_day,
        "first_treatment_day": first_treat_day, "index_month": np.where(n_treat > 0, index_month, -1),
    })
