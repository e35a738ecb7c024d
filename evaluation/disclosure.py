"""Disclosure control for everything published (below national level): the rules, and the
builders of the published tables that apply them. The report renders what these return.

Rules (methods reference): 0 stays 0; counts 1-7 become "*"; other counts are rounded to the
nearest 5 (halves round up, so 8 -> 10, 12 -> 10, 13 -> 15); rates and means based on 1-7
people are suppressed, and a cohort of 1-7 treated people gets only a notice (no rates, means
or savings); percentages are computed from rounded figures; subgroups of fewer than
MIN_SUBGROUP_TREATED treated people are not estimated; practices with 1-7 treated people are
not named (pooled in one row).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from evaluation.costing import CostingResult
    from evaluation.did import LinearDiDResult, OutcomeEstimates

SUPPRESSED = "*"
MAX_SUPPRESSED = 7
MIN_SUBGROUP_TREATED = 30  # smaller subgroups are not estimated (unstable; disclosure)
SET_COUNT_COLUMNS = ["n_treated", "n_controls", "n_matched_sets"]
SMALL_SUBGROUP_SPLIT = "practice_code"  # the subgroup split whose values identify a site
OTHER_PRACTICES = "other practices (1-7 treated people each)"


def suppress_count(n) -> int | str:
    """Apply the rule to one count. Missing values pass through as None."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return None
    if float(n) != int(n) or n < 0:
        raise ValueError(f"not a count: {n!r}")
    n = int(n)
    if n == 0:
        return 0
    if n <= MAX_SUPPRESSED:
        return SUPPRESSED
    return int(5 * math.floor(n / 5 + 0.5))


def suppress_counts(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Return a copy with the given count columns suppressed (object dtype where needed)."""
    out = df.copy()
    for c in columns:
        out[c] = pd.Series([suppress_count(v) for v in df[c]], index=df.index, dtype=object)
    return out


def suppress_statistic(value, n_people):
    """A rate or mean based on 1-7 people is suppressed; otherwise returned unchanged."""
    if n_people is not None and 1 <= int(n_people) <= MAX_SUPPRESSED:
        return SUPPRESSED
    return value


def rounded_percentage(part, whole) -> float | str:
    """Percentage from rounded counts; suppressed if either count is suppressed."""
    p, w = suppress_count(part), suppress_count(whole)
    if SUPPRESSED in (p, w) or not w:
        return SUPPRESSED
    return 100.0 * p / w


def too_few_to_publish(n_treated: int) -> bool:
    """A cohort of 1-7 treated people: no rates, means or savings are published at all."""
    return 1 <= n_treated <= MAX_SUPPRESSED


# --------------------------------------------------------------------------- published tables


def published_outcome_table(estimates: dict[str, OutcomeEstimates]) -> pd.DataFrame:
    """Per-outcome table: NAIVE next to matched DiD, counts suppressed."""
    t = pd.concat([e.tidy() for e in estimates.values()], ignore_index=True)
    rate_cols = [c for c in t.columns if c.startswith("naive_") or c.startswith("did_")
                 or c.startswith("linear_")]
    for c in rate_cols:
        t[c] = [suppress_statistic(v, n) for v, n in zip(t[c], t["n_treated"])]
    return suppress_counts(t, SET_COUNT_COLUMNS)


def published_costing_table(costing: CostingResult) -> pd.DataFrame:
    """The costing summary: cohort totals use the cohort size rounded to the nearest 5 (an
    exact total divided by the per-person cost would reveal the exact count)."""
    t = costing.tidy()
    n = suppress_count(costing.n_treated)
    cohort = t["quantity"].str.startswith("cohort_")
    if isinstance(n, str):
        t.loc[cohort, ["estimate", "lo95", "hi95"]] = np.nan
    else:
        per = {"cohort_gross_saving": "gross_saving_per_treated_person",
               "cohort_therapy_cost": "therapy_cost_per_treated_person",
               "cohort_net_saving": "net_saving_per_treated_person"}
        base = t.set_index("quantity")
        for q, src in per.items():
            t.loc[t["quantity"] == q, ["estimate", "lo95", "hi95"]] = (
                base.loc[src, ["estimate", "lo95", "hi95"]].to_numpy() * n)
    t = pd.concat([t, pd.DataFrame([{"quantity": "cohort_treated_persons_rounded", "estimate": n,
                                     "lo95": np.nan, "hi95": np.nan}])], ignore_index=True)
    return t


def published_cost_did(cost_did: LinearDiDResult) -> pd.DataFrame:
    return suppress_counts(cost_did.tidy(), SET_COUNT_COLUMNS)


def published_attrition(attrition: pd.DataFrame) -> pd.DataFrame:
    return suppress_counts(attrition.sort_values("step_order"), ["n_persons"])


def published_balance(balance: pd.DataFrame) -> pd.DataFrame:
    counts = [c for c in balance.columns if c.startswith("n_")]
    return suppress_counts(balance, counts)


def published_iapt_outcomes(iapt: pd.DataFrame) -> pd.DataFrame:
    """Talking-therapy outcome counts, with percentages computed from the rounded counts."""
    out = iapt.copy()
    out["percent"] = [rounded_percentage(n, d) for n, d in zip(out["n"], out["denominator"])]
    return suppress_counts(out, ["n", "denominator"])


def published_subgroups(subgroups: pd.DataFrame) -> pd.DataFrame:
    """Savings by subgroup, counts suppressed. A practice code is a site's identifier: a row
    naming a practice with 1-7 treated people would say that so few were treated there, so
    those practices are pooled in one OTHER_PRACTICES row (never estimated: fewer than
    MIN_SUBGROUP_TREATED people each) and their codes are not published."""
    small = ((subgroups["subgroup"] == SMALL_SUBGROUP_SPLIT)
             & subgroups["n_treated"].between(1, MAX_SUPPRESSED))
    out = subgroups[~small]
    if small.any():
        pooled = {c: np.nan for c in subgroups.columns}
        pooled.update(subgroup=SMALL_SUBGROUP_SPLIT, value=OTHER_PRACTICES,
                      n_treated=int(subgroups.loc[small, "n_treated"].sum()), estimated=False)
        # the pooled row last among the practices, the splits in their order
        order = {g: i for i, g in enumerate(pd.unique(subgroups["subgroup"]))}
        out = pd.concat([out, pd.DataFrame([pooled])], ignore_index=True)
        out = out.sort_values("subgroup", key=lambda s: s.map(order), kind="stable")
    return suppress_counts(out.reset_index(drop=True), ["n_treated"])
