import pytest
from simpanel import UNIT_COSTS

from evaluation.costing import DEFAULT_COSTED_OUTCOMES, estimate_costs, unit_costs_by_outcome
from evaluation.did import estimate_linear_did, estimate_poisson_did
from evaluation.panel import add_cost_column


@pytest.fixture(scope="module")
def results(effect_panel):
    return {o: estimate_poisson_did(effect_panel, o)
            for o in (*DEFAULT_COSTED_OUTCOMES, "bed_days")}


def test_costing_arithmetic_and_no_double_counting(results):
    c = estimate_costs(results, UNIT_COSTS)
    print(c.summary())
    assert "bed_days" not in set(c.lines["outcome"])  # admissions priced at tariff instead
    unit = {"ae_attendances": 280, "emergency_admissions": 824, "outpatient_attendances": 120,
            "gp_appointments": 48}
    gross_py = -sum(results[o].abs_change_per_py * unit[o] for o in unit)
    assert c.gross_saving_per_py == pytest.approx(gross_py)
    assert 0.9 < c.mean_followup_years <= 1.0
    assert c.gross_saving_per_person == pytest.approx(gross_py * c.mean_followup_years)
    assert c.therapy_cost_per_person == 684.0
    assert c.net_saving_per_person == pytest.approx(c.gross_saving_per_person - 684.0)
    assert c.roi == pytest.approx(c.net_saving_per_person / 684.0)
    lo, hi = c.net_saving_per_person_ci
    assert lo < c.net_saving_per_person < hi
    assert c.net_saving_per_person_ci[1] - c.net_saving_per_person_ci[0] == pytest.approx(
        c.gross_saving_per_person_ci[1] - c.gross_saving_per_person_ci[0])
    assert c.cohort_net_saving == pytest.approx(c.net_saving_per_person * c.n_treated)
    # the joint interval is no wider than adding the outcomes' intervals as if perfectly correlated
    width_sum = sum((r.abs_change_ci[1] - r.abs_change_ci[0]) * unit[o]
                    for o, r in results.items() if o in unit)
    assert c.gross_saving_per_py_ci[1] - c.gross_saving_per_py_ci[0] <= width_sum


def test_costing_agrees_with_direct_linear_cost_did(effect_panel, results):
    c = estimate_costs(results, UNIT_COSTS)
    panel = add_cost_column(effect_panel, unit_costs_by_outcome(UNIT_COSTS))
    direct = estimate_linear_did(panel, "cost_gbp")
    print(c.gross_saving_per_py_ci, direct.summary())
    assert c.gross_saving_per_py_ci[0] <= -direct.estimate_per_py <= c.gross_saving_per_py_ci[1]
    assert c.gross_saving_per_py > 0  # a planted reduction in use is a saving


def test_costing_refuses_double_counting_and_missing_costs(results):
    with pytest.raises(ValueError, match="double"):
        estimate_costs(results, UNIT_COSTS,
                       ("ae_attendances", "emergency_admissions", "bed_days"))
    with pytest.raises(ValueError, match="iapt_course"):
        estimate_costs(results, UNIT_COSTS[UNIT_COSTS["activity"] != "iapt_course"])
    # bed days may be costed instead of admissions
    c = estimate_costs(results, UNIT_COSTS, ("ae_attendances", "bed_days"))
    assert set(c.lines["activity"]) == {"ae_attendance", "excess_bed_day"}
