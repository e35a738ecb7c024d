import numpy as np
import pytest
from simpanel import UNIT_COSTS

from evaluation.costing import DEFAULT_COSTED_OUTCOMES, estimate_costs, unit_costs_by_outcome
from evaluation.did import estimate_linear_did, estimate_poisson_did
from evaluation.panel import add_cost_column
from evaluation.reporting.text import describe


@pytest.fixture(scope="module")
def results(effect_panel):
    return {o: estimate_poisson_did(effect_panel, o)
            for o in (*DEFAULT_COSTED_OUTCOMES, "bed_days")}


def test_costing_arithmetic_and_no_double_counting(results):
    c = estimate_costs(results, UNIT_COSTS)
    print(describe(c))
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
    print(c.gross_saving_per_py_ci, describe(direct))
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


# --------------------------------------------------------------------------- unit costs


def test_price_years_and_rebasing_to_one_year():
    from evaluation.costing import load_price_index, normalise_price_year, rebase_unit_costs

    assert normalise_price_year("2016/17") == "2016/17"
    assert normalise_price_year("2016-17") == "2016/17"
    assert normalise_price_year("2016/2017") == "2016/17"
    assert normalise_price_year("2017") == "2017/18"  # a figure quoted in calendar 2017
    with pytest.raises(ValueError):
        normalise_price_year("last year")
    idx = load_price_index()
    assert {"financial_year", "index_value", "source"} <= set(idx.columns)
    assert idx["index_value"].is_monotonic_increasing
    v = idx.set_index("financial_year")["index_value"]
    uc = rebase_unit_costs(UNIT_COSTS, "2024/25", idx).set_index("activity")
    assert (uc["price_year"] == "2024/25").all()
    assert uc.loc["ae_attendance", "unit_cost_gbp"] == pytest.approx(280.0)  # already 2024/25
    assert uc.loc["outpatient_attendance", "unit_cost_gbp"] == pytest.approx(
        120.0 * v["2024/25"] / v["2016/17"])
    assert uc.loc["outpatient_attendance", "original_unit_cost_gbp"] == 120.0
    # re-basing a re-based table again to another year starts from the published figures
    back = rebase_unit_costs(uc.reset_index(), "2016/17", idx).set_index("activity")
    assert back.loc["outpatient_attendance", "unit_cost_gbp"] == pytest.approx(120.0)
    with pytest.raises(ValueError, match="no value"):
        rebase_unit_costs(UNIT_COSTS, "1999/00", idx)


def test_local_tariff_and_therapy_cost_override(tmp_path):
    from evaluation.costing import CostingConfig, prepare_unit_costs, unit_cost_version

    tariff = tmp_path / "tariff.csv"
    tariff.write_text("activity,unit_cost_gbp,price_year,source\n"
                      "ae_attendance,199.5,2024/25,Trust X 2024/25 local price\n")
    cfg = CostingConfig(local_tariff=str(tariff), therapy_cost_gbp=900.0)
    uc = prepare_unit_costs(UNIT_COSTS, cfg).set_index("activity")
    assert uc.loc["ae_attendance", "unit_cost_gbp"] == pytest.approx(199.5)
    assert uc.loc["ae_attendance", "source"].startswith("local tariff")
    assert uc.loc["iapt_course", "unit_cost_gbp"] == pytest.approx(900.0)  # set in 2024/25 prices
    assert len(uc) == len(UNIT_COSTS)
    base = prepare_unit_costs(UNIT_COSTS, CostingConfig())
    assert unit_cost_version(uc.reset_index()) != unit_cost_version(base)
    bad = tmp_path / "bad.csv"
    bad.write_text("activity,cost\nae_attendance,1\n")
    with pytest.raises(ValueError, match="needs columns"):
        prepare_unit_costs(UNIT_COSTS, CostingConfig(local_tariff=str(bad)))
    env = {"LTCEVAL_LOCAL_TARIFF": str(tariff), "LTCEVAL_THERAPY_COST_GBP": "750",
           "LTCEVAL_ANNUAL_CASELOAD": "400", "LTCEVAL_INTERVAL_METHOD": "delta"}
    c = CostingConfig.from_env(env)
    assert (c.local_tariff, c.therapy_cost_gbp, c.annual_caseload, c.interval_method) == (
        str(tariff), 750.0, 400, "delta")


