"""The report's negative-control section: each negative control's rate ratio, the empirical
null they give (the design's systematic error), EASE, and each outcome's interval and p-value
before and after calibration (`evaluation.calibration`). Figures are published as the
outcome table's are: rate ratios and p-values to three significant figures, suppressed when
based on 1-7 treated people."""
from __future__ import annotations

import math

import pandas as pd

from core.contract import outcome_label
from core.disclosure import significant
from evaluation.calibration import Calibration
from evaluation.disclosure import suppress_statistic
from evaluation.reporting.formatting import fmt_ci, num


def _ratio(value, n_treated):
    v = suppress_statistic(value, n_treated)
    return v if isinstance(v, str) else significant(v)


def published_calibration(cal: Calibration, controls: dict, outcomes: dict) -> pd.DataFrame:
    """One row per negative control and per outcome: rate ratio and 95% CI, p-value, and for
    the outcomes the calibrated ones; the null's mean and sd (log scale) and EASE repeated."""
    rows = []
    null_mean = None if cal.null is None else significant(cal.null.mean)
    null_sd = None if cal.null is None else significant(cal.null.sd)
    ease = None if cal.ease is None else significant(cal.ease)
    for name, est in controls.items():
        d = est.did
        why = cal.controls[name].get("not_used_because")
        if why:  # too rare to trust: its estimate (often degenerate) is not published
            rows.append({"kind": "negative_control", "name": name, "rate_ratio": math.nan, "lo95": math.nan,
                         "hi95": math.nan, "p_value": math.nan, "used_in_null": False, "not_used_because": why})
            continue
        rows.append({"kind": "negative_control", "name": name, "rate_ratio": _ratio(d.rate_ratio, d.n_treated),
                     "lo95": _ratio(d.rate_ratio_ci[0], d.n_treated), "hi95": _ratio(d.rate_ratio_ci[1], d.n_treated),
                     "p_value": _ratio(d.p_value, d.n_treated), "used_in_null": True, "not_used_because": ""})
    for name, c in cal.outcomes.items():
        n = outcomes[name].did.n_treated
        rows.append({"kind": "outcome", "name": name, "rate_ratio": _ratio(c.rate_ratio, n),
                     "lo95": _ratio(c.ci[0], n), "hi95": _ratio(c.ci[1], n), "p_value": _ratio(c.p_value, n),
                     "calibrated_rate_ratio": _ratio(c.calibrated_rate_ratio, n),
                     "calibrated_lo95": _ratio(c.calibrated_ci[0], n), "calibrated_hi95": _ratio(c.calibrated_ci[1], n),
                     "calibrated_p_value": _ratio(c.calibrated_p_value, n)})
    t = pd.DataFrame(rows)
    t["null_mean_log_rr"], t["null_sd_log_rr"], t["ease"] = null_mean, null_sd, ease
    return t


def _ci_text(lo, hi) -> str:
    if isinstance(lo, str) or isinstance(hi, str):
        return "*"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return fmt_ci(lo, hi)


def calibration_section(cal: Calibration | None, controls: dict | None, outcomes: dict) -> dict | None:
    """Template values; None when no negative controls were estimated."""
    if cal is None or not controls:
        return None
    t = published_calibration(cal, controls, outcomes)
    nc = t[t["kind"] == "negative_control"]
    control_rows = [[outcome_label(r.name), "*" if isinstance(r.rate_ratio, str) else
                     ("n/a" if not math.isfinite(r.rate_ratio) else num(r.rate_ratio)),
                     _ci_text(r.lo95, r.hi95), "yes" if r.used_in_null else f"no ({r.not_used_because})"]
                    for r in nc.itertuples()]
    oc = t[t["kind"] == "outcome"]
    outcome_rows = [[outcome_label(r.name), f"{num(r.rate_ratio)} ({_ci_text(r.lo95, r.hi95)})",
                     num(r.p_value, 3), f"{num(r.calibrated_rate_ratio)} ({_ci_text(r.calibrated_lo95, r.calibrated_hi95)})",
                     num(r.calibrated_p_value, 3)] for r in oc.itertuples()]
    null_text = None
    if cal.null is not None:
        null_text = (f"Systematic error estimated from {cal.null.n_controls} negative controls: mean "
                     f"{num(significant(cal.null.mean), 3)} and standard deviation {num(significant(cal.null.sd), 3)} "
                     f"on the log rate-ratio scale (a bias of about {num(significant(math.exp(cal.null.mean)))} "
                     f"as a ratio), the mean itself uncertain by a standard error of {num(significant(cal.null.mean_se), 3)}; "
                     f"expected absolute systematic error (EASE) {num(significant(cal.ease), 3)}. The calibrated "
                     f"intervals and p-values allow for both the systematic error and the uncertainty of its "
                     f"estimate, so with few or imprecise negative controls they are wide.")
    return {"control_rows": control_rows, "outcome_rows": outcome_rows, "null_text": null_text,
            "notes": list(cal.notes)}


def calibrated_cells(cal: Calibration | None, controls: dict | None, outcomes: dict) -> list[str]:
    """The outcome table's calibrated column, in the outcomes' order: "rr (lo to hi)", or why
    there is none."""
    if cal is None or not controls:
        return ["not estimated (no negative controls)"] * len(outcomes)
    if not cal.outcomes:
        return ["not calibrated (see Negative controls)"] * len(outcomes)
    t = published_calibration(cal, controls, outcomes)
    by = {r.name: r for r in t[t["kind"] == "outcome"].itertuples()}
    cells = []
    for o in outcomes:
        r = by.get(o)
        cells.append("n/a" if r is None else
                     f"{num(r.calibrated_rate_ratio)} ({_ci_text(r.calibrated_lo95, r.calibrated_hi95)})")
    return cells
