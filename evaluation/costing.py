"""Business-case arithmetic: price the DiD changes in utilisation and set them against the
cost of therapy.

Gross saving per treated person-year = -sum_k (absolute change_k per person-year x unit cost_k)
over the costed outcomes. Double counting: an emergency admission is priced at the
non-elective tariff in `unit_costs` (activity `emergency_admission`, else
`emergency_admission_short_stay`: 824 GBP 2024/25), which already pays for the stay, so bed days are NOT
costed by default (they are reported as an outcome). Pass `costed_outcomes` including
`bed_days` to price them at the excess-bed-day cost instead, and then leave admissions out.

Net saving per treated person = gross saving per person-year x mean follow-up years of treated
people (at most 1: the 12-month post period) - therapy cost per course (activity
`iapt_course`, one course per treated person). ROI = net saving / therapy cost (return per
pound spent, after getting the pound back); break-even therapy cost = gross saving per treated
person.

Intervals (95%): delta method. Each outcome's absolute change comes with cluster-level
(matched set) influence values from the DiD fit; the gross saving's influence values are the
unit-cost-weighted sum over outcomes, so correlation between outcomes (the same people, the
same sets) is kept. Unit costs and therapy cost are treated as fixed. Net saving and ROI are
linear in the gross saving, so their intervals follow from it. Price years differ between
sources and are not uplifted to one year (stated in the report).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.did import CountDiDResult, Z95

# activity names in `unit_costs` for each outcome, first match wins (the seed may hold the
# short-stay and long-stay non-elective tariffs separately; without a length-of-stay model
# admissions are priced at the short-stay figure)
OUTCOME_ACTIVITIES = {
    "ae_attendances": ("ae_attendance",),
    "emergency_admissions": ("emergency_admission", "emergency_admission_short_stay"),
    "bed_days": ("excess_bed_day",),
    "outpatient_attendances": ("outpatient_attendance",),
    "gp_appointments": ("gp_appointment",),
}
THERAPY_ACTIVITY = "iapt_course"
DEFAULT_COSTED_OUTCOMES = (
    "ae_attendances", "emergency_admissions", "outpatient_attendances", "gp_appointments",
)


def unit_cost_lookup(unit_costs: pd.DataFrame) -> pd.DataFrame:
    """Index the `unit_costs` seed by activity, checking its columns and uniqueness."""
    need = {"activity", "unit_cost_gbp", "price_year", "source"}
    if not need <= set(unit_costs.columns):
        raise ValueError(f"unit_costs needs columns {sorted(need)}")
    uc = unit_costs.copy()
    if uc["activity"].duplicated().any():
        raise ValueError("unit_costs has more than one row for an activity")
    uc["unit_cost_gbp"] = uc["unit_cost_gbp"].astype(float)
    return uc.set_index("activity")


def activity_for(outcome: str, uc: pd.DataFrame) -> str:
    """The `unit_costs` activity that prices an outcome (uc indexed by activity)."""
    for act in OUTCOME_ACTIVITIES[outcome]:
        if act in uc.index:
            return act
    raise ValueError(f"unit_costs lacks an activity for {outcome}: one of {OUTCOME_ACTIVITIES[outcome]}")


def unit_costs_by_outcome(unit_costs: pd.DataFrame,
                          outcomes=DEFAULT_COSTED_OUTCOMES) -> dict[str, float]:
    uc = unit_cost_lookup(unit_costs)
    return {o: float(uc.loc[activity_for(o, uc), "unit_cost_gbp"]) for o in outcomes}


@dataclass(frozen=True, eq=False)
class CostingResult:
    lines: pd.DataFrame  # one row per costed outcome
    gross_saving_per_py: float
    gross_saving_per_py_ci: tuple[float, float]
    mean_followup_years: float
    gross_saving_per_person: float
    gross_saving_per_person_ci: tuple[float, float]
    therapy_cost_per_person: float
    net_saving_per_person: float
    net_saving_per_person_ci: tuple[float, float]
    roi: float
    roi_ci: tuple[float, float]
    break_even_therapy_cost: float
    n_treated: int
    cohort_gross_saving: float
    cohort_gross_saving_ci: tuple[float, float]
    cohort_therapy_cost: float
    cohort_net_saving: float
    cohort_net_saving_ci: tuple[float, float]
    costed_outcomes: tuple[str, ...]
    therapy_cost_source: str
    interval_method: str = (
        "95% intervals by the delta method on matched-set-clustered influence functions "
        "(joint across outcomes); unit costs treated as fixed."
    )

    def tidy(self) -> pd.DataFrame:
        rows = [
            ("gross_saving_per_treated_person_year", self.gross_saving_per_py,
             *self.gross_saving_per_py_ci),
            ("gross_saving_per_treated_person", self.gross_saving_per_person,
             *self.gross_saving_per_person_ci),
            ("therapy_cost_per_treated_person", self.therapy_cost_per_person,
             self.therapy_cost_per_person, self.therapy_cost_per_person),
            ("net_saving_per_treated_person", self.net_saving_per_person,
             *self.net_saving_per_person_ci),
            ("roi_net_per_gbp_spent", self.roi, *self.roi_ci),
            ("break_even_therapy_cost_per_person", self.break_even_therapy_cost,
             *self.gross_saving_per_person_ci),
            ("cohort_gross_saving", self.cohort_gross_saving, *self.cohort_gross_saving_ci),
            ("cohort_therapy_cost", self.cohort_therapy_cost, self.cohort_therapy_cost,
             self.cohort_therapy_cost),
            ("cohort_net_saving", self.cohort_net_saving, *self.cohort_net_saving_ci),
        ]
        return pd.DataFrame(rows, columns=["quantity", "estimate", "lo95", "hi95"])

    def summary(self) -> str:
        lo, hi = self.net_saving_per_person_ci
        return (
            f"Net saving per treated person GBP {self.net_saving_per_person:,.0f} "
            f"(95% CI {lo:,.0f} to {hi:,.0f}) = gross GBP {self.gross_saving_per_person:,.0f} "
            f"minus therapy GBP {self.therapy_cost_per_person:,.0f}; ROI {self.roi:+.2f} "
            f"({self.roi_ci[0]:+.2f} to {self.roi_ci[1]:+.2f}). Costed: {', '.join(self.costed_outcomes)}. "
            f"{self.interval_method}"
        )


def estimate_costs(
    results: dict[str, CountDiDResult],
    unit_costs: pd.DataFrame,
    costed_outcomes=DEFAULT_COSTED_OUTCOMES,
) -> CostingResult:
    """Price the DiD absolute changes; see the module docstring for the definitions."""
    if "bed_days" in costed_outcomes and "emergency_admissions" in costed_outcomes:
        raise ValueError("cost admissions or bed days, not both (double counting)")
    uc = unit_cost_lookup(unit_costs)
    costs = unit_costs_by_outcome(unit_costs, costed_outcomes)
    if THERAPY_ACTIVITY not in uc.index:
        raise ValueError(f"unit_costs lacks {THERAPY_ACTIVITY!r}")
    therapy = float(uc.loc[THERAPY_ACTIVITY, "unit_cost_gbp"])

    lines, infl = [], []
    for o in costed_outcomes:
        r = results[o]
        c = costs[o]
        act = activity_for(o, uc)
        lines.append({
            "outcome": o,
            "activity": act,
            "unit_cost_gbp": c,
            "price_year": uc.loc[act, "price_year"],
            "source": uc.loc[act, "source"],
            "abs_change_per_person_year": r.abs_change_per_py,
            "abs_change_lo95": r.abs_change_ci[0],
            "abs_change_hi95": r.abs_change_ci[1],
            "saving_gbp_per_person_year": -r.abs_change_per_py * c,
            "saving_lo95": -r.abs_change_ci[1] * c,
            "saving_hi95": -r.abs_change_ci[0] * c,
        })
        infl.append(-c * r.abs_change_influence)
    if_gross = pd.concat(infl, axis=1).fillna(0.0).sum(axis=1)
    n_sets = max(max(results[o].n_sets for o in costed_outcomes), len(if_gross))
    se_py = float(np.sqrt(np.sum(if_gross**2) * n_sets / max(n_sets - 1, 1)))
    gross_py = float(sum(l["saving_gbp_per_person_year"] for l in lines))
    n_treated = int(results[costed_outcomes[0]].n_treated)
    person_years = results[costed_outcomes[0]].treated_post_person_years
    fu = min(float(person_years) / n_treated, 1.0) if n_treated else 0.0
    gross_pp, se_pp = gross_py * fu, se_py * fu
    net = gross_pp - therapy
    ci = lambda est, se: (est - Z95 * se, est + Z95 * se)  # noqa: E731
    net_ci = ci(net, se_pp)
    roi = net / therapy
    return CostingResult(
        lines=pd.DataFrame(lines),
        gross_saving_per_py=gross_py,
        gross_saving_per_py_ci=ci(gross_py, se_py),
        mean_followup_years=fu,
        gross_saving_per_person=gross_pp,
        gross_saving_per_person_ci=ci(gross_pp, se_pp),
        therapy_cost_per_person=therapy,
        net_saving_per_person=net,
        net_saving_per_person_ci=net_ci,
        roi=roi,
        roi_ci=(net_ci[0] / therapy, net_ci[1] / therapy),
        break_even_therapy_cost=gross_pp,
        n_treated=n_treated,
        cohort_gross_saving=gross_pp * n_treated,
        cohort_gross_saving_ci=tuple(x * n_treated for x in ci(gross_pp, se_pp)),
        cohort_therapy_cost=therapy * n_treated,
        cohort_net_saving=net * n_treated,
        cohort_net_saving_ci=tuple(x * n_treated for x in net_ci),
        costed_outcomes=tuple(costed_outcomes),
        therapy_cost_source=f"{uc.loc[THERAPY_ACTIVITY, 'source']} ({uc.loc[THERAPY_ACTIVITY, 'price_year']})",
    )