def test_caseload_projection_and_persistence(results):
    from evaluation.costing import persistence_factor

    base = estimate_costs(results, UNIT_COSTS, annual_caseload=500)
    assert base.caseload_net_saving == pytest.approx(base.net_saving_per_person * 500)
    assert base.caseload_net_saving_ci[0] == pytest.approx(base.net_saving_per_person_ci[0] * 500)
    t = base.tidy().set_index("quantity")
    assert t.loc["caseload_net_saving_per_year", "estimate"] == pytest.approx(
        base.caseload_net_saving)
    assert persistence_factor(0, 0.5) == 0.0
    assert persistence_factor(2, 0.5, 0.035) == pytest.approx(0.5 / 1.035 + 0.25 / 1.035**2)
    two = estimate_costs(results, UNIT_COSTS, persistence_years=2, persistence_decay=0.5)
    assert two.gross_saving_per_person == pytest.approx(
        base.gross_saving_per_py * (base.mean_followup_years + persistence_factor(2, 0.5)))


# --------------------------------------------------------------------------- bootstrap


def test_collapsed_fit_equals_the_person_month_fit(effect_panel):
    from evaluation.bootstrap import point_estimate

    for o in ("ae_attendances", "gp_appointments"):
        assert point_estimate(effect_panel, o) == pytest.approx(
            estimate_poisson_did(effect_panel, o).log_rate_ratio, abs=1e-8)
    # also with unequal exposure patterns and a 6-month window
    p6 = effect_panel[effect_panel["rel_month"] <= 6]
    assert point_estimate(p6, "emergency_admissions", post_months=range(1, 7)) == pytest.approx(
        estimate_poisson_did(p6, "emergency_admissions").log_rate_ratio, abs=1e-8)


@pytest.mark.parametrize("outcome,months", [("ae_attendances", 12), ("emergency_admissions", 6)])
def test_one_step_replicates_agree_with_refitting_each_replicate(effect_panel, outcome, months):
    # the k-step bootstrap (k = 1) against refits to convergence on the same cluster weights;
    # the 6-month window gives people unequal exposure patterns
    from evaluation.bootstrap import Replicates, cluster_weights, unit_counts

    panel = effect_panel[effect_panel["rel_month"] <= months]
    c = unit_counts(panel, outcome, post_months=range(1, months + 1))
    K = next(cluster_weights(len(c.sets), 64, seed=9))
    one, exact = Replicates(c).log_rr(K), Replicates(c, refit="exact").log_rr(K)
    assert np.isfinite(one).all() and np.isfinite(exact).all()
    sd = exact.std()
    print(outcome, months, "sd", sd, "max |diff| / sd", np.max(np.abs(one - exact)) / sd,
          "quantile diffs / sd", (np.quantile(one, [0.025, 0.975]) - np.quantile(exact, [0.025, 0.975])) / sd)
    assert np.corrcoef(one, exact)[0, 1] > 0.995
    assert np.mean(np.abs(one - exact)) < 0.05 * sd and np.max(np.abs(one - exact)) < 0.25 * sd
    assert np.all(np.abs(np.quantile(one, [0.025, 0.975]) - np.quantile(exact, [0.025, 0.975])) < 0.1 * sd)
    assert abs(one.std() - sd) < 0.03 * sd


def test_cluster_bootstrap_agrees_with_the_delta_method(effect_panel, results):
    from evaluation.bootstrap import cluster_bootstrap

    boot = cluster_bootstrap(effect_panel, list(DEFAULT_COSTED_OUTCOMES), reps=200, seed=5)
    for o in DEFAULT_COSTED_OUTCOMES:
        sd = boot.log_rr[o].std()
        assert 0.75 < sd / results[o].se_log_rate_ratio < 1.33, o
        assert abs(boot.log_rr[o].mean() - results[o].log_rate_ratio) < 0.5 * sd, o
    c = estimate_costs(results, UNIT_COSTS, bootstrap=boot)
    d = estimate_costs(results, UNIT_COSTS)
    assert c.interval_kind == "bootstrap" and "cluster bootstrap" in c.interval_method
    assert c.net_saving_per_person == pytest.approx(d.net_saving_per_person)
    wb = c.net_saving_per_person_ci[1] - c.net_saving_per_person_ci[0]
    wd = d.net_saving_per_person_ci[1] - d.net_saving_per_person_ci[0]
    assert 0.7 < wb / wd < 1.4
    assert c.net_saving_per_person_ci[0] < c.net_saving_per_person < c.net_saving_per_person_ci[1]
    assert c.delta_net_saving_per_person_ci == pytest.approx(d.net_saving_per_person_ci)


