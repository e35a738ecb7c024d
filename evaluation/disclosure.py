"""Disclosure control for everything published (below national level): the rules, and the
builders of the published tables that apply them. The report renders what these return.

Rules (methods reference; the shared ones are in core.disclosure): 0 stays 0; counts 1-7
become "*"; other counts are rounded to the nearest 5 (halves round up, so 8 -> 10, 12 -> 10,
13 -> 15); rates and means based on 1-7 people are suppressed, others printed to at most three
significant figures and coarsely enough that they do not give away the count behind them
(core.disclosure.published_mean); other estimates (ratios, costs, p-values) to three
significant figures; a cohort of 1-7 treated people gets only a notice (no rates, means
or savings); percentages are computed from rounded figures; subgroups of fewer than
MIN_SUBGROUP_TREATED treated people are not estimated; practices with 1-7 treated people are
not named (pooled in one row).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from evaluation.costing import CostingResult
    from evaluation.did import LinearDiDResult, OutcomeEstimates

from core.disclosure import (MAX_SUPPRESSED, SUPPRESSED, published_mean, round_count,
                             share_of_rounded, significant)

MIN_SUBGROUP_TREATED = 30  # smaller subgroups are not estimated (unstable; disclosure)
SET_COUNT_COLUMNS = ["n_treated", "n_controls", "n_matched_sets"]
SMALL_SUBGROUP_SPLIT = "practice_code"  # the subgroup split whose values identify a site
OTHER_PRACTICES = "other practices (1-7 treated people each)"


def suppress_count(n) -> int | str:
    """Apply the rule to one count. Missing values pass through as None."""
    return round_count(n)


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
    """Percentage from rounded counts (three significant figures); suppressed if either count is."""
    share = share_of_rounded(part, whole)
    return SUPPRESSED if share is None else share


def significant_columns(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """A copy with the given columns' numbers to three significant figures ("*" kept)."""
    out = df.copy()
    for c in columns:
        out[c] = pd.Series([significant(v) for v in df[c]], index=df.index,
                           dtype=float if pd.api.types.is_float_dtype(df[c]) else object)
    return out


def _means(values, counts, unit: float = 1.0) -> list:
    """Means or rates over the people counted in ``counts`` (row by row), published."""
    return [published_mean(v, n, unit) for v, n in zip(values, counts)]


def too_few_to_publish(n_treated: int) -> bool:
    """A cohort of 1-7 treated people: no rates, means or savings are published at all."""
    return 1 <= n_treated <= MAX_SUPPRESSED


# --------------------------------------------------------------------------- published tables


NAIVE_RATE_COLUMNS = ["naive_pre_per_person_year", "naive_post_per_person_year",
                      "naive_change_per_person_year", "naive_change_lo95", "naive_change_hi95"]


def published_outcome_table(estimates: dict[str, OutcomeEstimates]) -> pd.DataFrame:
    """Per-outcome table: NAIVE next to matched DiD, counts suppressed. The NAIVE rates are
    events per person-year over a year of each of the naive cohort's people (``naive_n_treated``,
    every eligible treated person): means of event counts (step 1) over those people, their change
    and its interval at the same precision (the change plus the post rate gives the pre rate)."""
    t = pd.concat([e.tidy() for e in estimates.values()], ignore_index=True)
    naive_n = [e.naive.n_treated for e in estimates.values()]
    t.insert(t.columns.get_loc("naive_pct_change") + 1, "naive_n_treated", naive_n)
    for c in NAIVE_RATE_COLUMNS:
        t[c] = _means(t[c], naive_n)
    rate_cols = [c for c in t.columns if (c.startswith("naive_") or c.startswith("did_")
                 or c.startswith("linear_")) and c != "naive_n_treated"]
    for c in rate_cols:
        n_col = naive_n if c.startswith("naive_") else t["n_treated"]
        t[c] = [suppress_statistic(v, n) for v, n in zip(t[c], n_col)]
    t = significant_columns(t, [c for c in rate_cols + ["pretrend_p"] if c not in NAIVE_RATE_COLUMNS])
    return suppress_counts(t, SET_COUNT_COLUMNS + ["naive_n_treated"])


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
    counts = t["quantity"].isin(["annual_caseload_treated_persons"])  # rounded to 5 already
    for c in ("estimate", "lo95", "hi95"):
        t[c] = [v if k else significant(v) for v, k in zip(t[c], counts)]
    t = pd.concat([t, pd.DataFrame([{"quantity": "cohort_treated_persons_rounded", "estimate": n,
                                     "lo95": np.nan, "hi95": np.nan}])], ignore_index=True)
    return t


