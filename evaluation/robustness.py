"""Robustness of each outcome's matched DiD: E-values of the rate ratio (unmeasured confounding,
`evaluation.evalues`) and robust intervals of the event study under bounded violations of
parallel trends (`evaluation.methods.honest`). Saved per outcome beside the estimates and shown
in the report (`evaluation.reporting.robustness`).

The parallel-trends part takes about 4-5 s per outcome with monthly bins (two targets, five Mbar and five M
values); LTCEVAL_HONEST=0 skips it (the E-values are always computed).
"""
from __future__ import annotations

from core.settings import env_value
from evaluation.did import OutcomeEstimates
from evaluation.evalues import evalues_rr
from evaluation.methods.common import json_safe
from evaluation.methods.honest import event_study_sensitivity, honest_block

HONEST_ENV = "LTCEVAL_HONEST"


def honest_enabled() -> bool:
    return (env_value(HONEST_ENV) or "1").strip().lower() not in ("0", "false", "no", "off")


def outcome_robustness(est: OutcomeEstimates, honest: bool | None = None) -> dict:
    """{"outcome", "evalues": EValues, "honest": event_study_sensitivity(...) or None}."""
    d = est.did
    honest = honest_enabled() if honest is None else honest
    return {
        "outcome": est.outcome,
        "evalues": evalues_rr(d.rate_ratio, *d.rate_ratio_ci),
        "honest": event_study_sensitivity(est.event_study) if honest else None,
        "honest_skipped": None if honest else f"{HONEST_ENV}=0",
    }


def robustness_json(rob: dict) -> dict:
    """JSON-ready: E-values and the honest block on the rate-ratio scale."""
    return json_safe({
        "outcome": rob["outcome"],
        "evalues": rob["evalues"].as_dict() | {
            "approximation": "rate ratio used as a risk ratio (VanderWeele and Ding 2017; EValue::evalues.RR)"},
        "honest": (honest_block(rob["honest"], aggregation="matched event study", exponentiate=True)
                   if rob["honest"] is not None else {"skipped": rob["honest_skipped"]}),
    })
