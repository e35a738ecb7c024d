"""Diagnostics first, results after: the checks a matched evaluation must pass before anyone
reads its effect estimates (issue 16), their thresholds in one place, and the override.

The report opens with the diagnostics table (``diagnostics.json`` and
``tables/diagnostics.csv`` beside it). Four diagnostics are **gates**: balance (largest |SMD|
after matching), variance ratios, equipoise and the expected absolute systematic error (EASE)
of the negative controls. While a gate fails, the report is *blinded*: it shows the
diagnostics, balance, attrition and design, says which gate failed and what to change, and
hides every effect estimate, saving, costing, sensitivity and robustness result (HTML, CSV and
XLSX alike). Two diagnostics **warn** only: the minimum detectable rate ratio (MDRR) and the
event-study pre-trend test. This is OHDSI CohortMethod's practice (Schuemie et al. 2020,
"How confident are we about observational findings in health care: a benchmark study"):
study diagnostics are judged blind to the results.

``LTCEVAL_UNBLIND_REASON`` (a sentence: why the estimates are shown anyway) shows them despite
a failed gate; the reason is printed at the top of the report and in ``diagnostics.json``.

A gate whose input is missing (no balance table, no equipoise figure in the warehouse) cannot
be passed and blinds like a failure, except EASE: until negative-control outcomes exist
(``evaluation/methods/calibration.py``) its row says "not available" and does not blind.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import pandas as pd

from core.contract import outcome_label
from core.disclosure import share_of_rounded
from core.errors import LtcevalError
from core.settings import UNBLIND_REASON_ENV, env_value
from evaluation.power import TARGET_RATE_RATIO

PASS, WARN, FAIL, NOT_AVAILABLE = "pass", "warn", "fail", "not available"


@dataclass(frozen=True)
class Thresholds:
    """Every diagnostic threshold, with the reason for it (``reasons``)."""

    max_abs_smd: float = 0.1
    variance_ratio_low: float = 0.5
    variance_ratio_high: float = 2.0
    preference_low: float = 0.3
    preference_high: float = 0.7
    min_equipoise: float = 0.2
    max_ease: float = 0.25
    ease_gate_max_null_mean_se: float = 0.1
    mdrr_warn_below: float = TARGET_RATE_RATIO
    pretrend_alpha: float = 0.05
    reasons: Mapping[str, str] = field(default_factory=lambda: {
        "max_abs_smd": "CohortMethod's default and the usual rule (Austin 2009): a standardised "
                       "difference of 0.1 or more after matching is a meaningful imbalance",
        "variance_ratio": "Rubin (2001), Austin (2009): a ratio of variances outside 0.5-2 means the "
                          "groups differ in spread even where their means agree",
        "equipoise": "CohortMethod's default (Walker et al. 2013): fewer than 20% of people with a "
                     "preference score in 0.3-0.7 means treated and comparison people are so "
                     "different that the comparison rests on a few atypical people",
        "ease": "CohortMethod's default: negative controls (no true effect) whose estimates are on "
                "average more than 0.25 off on the log scale show systematic error no interval covers",
        "ease_gate_max_null_mean_se": "EASE gates only when the negative controls pin the null's mean "
                "down to a standard error of 0.1 (EASE 0.25 then lies 2.5 standard errors from 0); with "
                "fewer or rarer controls, as at 20,000 people (standard error about 0.13), EASE is mostly "
                "their noise: above 0.25 in about 1 run in 10 with no systematic error at all "
                "(benchmarks/monte_carlo.py), so it warns and the calibrated intervals carry that "
                "uncertainty instead",
        "mdrr": "the business case asks whether the service cuts use by about 15% (rate ratio "
                f"{TARGET_RATE_RATIO}, evaluation.power.TARGET_RATE_RATIO); a cohort that cannot detect "
                "that cannot tell a null result from an effect the case depends on. CohortMethod warns "
                "at an MDRR above 10, which suits rare drug outcomes, not a 15% target. Warns only: "
                "an underpowered estimate is still unbiased",
        "pretrend": "the event study's joint Wald test of the pre-index months (evaluation.did) at "
                    "the conventional 5%; warns only, as the test has little power and the "
                    "parallel-trends sensitivity (Rambachan-Roth) gives the robust interval",
    })

    def as_json(self) -> dict:
        d = asdict(self)
        d["reasons"] = dict(self.reasons)
        return d


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class DiagnosticRow:
    diagnostic: str  # e.g. "Balance: largest |SMD| after matching"
    outcome: str  # the outcome label, "" for the cohort's diagnostics
    value: str  # as published
    threshold: str
    status: str  # pass / warn / fail / not available
    gate: bool  # a failing gate blinds the report
    blocks: bool  # this row blinds the report (a failed gate, or one that could not be checked)
    action: str  # what to change when it fails or warns; "" when it passes


@dataclass(frozen=True)
class Diagnostics:
    rows: tuple[DiagnosticRow, ...]
    unblind_reason: str | None = None  # LTCEVAL_UNBLIND_REASON

    @property
    def failed_gates(self) -> list[DiagnosticRow]:
        return [r for r in self.rows if r.blocks]

    @property
    def blinded(self) -> bool:
        """Estimates hidden: a gate failed and no override reason was given."""
        return bool(self.failed_gates) and not self.unblind_reason

    @property
    def overridden(self) -> bool:
        return bool(self.failed_gates) and bool(self.unblind_reason)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])

    def as_json(self) -> dict:
        """What ``diagnostics.json`` holds (published values only)."""
        return {
            "blinded": self.blinded,
            "failed_gates": [r.diagnostic for r in self.failed_gates],
            "override": ({"reason": self.unblind_reason, "variable": UNBLIND_REASON_ENV}
                         if self.overridden else None),
            "thresholds": THRESHOLDS.as_json(),
            "rows": [asdict(r) for r in self.rows],
        }


def _row(diagnostic, value, threshold, status, gate, action, outcome="") -> DiagnosticRow:
    blocks = gate and status in (FAIL, NOT_AVAILABLE)
    return DiagnosticRow(diagnostic, outcome, value, threshold, status, gate, blocks,
                         "" if status == PASS else action)


BALANCE_ACTION = ("Change the matching (dbt vars in dbt_project.yml): keep matching_refine true and lower "
                  "matching_refine_target_smd, narrow matching_caliper_sd, or add terms of the covariates named "
                  "to matching_ps_extra_terms or matching_exact; or evaluate a larger population (more months "
                  "or sites).")
VARIANCE_ACTION = ("The spread of the covariates named differs between the groups: add squared or log terms of "
                   "them to the propensity model (matching_ps_extra_terms), match on them by distance "
                   "(matching_distance_covariates) or refine the matching (matching_refine).")
EQUIPOISE_ACTION = ("Treated and comparison people differ so much that the propensity model nearly separates "
                    "them: check the comparison pool (comparison_design, eligibility) and the covariates; a "
                    "comparison group more like the treated people is needed.")
EASE_ACTION = ("The negative-control outcomes show systematic error: check the comparison group, the windows "
               "and the covariates before reading the estimates.")
EASE_IMPRECISE_ACTION = ("The negative controls are too few or too rare to tell systematic error from their "
                         "own noise: the calibrated intervals allow for it; a larger population or more "
                         "negative controls (seed negative_control_codes) would settle it.")
MDRR_ACTION = ("This cohort cannot detect a 15% reduction in this outcome: an interval including 1 is not "
               "evidence of no effect. Pool more months or sites (`ltceval plan` gives the treated people needed).")
PRETREND_ACTION = ("Treated people's use and their controls' diverged before the index: read this outcome with "
                   "its parallel-trends sensitivity and consider a longer selection window "
                   "(selection_window_months).")


def _matched_after(balance: pd.DataFrame) -> pd.DataFrame:
    """Balance after matching of the covariates matched on (and the propensity logit): those
    shown only for reference (matched_on false, the baseline-year counts whose level
    differences the person fixed effects remove) are not gated, as in the GX suite."""
    after = balance[balance["stage"] == "after"]
    if "matched_on" in after:
        after = after[after["matched_on"].astype(bool)]
    return after


def balance_rows(balance: pd.DataFrame | None, t: Thresholds = THRESHOLDS) -> list[DiagnosticRow]:
    smd_name = "Balance: largest |SMD| after matching"
    vr_name = "Balance: variance ratios after matching"
    smd_threshold = f"below {t.max_abs_smd:g}"
    vr_threshold = f"within {t.variance_ratio_low:g}-{t.variance_ratio_high:g}"
    after = None if balance is None else _matched_after(balance)
    if after is None or not len(after):
        missing = "no balance table (mart_balance)"
        return [_row(smd_name, missing, smd_threshold, NOT_AVAILABLE, True, BALANCE_ACTION),
                _row(vr_name, missing, vr_threshold, NOT_AVAILABLE, True, VARIANCE_ACTION)]
    smd = after["smd"].abs()
    over = after[smd >= t.max_abs_smd]
    value = f"{smd.max():.3f}"
    if len(over):
        value += " (" + ", ".join(f"{c} {s:+.3f}" for c, s in zip(over["covariate"], over["smd"])) + ")"
    rows = [_row(smd_name, value, smd_threshold, FAIL if len(over) else PASS, True, BALANCE_ACTION)]
    vr = after["variance_ratio"].astype(float)
    known = vr[vr.notna()]
    out = after[vr.notna() & ((vr < t.variance_ratio_low) | (vr > t.variance_ratio_high))]
    if not len(known):
        rows.append(_row(vr_name, "not computed", vr_threshold, NOT_AVAILABLE, True, VARIANCE_ACTION))
    else:
        value = f"{known.min():.2f} to {known.max():.2f}"
        if len(out):
            value += " (outside: " + ", ".join(f"{c} {v:.2f}" for c, v in zip(out["covariate"], out["variance_ratio"])) + ")"
        rows.append(_row(vr_name, value, vr_threshold, FAIL if len(out) else PASS, True, VARIANCE_ACTION))
    return rows


def equipoise_row(equipoise: Mapping | None, t: Thresholds = THRESHOLDS) -> DiagnosticRow:
    """``equipoise``: evaluation.methods.matching.equipoise's counts (n_rows, n_in_range), of the
    whole pool the propensity model scored. Published as a share of the rounded counts."""
    name = "Equipoise: share with preference score in " f"{t.preference_low:g}-{t.preference_high:g}"
    threshold = f"at least {t.min_equipoise:g}"
    if not equipoise or not equipoise.get("n_rows"):
        return _row(name, "not computed (no pool_equipoise in the warehouse)", threshold, NOT_AVAILABLE, True,
                    EQUIPOISE_ACTION)
    share = equipoise["n_in_range"] / equipoise["n_rows"]
    published = share_of_rounded(equipoise["n_in_range"], equipoise["n_rows"], scale=1.0)
    value = published if isinstance(published, str) else f"{published:.2f}"
    return _row(name, value, threshold, PASS if share >= t.min_equipoise else FAIL, True, EQUIPOISE_ACTION)


def ease_row(ease: float | None, t: Thresholds = THRESHOLDS, null_mean_se: float | None = None) -> DiagnosticRow:
    """EASE, a gate when the negative controls estimate the null's mean precisely enough
    (``null_mean_se`` at most ``t.ease_gate_max_null_mean_se``), otherwise a warning."""
    name = "Expected absolute systematic error (negative controls)"
    threshold = f"at most {t.max_ease:g}"
    if ease is None or not math.isfinite(ease):
        # not a gate failure: no negative controls, or too few estimable to fit a null
        return DiagnosticRow(name, "", "not available (too few estimable negative-control outcomes)", threshold,
                             NOT_AVAILABLE, True, False, "")
    if null_mean_se is not None and math.isfinite(null_mean_se) and null_mean_se > t.ease_gate_max_null_mean_se:
        status = PASS if ease <= t.max_ease else WARN
        return DiagnosticRow(name, "", f"{ease:.2f} (imprecise: the null's mean has standard error {null_mean_se:.2f})",
                             f"{threshold}; a gate when that standard error is at most "
                             f"{t.ease_gate_max_null_mean_se:g}", status, False, False,
                             "" if status == PASS else EASE_IMPRECISE_ACTION)
    return _row(name, f"{ease:.2f}", threshold, PASS if ease <= t.max_ease else FAIL, True, EASE_ACTION)


def mdrr_rows(mdrr: pd.DataFrame | None, outcomes, t: Thresholds = THRESHOLDS) -> list[DiagnosticRow]:
    """The MDRR (evaluation.power.mdrr_column) per outcome: a reduction, so it warns when it is
    further from 1 than the target (below 0.85) or when no reduction is detectable."""
    name = "Minimum detectable rate ratio (80% power)"
    threshold = f"at least {t.mdrr_warn_below:g} (detects a {1 - t.mdrr_warn_below:.0%} reduction)"
    by = {} if mdrr is None else {r.outcome: r.mdrr for r in mdrr.itertuples()}
    rows = []
    for o in outcomes:
        label = outcome_label(o)
        if o not in by:
            rows.append(_row(name, "not computed", threshold, NOT_AVAILABLE, False, MDRR_ACTION, label))
            continue
        m = by[o]
        if m is None or not math.isfinite(m):
            rows.append(_row(name, "none detectable", threshold, WARN, False, MDRR_ACTION, label))
            continue
        rows.append(_row(name, f"{m:.2f}", threshold, PASS if round(m, 2) >= t.mdrr_warn_below else WARN,
                         False, MDRR_ACTION, label))
    return rows


def pretrend_rows(pretrend: Mapping[str, float], t: Thresholds = THRESHOLDS) -> list[DiagnosticRow]:
    """The event study's joint pre-period test (evaluation.did.EventStudyResult.pretrend_p)."""
    name = "Pre-trend test (event study, months before the index)"
    threshold = f"p at least {t.pretrend_alpha:g}"
    rows = []
    for o, p in pretrend.items():
        label = outcome_label(o)
        if p is None or not math.isfinite(p):
            rows.append(_row(name, "not estimable", threshold, NOT_AVAILABLE, False, PRETREND_ACTION, label))
        else:
            rows.append(_row(name, f"p = {p:.2f}" if p >= 0.01 else "p < 0.01", threshold,
                             PASS if p >= t.pretrend_alpha else WARN, False, PRETREND_ACTION, label))
    return rows