COSTING_LINE_ESTIMATES = ["abs_change_per_person_year", "abs_change_lo95", "abs_change_hi95",
                          "saving_gbp_per_person_year", "saving_lo95", "saving_hi95"]


def published_costing_lines(costing: CostingResult) -> pd.DataFrame:
    """Costing by activity: the estimates to three significant figures (unit costs are
    published reference figures, kept as they are)."""
    return significant_columns(costing.lines, [c for c in COSTING_LINE_ESTIMATES if c in costing.lines])


def published_cost_did(cost_did: LinearDiDResult) -> pd.DataFrame:
    """The linear DiD on costed use: its group means (cost per person-year of the treated
    people, of the controls) are means over those people; the estimate to three figures."""
    t = cost_did.tidy()
    for c, n in (("treated_pre_per_person_year", "n_treated"), ("treated_post_per_person_year", "n_treated"),
                 ("control_pre_per_person_year", "n_controls"), ("control_post_per_person_year", "n_controls")):
        t[c] = _means(t[c], t[n])
    t = significant_columns(t, ["did_per_person_year", "did_lo95", "did_hi95", "p_value"])
    return suppress_counts(t, SET_COUNT_COLUMNS)


def published_attrition(attrition: pd.DataFrame) -> pd.DataFrame:
    return suppress_counts(attrition.sort_values("step_order"), ["n_persons"])


def published_balance(balance: pd.DataFrame) -> pd.DataFrame:
    """Covariate means of the treated people and of the controls, before and after matching:
    means over those people; the standardised differences and variance ratios to three figures."""
    t = balance.copy()
    if "n_treated" in t and "n_control" in t:
        t["mean_treated"] = _means(t["mean_treated"], t["n_treated"])
        t["mean_control"] = _means(t["mean_control"], t["n_control"])
        others = ["smd", "variance_ratio", "sd_pooled"]
    else:  # without the counts only three figures can be applied
        others = ["mean_treated", "mean_control", "smd", "variance_ratio", "sd_pooled"]
    t = significant_columns(t, [c for c in others if c in t])
    counts = [c for c in balance.columns if c.startswith("n_")]
    return suppress_counts(t, counts)


def published_iapt_outcomes(iapt: pd.DataFrame) -> pd.DataFrame:
    """Talking-therapy outcome counts, with percentages computed from the rounded counts."""
    out = iapt.copy()
    out["percent"] = [rounded_percentage(n, d) for n, d in zip(out["n"], out["denominator"])]
    return suppress_counts(out, ["n", "denominator"])


EVENT_STUDY_ESTIMATES = ["log_rr", "se", "rate_ratio", "lo95", "hi95", "pretrend_chi2", "pretrend_p"]


def published_event_study(tidy: pd.DataFrame) -> pd.DataFrame:
    """The event studies' coefficients and pre-trend tests, to three significant figures."""
    return significant_columns(tidy, [c for c in EVENT_STUDY_ESTIMATES if c in tidy])


SCENARIO_ESTIMATES = ["net_saving_per_person", "lo95", "hi95", "gross_saving_per_person",
                      "therapy_cost_per_person"]


def published_scenarios(scenarios: pd.DataFrame) -> pd.DataFrame:
    """Sensitivity scenarios, their costs and savings to three significant figures (the
    per-contact scenario prices therapy at its published mean number of contacts, so its
    therapy cost says nothing more about the cohort than its label)."""
    return significant_columns(scenarios, [c for c in SCENARIO_ESTIMATES if c in scenarios])


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
    out = significant_columns(out.reset_index(drop=True),
                              [c for c in SCENARIO_ESTIMATES if c in out])
    return suppress_counts(out, ["n_treated"])
