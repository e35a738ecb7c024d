"""E-values (VanderWeele and Ding 2017, Ann Intern Med 167:268-274): the minimum strength of
association, on the risk-ratio scale, that an unmeasured confounder would need with both the
treatment and the outcome, conditional on the measured covariates, to fully explain away an
observed risk ratio (or to move its confidence limit nearer 1 to 1).

For an observed ratio RR > 1,  E = RR + sqrt(RR * (RR - 1));  for RR < 1 the same formula is
applied to 1/RR. The interval's E-value is that of the limit nearer the null, and 1 when the
interval contains the null. ``true`` shifts the null (the ratio the confounder would have to
explain the estimate down to), as ``EValue::evalues.RR(est, lo, hi, true)`` does.

Rate ratios. Our matched DiD reports rate ratios of counts (A&E attendances, admissions, ...)
per person-time. They are used here as risk ratios, as the EValue package's ``evalues.RR``
("risk ratio or rate ratio") and VanderWeele and Ding (2017) do: the bounding factor holds for
a ratio of rates as for a ratio of risks (Ding and VanderWeele 2016, Epidemiology 27:368-377).
This is the approximation stated in the report; no rare-outcome conversion is applied because
the estimate is already a ratio of rates, not an odds or hazard ratio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def evalue_of_ratio(ratio: float, true: float = 1.0) -> float:
    """E-value of one risk (or rate) ratio against the null ``true``; NaN when not finite or
    not positive."""
    if not (math.isfinite(ratio) and math.isfinite(true)) or ratio <= 0 or true <= 0:
        return float("nan")
    shifted = ratio / true
    if shifted < 1:
        shifted = 1 / shifted
    return shifted + math.sqrt(shifted * (shifted - 1))


@dataclass(frozen=True)
class EValues:
    """E-values of an estimate and of its confidence limit nearer the null."""

    estimate: float
    lower: float
    upper: float
    evalue_estimate: float
    evalue_limit: float  # of the limit nearer the null; 1 when the interval contains the null
    true: float = 1.0

    def as_dict(self) -> dict:
        return {"rate_ratio": self.estimate, "lo95": self.lower, "hi95": self.upper,
                "null": self.true, "evalue_estimate": self.evalue_estimate,
                "evalue_ci_limit": self.evalue_limit}


def evalues_rr(estimate: float, lower: float = float("nan"), upper: float = float("nan"),
               true: float = 1.0) -> EValues:
    """E-values of a risk or rate ratio and its interval, as ``EValue::evalues.RR``."""
    if math.isfinite(lower) and math.isfinite(upper) and lower > upper:
        raise ValueError(f"lower limit {lower} is above upper limit {upper}")
    if math.isfinite(lower) and math.isfinite(estimate) and lower > estimate:
        raise ValueError(f"lower limit {lower} is above the estimate {estimate}")
    if math.isfinite(upper) and math.isfinite(estimate) and upper < estimate:
        raise ValueError(f"upper limit {upper} is below the estimate {estimate}")
    point = evalue_of_ratio(estimate, true)
    if not math.isfinite(estimate):
        limit = float("nan")
    elif estimate >= true:  # the lower limit is the one nearer the null
        limit = (float("nan") if not math.isfinite(lower)
                 else 1.0 if lower <= true else evalue_of_ratio(lower, true))
    else:
        limit = (float("nan") if not math.isfinite(upper)
                 else 1.0 if upper >= true else evalue_of_ratio(upper, true))
    return EValues(estimate=float(estimate), lower=float(lower), upper=float(upper),
                   evalue_estimate=point, evalue_limit=limit, true=float(true))
