import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from simpanel import PLANTED
from simpanel import simulate_panel

from evaluation import did
from evaluation.did import (estimate_event_study, estimate_linear_did, estimate_naive,
                            estimate_outcome, estimate_poisson_did)
from evaluation.panel import PanelCodes, prepare_panel
from evaluation.reporting.text import describe


@pytest.mark.parametrize("outcome", ["ae_attendances", "gp_appointments"])
def test_did_ci_contains_planted_rate_ratio(effect_panel, outcome):
    r = estimate_poisson_did(effect_panel, outcome)
    lo, hi = r.rate_ratio_ci
    print(describe(r))
    assert lo <= PLANTED[outcome] <= hi
    assert hi < 1.0  # a real effect of this size is detected
    # absolute change agrees in sign and the counterfactual rate is higher than observed
    assert r.abs_change_ci[1] < 0
    assert r.counterfactual_post_rate_py > r.treated_post_rate_py


def test_did_null_contains_one_while_naive_shows_fall(null_panel):
    for outcome in ("ae_attendances", "emergency_admissions", "outpatient_attendances",
                    "gp_appointments"):
        did = estimate_poisson_did(null_panel, outcome)
        naive = estimate_naive(null_panel, outcome)
        print(describe(did), describe(naive), sep="\n")
        assert did.rate_ratio_ci[0] <= 1.0 <= did.rate_ratio_ci[1]
        assert did.abs_change_ci[0] <= 0.0 <= did.abs_change_ci[1]
        # regression to the mean: the treated-only before/after shows a fall
        assert naive.pct_change < -0.1
        if outcome != "emergency_admissions":  # rarest outcome: the fall is not always significant
            assert naive.change_ci[1] < 0


def test_event_study_pretrend_not_rejected_under_parallel_trends(effect_panel):
    for outcome in ("ae_attendances", "gp_appointments"):
        es = estimate_event_study(effect_panel, outcome)
        print(describe(es))
        assert es.pretrend_df == 11
        assert es.pretrend_p > 0.05
        assert es.bin_months == 1
        ref = es.coefs.set_index("rel_month").loc[-1]
        assert ref["rate_ratio"] == 1.0 and ref["se"] == 0.0
        if outcome == "gp_appointments":  # common enough for monthly coefficients to be precise
            post = es.coefs[es.coefs["period"] == "post"]
            assert abs(np.exp(post["log_rr"].mean()) - PLANTED[outcome]) < 0.06


def test_event_study_pretrend_rejects_diverging_trends():
    panel = prepare_panel(simulate_panel(n_sets=400, rate_ratio=1.0, seed=5, pre_trend=0.04))
    es = estimate_event_study(panel, "gp_appointments")
    assert es.pretrend_p < 0.01


def test_poisson_fe_matches_glm_with_person_dummies():
    panel = prepare_panel(simulate_panel(n_sets=40, rate_ratio=0.8, seed=3, share_one_control=0.4))
    r = estimate_poisson_did(panel, "gp_appointments")
    d = panel[panel["period"] != "transition"]
    glm = smf.glm("gp_appointments ~ C(person_id) + C(rel_month) + treated_post", data=d,
                  family=sm.families.Poisson(), offset=np.log(d["exposure_months"]),
                  var_weights=d["weight"]).fit()
    assert r.log_rate_ratio == pytest.approx(glm.params["treated_post"], abs=1e-6)


