"""Empirical calibration of the outcomes' rate ratios against the negative controls.

The negative-control outcomes (`core.contract.NEGATIVE_CONTROL_OUTCOMES`; why each:
docs/negative-controls.md) are estimated exactly as the outcomes (the matched Poisson DiD).
The therapy does not change them, so their log rate ratios scatter around 0 only by chance and
by the design's systematic error (residual confounding, regression to the mean the matching
missed). `evaluation.methods.calibration` (OHDSI EmpiricalCalibration's methods) fits that
error's distribution (the empirical null) and gives, for each outcome, an interval and a
p-value that allow for it, and the expected absolute systematic error (EASE) of the design.
The calibrated intervals and p-values here also allow for the error of the null's fitted mean:
R's asymptotic calibration treats the fitted null as known, which with five to seven controls it
is not. The outcome's estimate and the null's mean are estimated on the same matched people and
err together (five controls are outpatient sub-specialties, part of the outpatient outcome), so
the standard error of (estimate - null mean) subtracts their covariance, from the cluster
influence values of the DiDs (`null_error_se`,
`evaluation.methods.calibration.allowing_for_the_correlated_null_s_error`); without influence
values (estimates saved before they were kept) it falls back to sqrt(se^2 + mean_se^2)
(`evaluation.methods.calibration.allowing_for_the_null_s_error`) and says so in the notes.

With fewer usable negative controls than the method needs, nothing is calibrated and the
reason is kept (`Calibration.notes`); the report then says so instead of showing calibrated
figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.contract import outcome_label
from evaluation.did import CountDiDResult, OutcomeEstimates
from evaluation.methods import calibration as ec

CI_WIDTH = 0.95
# A negative control enters the null only with at least this many events in the analysed panel
# (treated people and controls, every period): the cluster-robust standard error of a rarer
# outcome is too small, so it would pass its own noise off as systematic error (Monte Carlo at
# 20,000 people, about 600 matched sets: 95% intervals of the two rarest controls, with about 70
# and 10 events, covered their true ratio 0.78 and 0.59 of the time).
MIN_EVENTS = 100


@dataclass(frozen=True)
class CalibratedOutcome:
    outcome: str
    rate_ratio: float
    ci: tuple[float, float]  # uncalibrated (the matched DiD's)
    p_value: float
    calibrated_rate_ratio: float
    calibrated_ci: tuple[float, float]
    calibrated_p_value: float


@dataclass(frozen=True)
class Calibration:
    controls: dict[str, dict]  # negative control -> rate ratio, CI, log rate ratio, its SE
    null: "ec.EmpiricalNull | None"
    model: "ec.SystematicErrorModel | None"
    ease: float | None
    outcomes: dict[str, CalibratedOutcome]
    notes: tuple[str, ...] = field(default=())

    @property
    def available(self) -> bool:
        return self.null is not None

    def summary(self) -> dict:
        """JSON-ready: the null, EASE, each control's and each outcome's figures."""
        return {
            "negative_controls": self.controls,
            "null": None if self.null is None else {"mean": self.null.mean, "sd": self.null.sd,
                                                    "mean_se": self.null.mean_se,
                                                    "controls_used": self.null.n_controls},
            "ease": self.ease,
            "outcomes": {o: {"rate_ratio": c.rate_ratio, "ci95": list(c.ci), "p_value": c.p_value,
                             "calibrated_rate_ratio": c.calibrated_rate_ratio,
                             "calibrated_ci95": list(c.calibrated_ci),
                             "calibrated_p_value": c.calibrated_p_value}
                         for o, c in self.outcomes.items()},
            "notes": list(self.notes),
        }


def _first(x) -> float:
    """The one value of a scalar or length-1 result."""
    return float(np.atleast_1d(x)[0])


def _usable(est: OutcomeEstimates) -> bool:
    d = est.did
    return math.isfinite(d.log_rate_ratio) and math.isfinite(d.se_log_rate_ratio) and d.se_log_rate_ratio > 0


def _why_not_used(est: OutcomeEstimates, events: float | None) -> str | None:
    if events is not None and events < MIN_EVENTS:
        return f"fewer than {MIN_EVENTS} events in the matched cohort"
    if not _usable(est):
        return "no finite rate ratio"
    return None


def _influence(d: CountDiDResult) -> pd.Series | None:
    """The DiD's scaled cluster influence values of its log rate ratio, or None when it has none
    (results pickled before they were kept) or they do not give its standard error."""
    v = getattr(d, "log_rate_ratio_influence", None)
    if v is None or len(v) == 0 or not np.all(np.isfinite(v.to_numpy(dtype=float))):
        return None
    if not math.isclose(float(np.sqrt(np.sum(v.to_numpy(dtype=float) ** 2))), d.se_log_rate_ratio, rel_tol=1e-6):
        return None
    return v


def influence_covariance(results: list[CountDiDResult]) -> np.ndarray | None:
    """Cluster-robust covariance matrix of the results' log rate ratios, sum_c v_i(c) v_j(c) over
    the union of their clusters (a cluster a fit left out, no events in it, contributes 0); None
    when one of them has no influence values. The results must come from one panel."""
    vs = [_influence(d) for d in results]
    if any(v is None for v in vs):
        return None
    M = pd.concat([v.rename(i) for i, v in enumerate(vs)], axis=1).fillna(0.0).to_numpy()
    return M.T @ M


def null_error_se(outcome: CountDiDResult, controls: list[CountDiDResult], null: "ec.EmpiricalNull"
                  ) -> tuple[float, bool]:
    """(standard error to calibrate ``outcome`` with, whether it allows for the correlation).
    ``controls``: the negative controls' DiDs the null was fitted on, in the order given to
    `ec.fit_null`. Correlation-aware (`ec.allowing_for_the_correlated_null_s_error`, the joint
    covariance of the outcome and the controls from their cluster influence values) when every
    one has influence values; else the independent formula `ec.allowing_for_the_null_s_error`."""
    V = influence_covariance([outcome, *controls])
    if V is None:
        return float(ec.allowing_for_the_null_s_error(outcome.se_log_rate_ratio, null)), False
    se = ec.allowing_for_the_correlated_null_s_error(
        outcome.se_log_rate_ratio, null, [c.log_rate_ratio for c in controls],
        [c.se_log_rate_ratio for c in controls], V[0, 1:], V[1:, 1:])
    return se, True


def calibrate_outcomes(controls: dict[str, OutcomeEstimates], outcomes: dict[str, OutcomeEstimates],
                       events: dict[str, float] | None = None) -> Calibration:
    """Fit the empirical null on the usable negative controls (a finite rate ratio and at least
    `MIN_EVENTS` events, when ``events`` gives their counts) and calibrate every outcome."""
    events = events or {}
    why = {c: _why_not_used(e, events.get(c)) for c, e in controls.items()}
    rows = {c: {"label": outcome_label(c), "rate_ratio": e.did.rate_ratio, "ci95": list(e.did.rate_ratio_ci),
                "log_rate_ratio": e.did.log_rate_ratio, "se_log_rate_ratio": e.did.se_log_rate_ratio,
                "usable": why[c] is None, "not_used_because": why[c]}
            for c, e in controls.items()}
    usable = [c for c in controls if why[c] is None]
    notes = [f"{outcome_label(c)}: {why[c]}, left out of the null" for c in controls if why[c] is not None]
    log_rr = [controls[c].did.log_rate_ratio for c in usable]
    se = [controls[c].did.se_log_rate_ratio for c in usable]
    try:
        null = ec.fit_null(log_rr, se)
        model = ec.fit_systematic_error_model(log_rr, se, [0.0] * len(log_rr))
    except ValueError as e:  # too few usable controls
        notes.append(f"not calibrated: {e}")
        return Calibration(rows, None, None, None, {}, tuple(notes))
    calibrated = {}
    fell_back = []
    for o, est in outcomes.items():
        d = est.did
        if not _usable(est):
            notes.append(f"{outcome_label(o)}: no finite rate ratio to calibrate")
            continue
        # the interval and p-value also allow for the error of the null's fitted mean, which
        # with a handful of controls is as large as an outcome's own standard error, less the
        # covariance of the two (the same people's activity)
        se, correlated = null_error_se(d, [controls[c].did for c in usable], null)
        if not correlated:
            fell_back.append(outcome_label(o))
        ci = ec.calibrate_confidence_interval(d.log_rate_ratio, se, model, ci_width=CI_WIDTH)
        p = ec.calibrate_p(null, d.log_rate_ratio, se)
        calibrated[o] = CalibratedOutcome(
            outcome=o, rate_ratio=d.rate_ratio, ci=tuple(d.rate_ratio_ci), p_value=d.p_value,
            calibrated_rate_ratio=math.exp(_first(ci.log_rr)),
            calibrated_ci=(math.exp(_first(ci.log_lb)), math.exp(_first(ci.log_ub))),
            calibrated_p_value=_first(p))
    if fell_back:
        notes.append("no cluster influence values for " + ", ".join(fell_back) + " or the controls "
                     "(estimates saved before they were kept): their calibrated standard error "
                     "takes the outcome and the null's mean as independent, sqrt(se^2 + mean_se^2), "
                     "which over-states it when they are correlated")
    return Calibration(rows, null, model, float(ec.expected_absolute_systematic_error(null)), calibrated, tuple(notes))