def _previous_unit_counts(panel, outcome, sets):
    """unit_counts as it was before outcome_unit_counts (every column of the rows copied, the
    exposure patterns by np.unique of the rows): the reference of the test below."""
    import pandas as pd

    from core.contract import POST_MONTHS
    from evaluation.bootstrap import UnitCounts
    from evaluation.panel import comparison_months

    pre_months = comparison_months(panel)
    months = np.array([*pre_months, *POST_MONTHS])
    df = panel[panel["period"].isin(["pre", "post"]) & panel["rel_month"].isin(months)]
    T = len(months)
    unit_codes, units = pd.factorize(df["unit_id"], sort=True)
    month_pos = pd.Series(np.arange(T), index=months).reindex(df["rel_month"]).to_numpy()
    y, e = np.zeros((len(units), T)), np.zeros((len(units), T))
    np.add.at(y, (unit_codes, month_pos), df[outcome].to_numpy(dtype=float))
    np.add.at(e, (unit_codes, month_pos), df["exposure_months"].to_numpy(dtype=float))
    first = np.unique(unit_codes, return_index=True)[1]
    treated = df["is_treated"].to_numpy()[first].astype(int)
    weight = df["weight"].to_numpy(dtype=float)[first]
    cluster = sets.get_indexer(df["cluster_id"].to_numpy()[first])
    pat_keys, pattern = np.unique(np.column_stack([treated, np.round(e, 12)]), axis=0, return_inverse=True)
    with np.errstate(divide="ignore"):
        pattern_log_e = np.log(pat_keys[:, 1:])
    post, tr = np.isin(months, list(POST_MONTHS)), treated == 1
    return UnitCounts(
        outcome=outcome, sets=sets, months=months, reference=int(pre_months[-1]), y=y * weight[:, None],
        cluster=cluster, pattern=pattern.reshape(-1), pattern_treated=pat_keys[:, 0].astype(int),
        pattern_log_e=pattern_log_e,
        post_events=np.bincount(cluster[tr], weights=y[tr][:, post].sum(axis=1), minlength=len(sets)),
        post_exposure=np.bincount(cluster[tr], weights=e[tr][:, post].sum(axis=1), minlength=len(sets)),
        treated_n=np.bincount(cluster[tr], minlength=len(sets)).astype(float))


def test_unit_counts_of_several_outcomes_are_each_outcomes_own(effect_panel):
    """outcome_unit_counts finds the rows, units and exposure patterns once for every outcome:
    each outcome's counts equal the previous one-outcome formulation to the last bit, with
    people at risk for part of the year (several exposure patterns)."""
    import pandas as pd
    from exact import assert_identical

    from evaluation.bootstrap import outcome_unit_counts

    outcomes = list(DEFAULT_COSTED_OUTCOMES)
    sets = pd.Index(sorted(effect_panel.loc[effect_panel["period"].isin(["pre", "post"]), "cluster_id"].unique()))
    got = outcome_unit_counts(effect_panel, outcomes, sets=sets)
    assert list(got) == outcomes and got[outcomes[0]].n_patterns > 10
    for o in outcomes:
        assert_identical(got[o], _previous_unit_counts(effect_panel, o, sets))


def test_unique_rows_are_np_unique_of_the_rows():
    from evaluation.bootstrap import unique_rows

    rng = np.random.default_rng(3)
    keys = np.column_stack([rng.integers(0, 2, 3000), rng.choice([0.0, 0.25, 1.0, 1e-12], size=(3000, 5))])
    for k in (keys, keys[:1], keys[:0]):
        expected, inverse = np.unique(k, axis=0, return_inverse=True)
        got, number = unique_rows(k)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(number, inverse.reshape(-1))
