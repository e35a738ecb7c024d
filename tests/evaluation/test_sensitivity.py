import numpy as np
import pandas as pd
import pytest
from simpanel import UNIT_COSTS

from evaluation.costing import CostingConfig, estimate_costs, prepare_unit_costs
from evaluation.did import estimate_poisson_did
from evaluation.disclosure import MIN_SUBGROUP_TREATED, suppress_count
from evaluation.panel import PanelCodes
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


def _previous_nb_did(panel, outcome):
    """nb_did's person pre/post sums as they were made before nb_dids (one grouping per
    outcome): the reference of the test below."""
    from evaluation.sensitivity import _nb_fit

    df = panel[panel["period"].isin(["pre", "post"])]
    agg = df.groupby(["matched_set_id", "cluster_id", "unit_id", "person_id", "is_treated", "weight", "period"],
                     as_index=False)[[outcome, "exposure_months"]].sum()
    return _nb_fit(agg, outcome, len(df))


def test_nb_dids_sum_every_outcome_at_once_to_the_same_fits(effect_panel):
    from exact import assert_identical

    from evaluation.sensitivity import nb_dids

    outcomes = ["ae_attendances", "emergency_admissions", "outpatient_attendances", "gp_appointments"]
    got = nb_dids(effect_panel, outcomes)
    with_codes = nb_dids(effect_panel.drop(columns=["unit_id", "cluster_id", "matched_set_id", "person_id"]),
                         outcomes, PanelCodes.of(effect_panel))
    assert list(got) == outcomes
    for o in outcomes:
        assert got[o] is not None
        assert_identical(got[o], _previous_nb_did(effect_panel, o))
        assert_identical(with_codes[o], got[o])


def _previous_subgroup_fits(panel, treated_attrs, by, outcomes):
    """Each subgroup's fits as subgroup_savings made them before (the panel filtered on the
    subgroup's matched sets, one outcome at a time)."""
    from evaluation.did import estimate_poisson_did

    attrs = treated_attrs[["person_id", by]].copy()
    attrs["person_id"] = attrs["person_id"].astype(str)
    tr = panel.loc[panel["is_treated"] == 1, ["person_id", "matched_set_id"]].drop_duplicates()
    tr = tr.merge(attrs, on="person_id", how="left")
    tr[by] = tr[by].astype(object).where(tr[by].notna(), "unknown")
    return {value: {o: estimate_poisson_did(panel[panel["matched_set_id"].isin(set(g["matched_set_id"]))], o)
                    for o in outcomes}
            for value, g in tr.groupby(by, sort=True) if g["person_id"].nunique() >= MIN_SUBGROUP_TREATED}


def test_subgroups_are_fitted_on_the_rows_of_their_sets_as_before(effect_panel):
    """subgroup_savings finds each subgroup's rows from one sort of the set ids; its figures are
    the ones the panel filtered on the subgroup's sets gave, to the last bit, also where a
    person's attribute has two values (their set is in both subgroups) or none ("unknown")."""
    from evaluation.sensitivity import subgroup_savings

    uc = prepare_unit_costs(UNIT_COSTS, CONFIG)
    treated = effect_panel.loc[effect_panel["is_treated"] == 1, ["person_id", "ltc_group"]].drop_duplicates("person_id")
    attrs = pd.concat([treated.iloc[40:], treated.iloc[:60].assign(ltc_group="copd")], ignore_index=True)
    attrs.loc[attrs.index[:3], "ltc_group"] = None
    sub = subgroup_savings(effect_panel, attrs, uc, CONFIG, "ltc_group").set_index("value")
    expected = _previous_subgroup_fits(effect_panel, attrs, "ltc_group", CONFIG.costed_outcomes)
    assert list(sub.index[sub["estimated"]]) == list(expected) and len(expected) >= 3
    assert "unknown" in sub.index and not sub.loc["unknown", "estimated"]
    for value, fits in expected.items():
        c = estimate_costs(fits, uc, CONFIG.costed_outcomes, persistence_years=CONFIG.persistence_years,
                           persistence_decay=CONFIG.persistence_decay, discount_rate=CONFIG.discount_rate)
        got = sub.loc[value]
        assert (got["net_saving_per_person"], got["lo95"], got["hi95"], got["gross_saving_per_person"]) == \
            (c.net_saving_per_person, *c.net_saving_per_person_ci, c.gross_saving_per_person), value


def test_deaths_scenario_is_the_table_prepared_without_the_people_who_died(base):
    """The deaths scenario takes its panel from the prepared one (drop_persons); its figures are
    those of preparing the unprepared panel without the people who died, as before, to the last
    bit; and the unprepared panel is needed only for who is in it and their index month."""
    from simpanel import PLANTED, simulate_panel

    from evaluation.panel import prepare_panel

    raw = simulate_panel(n_sets=600, rate_ratio=PLANTED, seed=11)
    panel = prepare_panel(raw)
    people = raw.drop_duplicates("person_id")
    dying = people.iloc[::25]  # about 4%: within follow-up for most, after its end for some
    deaths = pd.DataFrame({"person_id": dying["person_id"].to_numpy(),
                           "date_of_death": pd.to_datetime(dying["index_month"]).to_numpy()
                           + pd.to_timedelta(np.arange(len(dying)) * 7, unit="D")})
    results, costing = base
    scen, _ = run_sensitivity(panel, results, costing, UNIT_COSTS, CONFIG, raw_panel=raw, deaths=deaths)
    row = scen.set_index("group").loc["Deaths"]
    end = pd.to_datetime(dying["index_month"]).reset_index(drop=True) + pd.DateOffset(months=13)
    died = set(deaths.loc[deaths["date_of_death"] < end, "person_id"])
    assert 0 < len(died) < len(dying) and f"({suppress_count(len(died))} people)" in row["label"]
    rd = {o: estimate_poisson_did(prepare_panel(raw[~raw["person_id"].isin(died)]), o) for o in CONFIG.costed_outcomes}
    c = estimate_costs(rd, prepare_unit_costs(UNIT_COSTS, CONFIG), CONFIG.costed_outcomes)
    assert (row["net_saving_per_person"], row["lo95"], row["hi95"], row["gross_saving_per_person"]) == \
        (c.net_saving_per_person, *c.net_saving_per_person_ci, c.gross_saving_per_person)
    persons_only = raw[["person_id", "index_month"]].drop_duplicates("person_id")
    again, _ = run_sensitivity(panel, results, costing, UNIT_COSTS, CONFIG, raw_panel=persons_only, deaths=deaths)
    pd.testing.assert_frame_equal(again, scen, check_exact=True)
