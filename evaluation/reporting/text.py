"""Plain-text summaries of estimation results (console, notebooks, the report's event-study
list): `describe(result)`. The estimators return data only; their prose lives here."""
from __future__ import annotations

from functools import singledispatch

import numpy as np

from core.contract import outcome_label
from evaluation.costing import CostingResult
from evaluation.did import (CountDiDResult, EventStudyResult, LinearDiDResult, NaiveResult,
                            OutcomeEstimates)
from evaluation.methods.staggered import (AGGREGATIONS, AggregatedATT, PretrendTest,
                                          StaggeredDiDResult)
from evaluation.reporting.formatting import fmt_ci


def _ci(lo, hi, digits: int) -> str:
    return f"({fmt_ci(lo, hi, digits)})"


@singledispatch
def describe(result) -> str:
    """One paragraph (or a few lines) describing an estimation result."""
    raise TypeError(f"no text summary for {type(result).__name__}")


@describe.register
def _(r: CountDiDResult) -> str:
    return (
        f"{outcome_label(r.outcome)}: matched DiD rate ratio {r.rate_ratio:.3f} "
        f"{_ci(*r.rate_ratio_ci, 3)}, p={r.p_value:.3g}; absolute change "
        f"{r.abs_change_per_py:+.3f} per treated person-year {_ci(*r.abs_change_ci, 3)} "
        f"(treated {r.n_treated}, controls {r.n_controls}, sets {r.n_sets}). "
        f"{r.method}"
    )


@describe.register
def _(r: LinearDiDResult) -> str:
    return (
        f"{outcome_label(r.outcome)}: linear matched DiD {r.estimate_per_py:+.2f} per treated "
        f"person-year {_ci(*r.ci, 2)}, p={r.p_value:.3g} (treated {r.treated_pre_py:.2f}"
        f" -> {r.treated_post_py:.2f}; controls {r.control_pre_py:.2f} -> "
        f"{r.control_post_py:.2f}). {r.method}"
    )


@describe.register
def _(r: EventStudyResult) -> str:
    if np.isnan(r.pretrend_p):
        return (f"{outcome_label(r.outcome)} event study: not estimable (no events in the "
                f"reference period in one group).")
    verdict = "no evidence against" if r.pretrend_p >= 0.05 else "evidence against"
    gaps = ""
    if r.not_estimable:
        gaps = (f" Not estimable (no events among treated people or controls): bins starting "
                f"{', '.join(map(str, r.not_estimable))}.")
    bins = "monthly" if r.bin_months == 1 else f"{r.bin_months}-month bins"
    return (
        f"{outcome_label(r.outcome)} event study ({bins}): joint pre-trend Wald chi2({r.pretrend_df}) = "
        f"{r.pretrend_chi2:.2f}, p = {r.pretrend_p:.3f} ({verdict} parallel pre-trends)."
        f"{gaps}"
    )


@describe.register
def _(r: NaiveResult) -> str:
    return (
        f"NAIVE {outcome_label(r.outcome)}: {r.pre_rate_py:.3f} -> {r.post_rate_py:.3f} per "
        f"person-year ({r.pct_change:+.0%}), change {r.change_per_py:+.3f} "
        f"{_ci(*r.change_ci, 3)}. {r.label}."
    )


@describe.register
def _(r: OutcomeEstimates) -> str:
    return "\n".join(describe(x) for x in (r.naive, r.did, r.linear_did, r.event_study))


@describe.register
def _(c: CostingResult) -> str:
    lo, hi = c.net_saving_per_person_ci
    return (
        f"Net saving per treated person GBP {c.net_saving_per_person:,.0f} "
        f"(95% CI {lo:,.0f} to {hi:,.0f}) = gross GBP {c.gross_saving_per_person:,.0f} "
        f"minus therapy GBP {c.therapy_cost_per_person:,.0f}; ROI {c.roi:+.2f} "
        f"({c.roi_ci[0]:+.2f} to {c.roi_ci[1]:+.2f}). Costed: {', '.join(c.costed_outcomes)}. "
        f"{c.interval_method}"
    )


@describe.register
def _(t: PretrendTest) -> str:
    if t.n_cells == 0:
        return "Pre-trend test: no pre-treatment cells."
    return (f"Pre-trend test (all {t.n_cells} pre-treatment ATT(g,t) = 0): "
            f"chi2({t.df}) = {t.statistic:.2f}, p = {t.p_value:.3g}")


@describe.register
def _(a: AggregatedATT) -> str:
    lines = [f"{a.kind} aggregation of ATT(g,t) for {a.outcome}: "
             f"{a.estimate:+.4f} (SE {a.se:.4f}, 95% CI {_ci(*a.ci, 4)}). "
             f"Weights: {a.weights}"]
    if not a.table.empty:
        key = a.table.columns[0]
        band = "cband_lo" in a.table.columns
        for r in a.table.itertuples(index=False):
            d = r._asdict()
            s = (f"  {key} {d[key]:>5}: {d['estimate']:+.4f} (SE {d['se']:.4f}) "
                 f"95% CI {_ci(d['ci_lo'], d['ci_hi'], 4)}")
            if band:
                s += f", uniform band {_ci(d['cband_lo'], d['cband_hi'], 4)}"
            lines.append(s)
    return "\n".join(lines)


@describe.register
def _(r: StaggeredDiDResult) -> str:
    ctl = "never-treated" if r.control == "never" else "not-yet-treated (and never-treated)"
    est = ("doubly robust (logit propensity, OLS outcome regression) on "
           + ", ".join(r.covariates)) if r.covariates else "2x2 DiD of means"
    boot = (f"{r.bootstrap} multiplier-bootstrap draws ({r.multiplier} weights, "
            f"seed {r.seed}) for uniform bands") if r.bootstrap else "no bootstrap"
    lines = [
        f"Group-time ATTs (Callaway & Sant'Anna 2021) for {r.outcome}: {len(r.cells)} "
        f"cells, {r.n_units} units in {len(r.cohorts)} treated cohorts "
        f"({', '.join(f'{g}: {r.cohort_sizes[g]}' for g in r.cohorts)}) and "
        f"{r.cohort_sizes.get(0, 0)} never treated; controls {ctl}; {est}; varying base "
        f"period; analytic SEs clustered by {'unit' if r.n_clusters == r.n_units else 'cluster'} "
        f"({r.n_clusters}); {boot}.",
    ]
    for c in r.cells.itertuples(index=False):
        flag = "post" if c.post else "pre "
        lines.append(f"  g={c.group} t={c.time} (base {c.base_period}, e={c.event_time:+d}, {flag}): "
                     f"{c.att:+.4f} (SE {c.se:.4f}) 95% CI {_ci(c.ci_lo, c.ci_hi, 4)}"
                     f"  [n treated {c.n_treated}, control {c.n_control}]")
    lines.append(describe(r.pretrend))
    for kind in AGGREGATIONS:
        a = r.aggregate(kind)
        lines.append(f"{kind:>8}: {a.estimate:+.4f} (SE {a.se:.4f}, 95% CI {_ci(*a.ci, 4)})")
    lines.extend(f"Note: {n}" for n in r.notes)
    return "\n".join(lines)
