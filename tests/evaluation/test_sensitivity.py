import numpy as np
import pandas as pd
import pytest
from simpanel import UNIT_COSTS

from evaluation.costing import CostingConfig, estimate_costs, prepare_unit_costs
from evaluation.did import estimate_poisson_did
from evaluation.disclosure import MIN_SUBGROUP_TREATED
from evaluation.sensitivity import (iapt_outcomes, nb_did, run_sensitivity,
                                    subgroup_savings)

CONFIG = CostingConfig(interval_method="delta")


@pytest.fixture(scope="module")
def base(effect_panel):
    results = {o: estimate_poisson_did(effect_panel, o)
               for o in ("ae_attendances", "emergency_admissions", "bed_days",
                         "outpatient_attendances", "gp_appointments")}
    uc = prepare_unit_costs(UNIT_COSTS, CONFIG)
    return results, estimate_costs(results, uc)


def test_negative_binomial_recovers_the_planted_effect(effect_panel, null_panel):
    from simpanel import PLANTED

    for o, rr in PLANTED.items():
        r = nb_did(effect_panel, o)
        assert r.rate_ratio_ci[0] < rr < r.rate_ratio_ci[1], (o, r.rate_ratio_ci)
    r = nb_did(null_panel, "ae_attendances")
    assert r.rate_ratio_ci[0] < 1 < r.rate_ratio_ci[1]


def test_scenarios_each_change_one_choice(effect_panel, base):
    results, costing = base
    scen, notes = run_sensitivity(effect_panel, results, costing, UNIT_COSTS, CONFIG,
                                  mean_treatment_contacts=6.0)
    assert scen.iloc[0]["label"] == "Base case"
    assert scen.iloc[0]["net_saving_per_person"] == pytest.approx(costing.net_saving_per_person)
    groups = set(scen["group"])
    assert {"Unit costs", "Count model", "Outcome window", "Persistence"} <= groups
    assert (scen["lo95"] <= scen["net_saving_per_person"]).all()
    assert (scen["net_saving_per_person"] <= scen["hi95"]).all()
    s = scen.set_index("label")
    # A&E at 148 GBP instead of 280 GBP: a planted fall in A&E is worth less
    assert s.loc["2016/17 reference costs (A&E 148 GBP)", "gross_saving_per_person"] < \
        costing.gross_saving_per_person
    # persistence adds saving in proportion (planted reductions: positive gross saving)
    p1 = s.loc[[i for i in s.index if i.startswith("Effect lasts 1")][0]]
    p2 = s.loc[[i for i in s.index if i.startswith("Effect lasts 2")][0]]
    assert costing.gross_saving_per_person < p1["gross_saving_per_person"] < \
        p2["gross_saving_per_person"]
    # therapy per contact: 6 contacts x the contact cost (simpanel's table lacks it: no row)
    assert not any(i.startswith("Per contact") for i in s.index)
    # no deaths table, no alternative matched panels: said, not faked
    assert any("not run" in n for n in notes)
    assert not any(g == "Matching" for g in groups)


def test_subgroups_and_iapt_outcomes(effect_panel):
    uc = prepare_unit_costs(UNIT_COSTS, CONFIG)
    treated = effect_panel[effect_panel["is_treated"] == 1].drop_duplicates("person_id")
    sub = subgroup_savings(effect_panel, treated, uc, CONFIG, "ltc_group")
    assert set(sub["value"]) == set(treated["ltc_group"])
    assert sub["n_treated"].sum() == len(treated)
    assert (sub["estimated"] == (sub["n_treated"] >= MIN_SUBGROUP_TREATED)).all()
    # a small subgroup is listed but not estimated
    few = treated.copy()
    few["flag"] = np.where(np.arange(len(few)) < 5, "tiny", "rest")
    s2 = subgroup_savings(effect_panel, few, uc, CONFIG, "flag").set_index("value")
    assert not s2.loc["tiny", "estimated"] and np.isnan(s2.loc["tiny", "net_saving_per_person"])
    assert s2.loc["rest", "estimated"]
    tc = pd.DataFrame({"person_id": treated["person_id"], "finished_course": True,
                       "at_caseness_start": [i % 10 != 0 for i in range(len(treated))],
                       "recovered": [i % 2 == 0 for i in range(len(treated))],
                       "reliable_improvement": [i % 3 != 0 for i in range(len(treated))],
                       "reliable_deterioration": False})
    out = iapt_outcomes(tc, effect_panel).set_index("measure")
    rec = out.loc["Recovered (of those at caseness)"]
    caseness = tc["at_caseness_start"]
    assert rec["denominator"] == caseness.sum()
    assert rec["n"] == (tc["recovered"] & caseness).sum()