def test_poisson_fe_in_row_blocks_gives_the_one_block_fit(effect_panel, monkeypatch):
    from evaluation.methods import poisson_fe

    whole = estimate_event_study(effect_panel, "gp_appointments")
    monkeypatch.setattr(poisson_fe, "_ROWS_PER_BLOCK", 997)  # many blocks, the last one short
    assert len(effect_panel) > 20 * 997
    blocks = estimate_event_study(effect_panel, "gp_appointments")
    a, b = whole.coefs.set_index("rel_month"), blocks.coefs.set_index("rel_month")
    np.testing.assert_allclose(b["log_rr"], a["log_rr"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b["se"], a["se"], rtol=1e-8, atol=1e-12)
    assert blocks.pretrend_p == pytest.approx(whole.pretrend_p, rel=1e-7)



def test_poisson_fe_sparse_design_gives_the_dense_fit(effect_panel, monkeypatch):
    """The event study's design is built sparse (``_event_time_design``): it holds the indicators
    the dense construction gives, and the fit on it equals the fit on the dense frame through
    the dense path."""
    from evaluation import did
    from evaluation.methods import poisson_fe

    df = effect_panel
    months = sorted(int(m) for m in df["rel_month"].unique())
    levels = [m for m in months if m != -1]  # -1: the reference
    treated = df["is_treated"].to_numpy()
    design, names = did._event_time_design(df["rel_month"], levels, treated)
    dense = pd.concat([
        pd.DataFrame({f"c_{m}": (df["rel_month"] == m).astype(float) * (1 - treated) for m in levels}),
        pd.DataFrame({f"t_{m}": (df["rel_month"] == m).astype(float) * treated for m in levels})], axis=1)
    assert names == list(dense.columns)
    np.testing.assert_array_equal(design.toarray(), dense.to_numpy())

    args = (df["exposure_months"].to_numpy(), df["unit_id"].to_numpy(), df["cluster_id"].to_numpy(),
            df["weight"].to_numpy())
    y = df["ae_attendances"].to_numpy()
    sparse_fit = poisson_fe.fit_poisson_fe(y, design, *args, names=names)
    monkeypatch.setattr(poisson_fe, "_SPARSE_DENSITY", -1.0)  # no dense design counts as sparse
    dense_fit = poisson_fe.fit_poisson_fe(y, dense, *args)
    assert sparse_fit.converged and np.isfinite(sparse_fit.params).sum() > 20
    assert sparse_fit.dropped == dense_fit.dropped and sparse_fit.n_obs == dense_fit.n_obs
    np.testing.assert_allclose(sparse_fit.params, dense_fit.params, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sparse_fit.cov, dense_fit.cov, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(sparse_fit.influence, dense_fit.influence.loc[sparse_fit.influence.index],
                               rtol=1e-7, atol=1e-12)
    # separation: no treated events in one month; that column and its rows leave both fits alike
    y_sep = y.copy()
    y_sep[design[:, names.index(f"t_{levels[3]}")].toarray().ravel() == 1] = 0
    dense_sep = poisson_fe.fit_poisson_fe(y_sep, dense, *args)
    monkeypatch.undo()
    sparse_sep = poisson_fe.fit_poisson_fe(y_sep, design, *args, names=names)
    assert f"t_{levels[3]}" in sparse_sep.dropped and sparse_sep.dropped == dense_sep.dropped
    assert sparse_sep.n_obs == dense_sep.n_obs < sparse_fit.n_obs
    np.testing.assert_allclose(sparse_sep.params, dense_sep.params, rtol=0, atol=1e-9)


def _toy_panel():
    """Two sets; treated: 2/month before, 1/month after; controls: 2/month throughout."""
    rows = []
    for s in range(2):
        for treated in (1, 0):
            for rel in range(-12, 13):
                y = 2 if (rel < 1 or not treated) else 1
                rows.append((f"s{s}", f"p{s}{treated}", treated, rel, 1.0, y, 0, 0, 0, 0))
    return prepare_panel(pd.DataFrame(rows, columns=[
        "matched_set_id", "person_id", "is_treated", "rel_month", "exposure_months",
        "gp_appointments", "ae_attendances", "emergency_admissions", "bed_days",
        "outpatient_attendances"]))


def test_linear_did_and_naive_exact_on_toy_panel():
    p = _toy_panel()
    lin = estimate_linear_did(p, "gp_appointments")
    assert lin.estimate_per_py == pytest.approx(-12.0)
    assert lin.treated_pre_py == pytest.approx(24.0) and lin.control_post_py == pytest.approx(24.0)
    naive = estimate_naive(p, "gp_appointments")
    assert naive.change_per_py == pytest.approx(-12.0)
    assert naive.pct_change == pytest.approx(-0.5)
    did = estimate_poisson_did(p, "gp_appointments")
    assert did.rate_ratio == pytest.approx(0.5, rel=1e-6)
    assert did.abs_change_per_py == pytest.approx(-12.0, rel=1e-6)


def test_control_weights_for_unequal_sets(effect_panel):
    persons = effect_panel.drop_duplicates("person_id")
    w = persons.groupby(["matched_set_id", "is_treated"])["weight"].sum().unstack()
    assert np.allclose(w[0], w[1])  # each treated person's controls weigh one in total


def test_result_objects_have_summary_and_tidy(effect_panel):
    est = estimate_outcome(effect_panel, "emergency_admissions")
    for r in (est, est.did, est.linear_did, est.event_study, est.naive):
        assert isinstance(describe(r), str) and describe(r)
        assert isinstance(r.tidy(), pd.DataFrame) and len(r.tidy())
    assert "NAIVE" in describe(est.naive) and "NAIVE" in est.naive.tidy()["estimator"].iloc[0]
    with pytest.raises(AttributeError):
        est.did.rate_ratio = 1.0  # frozen


def test_event_study_month_without_treated_events_is_dropped_not_infinite(effect_panel):
    p = effect_panel.copy()
    p.loc[(p["is_treated"] == 1) & (p["rel_month"] == -5), "ae_attendances"] = 0.0
    es = estimate_event_study(p, "ae_attendances", bin_months=1)
    print(describe(es))
    assert es.not_estimable == (-5,)
    assert es.pretrend_df == 10
    assert np.isnan(es.coefs.set_index("rel_month").loc[-5, "rate_ratio"])
    others = es.coefs.dropna()
    assert np.isfinite(others["log_rr"]).all() and (others["se"] < 1).all()
    assert es.pretrend_p > 0.05


def test_event_study_bins_rare_outcomes_and_reports_empty_reference():
    panel = prepare_panel(simulate_panel(n_sets=80, rate_ratio=1.0, seed=8))
    es = estimate_event_study(panel, "emergency_admissions")  # ~2 treated events a month
    print(describe(es))
    assert es.bin_months == 3
    assert es.pretrend_df == 3 and 0.05 < es.pretrend_p <= 1
    assert list(es.coefs["first_month"]) == [-12, -9, -6, -3, 0, 1, 4, 7, 10]
    assert es.coefs.loc[es.coefs["reference"], "last_month"].item() == -1
    p = panel.copy()
    p.loc[(p["is_treated"] == 1) & p["rel_month"].between(-3, -1), "emergency_admissions"] = 0.0
    empty = estimate_event_study(p, "emergency_admissions")
    assert np.isnan(empty.pretrend_p) and "not estimable" in describe(empty)


def test_sorted_codes_are_np_unique_with_its_inverse():
    from evaluation.methods.poisson_fe import sorted_codes

    rng = np.random.default_rng(2)
    for values in (rng.integers(0, 50, 1000), np.array(["b", "a", "c", "a"]),
                   np.array(["s10/p1", "s9/p2", "s10/p1"], dtype=object),
                   np.where(rng.random(500) < 0.1, np.nan, rng.integers(0, 9, 500).astype(float))):
        expected, inverse = np.unique(values, return_inverse=True)
        got, codes = sorted_codes(values)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(codes, inverse.ravel())


def test_event_time_design_refuses_a_treatment_other_than_0_or_1():
    from evaluation.did import _event_time_design

    with pytest.raises(ValueError, match="is_treated"):
        _event_time_design(pd.Series([-2, -1, 1]), [-2, 1], np.array([0, 2, 1]))


def _previous_poisson_did(panel, outcome):
    """estimate_poisson_did as it was before estimate_poisson_dids (a dense frame design, text
    ids factorised in each fit, one outcome at a time): the reference of the test below."""
    from core.contract import POST_MONTHS
    from evaluation.did import CountDiDResult, _ratio_influence, _small_sample
    from evaluation.methods.common import Z95
    from evaluation.methods.poisson_fe import fit_poisson_fe
    from evaluation.panel import comparison_months
    from scipy import stats

    df = panel[panel["period"].isin(["pre", "post"])]
    pre_months = comparison_months(df)
    rel_levels = [m for m in (*pre_months, *POST_MONTHS) if m != pre_months[-1]]
    X = pd.DataFrame({f"rel_{m}": (df["rel_month"] == m).astype(float) for m in rel_levels}, index=df.index)
    X["treated_post"] = df["treated_post"].astype(float)
    fit = fit_poisson_fe(df[outcome].to_numpy(), X, df["exposure_months"].to_numpy(),
                         df["unit_id"].to_numpy(), df["cluster_id"].to_numpy(), df["weight"].to_numpy())
    persons = df.drop_duplicates("unit_id")
    tp = df[(df["is_treated"] == 1) & (df["period"] == "post")]
    if "treated_post" in fit.dropped:
        return fit, (int((persons["is_treated"] == 1).sum()), float(tp["exposure_months"].sum() / 12))
    b = float(fit.params["treated_post"])
    if_b = fit.influence["treated_post"]
    g = tp.groupby("cluster_id")
    r1, if_r1 = _ratio_influence(g[outcome].sum(), g["exposure_months"].sum())
    clusters = if_b.index.union(if_r1.index)
    if_b = if_b.reindex(clusters, fill_value=0.0)
    if_r1 = if_r1.reindex(clusters, fill_value=0.0)
    n_c = df["cluster_id"].nunique()
    se_b = float(np.sqrt(np.sum(if_b**2) * _small_sample(n_c)))
    abs_py = 12 * r1 * (1 - np.exp(-b))
    if_abs = 12 * np.exp(-b) * r1 * if_b + 12 * (1 - np.exp(-b)) * if_r1
    se_abs = float(np.sqrt(np.sum(if_abs**2) * _small_sample(n_c)))
    return CountDiDResult(
        outcome=outcome, rate_ratio=float(np.exp(b)),
        rate_ratio_ci=(float(np.exp(b - Z95 * se_b)), float(np.exp(b + Z95 * se_b))),
        log_rate_ratio=b, se_log_rate_ratio=se_b, p_value=float(2 * stats.norm.sf(abs(b) / se_b)),
        abs_change_per_py=float(abs_py),
        abs_change_ci=(float(abs_py - Z95 * se_abs), float(abs_py + Z95 * se_abs)),
        se_abs_change=se_abs, treated_post_rate_py=12 * r1, counterfactual_post_rate_py=12 * r1 / float(np.exp(b)),
        n_treated=int((persons["is_treated"] == 1).sum()), n_controls=int((persons["is_treated"] == 0).sum()),
        n_sets=int(df["matched_set_id"].nunique()), n_person_months=int(len(df)),
        treated_post_person_years=float(tp["exposure_months"].sum() / 12),
        method=estimate_poisson_did(panel, outcome).method, abs_change_influence=if_abs.rename(outcome),
        log_rate_ratio_influence=(if_b * np.sqrt(_small_sample(n_c))).rename(outcome), fit=fit)


def test_poisson_dids_give_the_previous_formulation_to_the_last_bit(effect_panel):
    """estimate_poisson_dids (one sparse design and one set of id codes for all outcomes, fitted
    like_frame) equals the frame design fitted outcome by outcome, bit for bit: on the panel,
    on a subset of its sets (a subgroup), on months 1-6, and where sixteen months have no
    events (their columns leave the fit and the rest is denser than the sparse rule: the dense
    path)."""
    from exact import assert_identical

    outcomes = ["ae_attendances", "emergency_admissions", "outpatient_attendances", "gp_appointments"]
    some_sets = effect_panel["matched_set_id"].isin(effect_panel["matched_set_id"].unique()[::3])
    sparse_months = effect_panel.copy()
    empty = sparse_months["rel_month"].between(2, 9) | sparse_months["rel_month"].between(-12, -5)
    sparse_months.loc[empty, "gp_appointments"] = 0.0
    codes = PanelCodes.of(effect_panel)
    model = effect_panel[[*did.POISSON_DID_COLUMNS, *outcomes]]  # no text id: they come as codes
    for panel, rows in ((effect_panel, slice(None)), (effect_panel[some_sets], some_sets.to_numpy()),
                        (effect_panel[effect_panel["rel_month"] <= 6], (effect_panel["rel_month"] <= 6).to_numpy()),
                        (sparse_months, slice(None))):
        got = did.estimate_poisson_dids(panel, outcomes)
        with_codes = did.estimate_poisson_dids((sparse_months if panel is sparse_months else model)[rows]
                                               [[*did.POISSON_DID_COLUMNS, *outcomes]], outcomes, codes.take(rows))
        assert list(got) == outcomes
        for o in outcomes:
            assert_identical(got[o], _previous_poisson_did(panel, o))
            assert_identical(with_codes[o], got[o])
    fit = got["gp_appointments"].fit
    assert fit.dropped == tuple(f"rel_{m}" for m in [*range(-12, -4), *range(2, 10)])
    assert len(fit.params) - len(fit.dropped) == 8  # 1 to 2 non-zeros a row in 8 columns: dense
    # not estimable (no treated events after the index): the same counts as before
    none_after = effect_panel.copy()
    none_after.loc[(none_after["is_treated"] == 1) & (none_after["rel_month"] > 0), "ae_attendances"] = 0.0
    r = did.estimate_poisson_dids(none_after, ["ae_attendances"])["ae_attendances"]
    fit, (n_treated, person_years) = _previous_poisson_did(none_after, "ae_attendances")
    assert np.isnan(r.rate_ratio) and r.n_treated == n_treated and r.treated_post_person_years == person_years


def test_sorted_codes_of_a_subset_are_taken_from_the_whole():
    from evaluation.methods.poisson_fe import SortedCodes, sorted_codes

    rng = np.random.default_rng(4)
    values = np.array([f"c{v}" for v in rng.integers(0, 300, 5000)], dtype=object)
    whole = SortedCodes.of(values)
    for rows in (rng.random(5000) < 0.3, np.flatnonzero(rng.random(5000) < 0.01), np.ones(5000, dtype=bool)):
        part, expected = whole.take(rows), sorted_codes(values[rows])
        assert part.uniques.dtype == expected[0].dtype
        np.testing.assert_array_equal(part.uniques, expected[0])
        np.testing.assert_array_equal(part.codes, expected[1])


def test_sorted_codes_of_a_text_column_held_by_arrow_are_sorted_codes_of_its_values():
    from evaluation.methods.poisson_fe import SortedCodes, sorted_codes

    rng = np.random.default_rng(7)
    letters = list("abcXYZ019/-_ éüß€中")  # code points from 32 to 20013: UTF-8 bytes sort as they do
    values = pd.Series(["".join(rng.choice(letters, rng.integers(0, 6))) for _ in range(5000)], dtype="str")
    got, (uniques, codes) = SortedCodes.of(values), sorted_codes(values.to_numpy())
    assert isinstance(got.uniques, pd.Index) and got.uniques.dtype == values.dtype
    np.testing.assert_array_equal(np.asarray(got.uniques, dtype=object), uniques)
    np.testing.assert_array_equal(got.codes, codes)


def test_scale_rows_is_scipys_multiply_by_a_column_to_the_last_bit():
    from scipy import sparse

    from evaluation.methods.poisson_fe import scale_rows

    rng = np.random.default_rng(5)
    dense = rng.random((400, 12)) * (rng.random((400, 12)) < 0.15)
    dense[::7] = 0.0  # empty rows
    v = rng.standard_normal(400)
    v[::11] = 0.0  # zero scales keep their entries, as multiply does
    for m in (sparse.csr_matrix(dense), sparse.csc_matrix(dense).tocsr()):
        want, got = m.multiply(v[:, None]).tocsr(), scale_rows(m, v)
        for a in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(got, a), getattr(want, a))