def build_diagnostics(balance: pd.DataFrame | None, equipoise: Mapping | None, mdrr: pd.DataFrame | None,
                      pretrend: Mapping[str, float], ease: float | None = None,
                      unblind_reason: str | None = None, t: Thresholds = THRESHOLDS,
                      null_mean_se: float | None = None) -> Diagnostics:
    """The diagnostics rows from what the pipeline already has: mart_balance, the pool's
    equipoise counts, the saved MDRR frames, the event studies' pre-trend p-values (outcome ->
    p, in report order) and EASE when negative controls exist."""
    rows = [*balance_rows(balance, t), equipoise_row(equipoise, t), ease_row(ease, t, null_mean_se),
            *mdrr_rows(mdrr, list(pretrend), t), *pretrend_rows(pretrend, t)]
    return Diagnostics(tuple(rows), unblind_reason)


_SWITCH_WORDS = {"1", "0", "y", "yes", "true", "on", "ok", "unblind", "override", "force"}
MIN_REASON_CHARACTERS = 10


def unblind_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """The override's reason (``LTCEVAL_UNBLIND_REASON``), or None when unset. A value that is
    not a reason (blank, a switch such as 1 or yes, a word or two) is refused: the report
    prints the reason, so that readers know why estimates of a design that failed its
    diagnostics are shown."""
    value = env_value(UNBLIND_REASON_ENV, environ)
    if value is None:
        return None
    reason = " ".join(value.split())
    if reason.lower() in _SWITCH_WORDS or len(reason) < MIN_REASON_CHARACTERS:
        raise LtcevalError(
            f"{UNBLIND_REASON_ENV} is set to {value.strip()[:40]!r}, which is not a reason: it must say in words "
            "why the effect estimates are shown although a diagnostic gate failed (it is printed in the "
            "report), e.g. \"pilot of 3,000 people: balance below 0.1 is not attainable\"; unset it to "
            "publish the blinded report")
    return reason
