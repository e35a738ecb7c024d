"""evaluation.methods.matching.match on small simulated tables (no dbt, no mocks)."""
import numpy as np
import pandas as pd
import pytest

from evaluation.methods import matching
from evaluation.methods.matching import as_column_list, balance_table, columns_used, match

COVS = ["age", "imd", "prior_ae", "trend_ae"]


def _table(n_treated=150, n_control_persons=1200, months=4, seed=0):
    """Stacked candidate table: treated at one month, controls at every month (person x month).

    Treatment depends on the covariates (confounding), so raw balance is poor.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_treated):
        rows.append({"pid": f"t{i}", "treated": 1, "month": int(rng.integers(0, months)),
                     "sex": rng.choice(["M", "F"]),
                     "age": rng.normal(62, 10), "imd": rng.integers(1, 8), "prior_ae": rng.poisson(2.0),
                     "trend_ae": rng.normal(1.0, 1.0)})
    for j in range(n_control_persons):
        sex, age, imd = rng.choice(["M", "F"]), rng.normal(52, 12), rng.integers(1, 11)
        for m in range(months):
            rows.append({"pid": f"c{j}", "treated": 0, "month": m, "sex": sex, "age": age + m / 12,
                         "imd": imd, "prior_ae": rng.poisson(0.9), "trend_ae": rng.normal(0, 1.0)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return _table()


@pytest.fixture(scope="module")
def result(table):
    return match(table, "treated", COVS, exact=["sex"], ratio=2, caliper=0.2, group="month", id_col="pid", seed=3)


def test_balance_improves_and_is_reported_per_covariate(result):
    bal = result.balance
    assert set(bal["stage"]) == {"before", "after"}
    assert set(bal["covariate"]) == set(COVS) | {"propensity_logit"}
    piv = bal.pivot(index="covariate", columns="stage", values="smd").abs()
    assert (piv.loc[COVS, "before"] > 0.3).any()
    assert (piv["after"] < piv["before"]).all()
    assert piv.loc[COVS, "after"].max() < 0.15
    assert {"mean_treated", "mean_control", "variance_ratio"} <= set(bal.columns)


def test_controls_are_never_treated_and_never_reused(result, table):
    m = result.matched
    treated_ids = set(table.loc[table.treated == 1, "pid"])
    controls = m[m.treated == 0]
    assert not set(controls.pid) & treated_ids
    assert controls.pid.is_unique  # without replacement, across months too
    assert m[m.treated == 1].pid.is_unique


def test_people_treated_later_can_be_controls_before_when_asked():
    # not-yet-treated design: treated people also have control rows at the months before their
    # own (the caller decides eligibility); they are dropped unless controls_may_be_treated_later
    df = _table(n_treated=60, n_control_persons=150, months=4, seed=11)
    treated = df[df.treated == 1]
    early = treated.loc[treated.month > 0].copy()
    rows = [early.assign(treated=0, month=m) for m in range(4)]
    candidates = pd.concat([df, *[r[r.month < early.set_index("pid").loc[r.pid, "month"].to_numpy()]
                                  for r in rows]], ignore_index=True)
    kwargs = dict(treatment="treated", covariates=COVS, exact=["sex"], ratio=1, caliper=0.5,
                  group="month", id_col="pid", seed=3)
    strict = match(candidates, **kwargs).matched
    assert not set(strict.loc[strict.treated == 0, "pid"]) & set(treated.pid)
    itt = match(candidates, controls_may_be_treated_later=True, **kwargs).matched
    later = itt[(itt.treated == 0) & itt.pid.isin(set(treated.pid))]
    assert len(later) > 0  # treated people used as controls ...
    own_month = treated.set_index("pid")["month"]
    assert (later["month"].to_numpy() < own_month.loc[later.pid].to_numpy()).all()  # ... only before
    assert itt.loc[itt.treated == 0, "pid"].is_unique  # still without replacement
    assert itt.loc[itt.treated == 1, "pid"].is_unique


def test_sets_respect_exact_keys_group_ratio_and_caliper(result):
    m = result.matched
    width = result.info["caliper_width_logit"]
    for _, s in m.groupby("matched_set_id"):
        t = s[s.treated == 1]
        c = s[s.treated == 0]
        assert len(t) == 1 and 1 <= len(c) <= 2
        assert (c.sex == t.sex.iloc[0]).all() and (c.month == t.month.iloc[0]).all()
        assert (np.abs(c.propensity_logit - t.propensity_logit.iloc[0]) <= width + 1e-12).all()
        assert np.isclose(c.match_weight.sum(), 1.0)


def test_counts_trace_each_step(result, table):
    counts = result.counts
    assert list(counts.step_order) == list(range(1, len(counts) + 1))
    assert counts.iloc[0].n_treated == (table.treated == 1).sum()
    matched_row = counts[counts.step.str.startswith("matched")].iloc[0]
    assert matched_row.n_treated == (result.matched.treated == 1).sum()
    assert (counts.n_treated.diff().dropna() <= 0).all()


def test_a_tighter_caliper_matches_fewer(table):
    wide = match(table, "treated", COVS, exact=["sex"], ratio=1, caliper=1.0, group="month", id_col="pid")
    tight = match(table, "treated", COVS, exact=["sex"], ratio=1, caliper=0.01, group="month", id_col="pid")
    assert (tight.matched.treated == 1).sum() < (wide.matched.treated == 1).sum()


def test_generic_table_without_ids_or_groups_and_unpacking():
    df = _table(n_treated=40, n_control_persons=300, months=1, seed=5)
    matched, balance, counts = match(df, "treated", COVS, exact=None, ratio=1, caliper=None)
    assert (matched.treated == 1).sum() == 40  # no caliper, plenty of controls: all matched
    assert len(balance) == 2 * (len(COVS) + 1)
    assert len(counts) >= 3


def test_ever_treated_units_are_dropped_from_the_control_rows():
    df = _table(n_treated=20, n_control_persons=100, months=2, seed=7)
    # the same person appears as a control row at another month: must never be a control
    extra = df[df.treated == 1].head(5).assign(treated=0, month=lambda d: (d.month + 1) % 2)
    df = pd.concat([df, extra], ignore_index=True)
    res = match(df, "treated", COVS, ratio=1, caliper=None, group="month", id_col="pid")
    assert not set(res.matched.loc[res.matched.treated == 0, "pid"]) & set(extra.pid)


def test_balance_table_equal_groups_have_zero_smd():
    df = pd.DataFrame({"t": [1, 1, 0, 0], "x": [1.0, 3.0, 1.0, 3.0]})
    bal = balance_table(df, "t", ["x"])
    assert bal.smd.iloc[0] == 0 and bal.variance_ratio.iloc[0] == 1


def test_as_column_list_accepts_dbt_renderings():
    assert as_column_list(["a", "b"]) == ["a", "b"]
    assert as_column_list("['a', 'b']") == ["a", "b"]
    assert as_column_list('["a", "b"]') == ["a", "b"]
    assert as_column_list("a, b") == ["a", "b"]


def test_result_does_not_depend_on_row_order(table):
    kw = dict(exact=["sex"], ratio=2, caliper=0.2, group="month", id_col="pid", seed=3)
    a = match(table, "treated", COVS, **kw).matched
    b = match(table.sample(frac=1.0, random_state=1), "treated", COVS, **kw).matched
    key = ["matched_set_id", "treated", "pid"]
    assert a[key].sort_values(key).reset_index(drop=True).equals(b[key].sort_values(key).reset_index(drop=True))


def test_refine_keeps_the_design_and_does_not_worsen_balance_or_matches(table):
    kw = dict(exact=["sex"], ratio=1, caliper=0.1, group="month", id_col="pid", seed=3)
    greedy = match(table, "treated", COVS, **kw)
    refined = match(table, "treated", COVS, refine=True, **kw)
    info = refined.info["refine"]
    assert info["swaps"] > 0
    n = lambda r: int((r.matched.treated == 1).sum())  # noqa: E731
    assert n(refined) == n(greedy) + info["rescued"] >= n(greedy)
    worst = lambda r: r.balance[r.balance.stage == "after"].smd.abs().max()  # noqa: E731
    assert worst(refined) < worst(greedy)
    assert worst(refined) == pytest.approx(info["max_abs_smd_refined"], abs=1e-9)
    m = refined.matched
    assert m[m.treated == 0].pid.is_unique and not set(m[m.treated == 0].pid) & set(table[table.treated == 1].pid)
    width = refined.info["caliper_width_logit"]
    for _, s in m.groupby("matched_set_id"):
        t, c = s[s.treated == 1].iloc[0], s[s.treated == 0]
        assert len(c) == 1 and (c.sex == t.sex).all() and (c.month == t.month).all()
        assert (np.abs(c.propensity_logit - t.propensity_logit) <= width + 1e-12).all()


def test_swaps_scored_in_chunks_choose_what_one_pass_would(table, monkeypatch):
    kw = dict(exact=["sex"], ratio=1, caliper=0.1, group="month", id_col="pid", seed=3, refine=True)
    whole = match(table, "treated", COVS, **kw)
    monkeypatch.setattr(matching, "_SWAP_PAIRS_PER_CHUNK", 7)  # many chunks, the last one short
    chunked = match(table, "treated", COVS, **kw)
    assert whole.info["refine"]["swaps"] > 0
    assert chunked.info["refine"] == whole.info["refine"]
    assert chunked.matched.equals(whole.matched)


def test_refine_makes_no_swap_when_greedy_balance_meets_the_target(table):
    kw = dict(exact=["sex"], ratio=1, caliper=0.1, group="month", id_col="pid", seed=3)
    greedy = match(table, "treated", COVS, **kw)
    met = match(table, "treated", COVS, refine=True, refine_target_smd=10.0, **kw)
    info = met.info["refine"]
    assert info["swaps"] == 0 and info["max_abs_smd_refined"] == info["max_abs_smd_greedy"]
    assert info["max_abs_smd_greedy"] > 0.01  # there was imbalance a swap could have lowered
    n = lambda r: int((r.matched.treated == 1).sum())  # noqa: E731
    assert n(met) == n(greedy) + info["rescued"]


def test_the_columns_used_are_enough_and_other_columns_ride_along(table):
    kw = dict(exact=["sex"], group="month", id_col="pid", ps_covariates=[*COVS, "age_sq"])
    wide = table.assign(age_sq=table.age ** 2, note=[f"row {i}" for i in range(len(table))])
    used = columns_used("treated", COVS, **kw)
    assert used == ["treated", *COVS, "age_sq", "sex", "month", "pid"]
    narrow = match(wide[used], "treated", COVS, ratio=2, caliper=0.2, seed=3, refine=True, **kw).matched
    full = match(wide, "treated", COVS, ratio=2, caliper=0.2, seed=3, refine=True, **kw).matched
    assert full.drop(columns="note").equals(narrow[[c for c in full.columns if c != "note"]])
    assert (full.note == wide.set_index(["pid", "month"]).loc[list(zip(full.pid, full.month)), "note"].to_numpy()).all()


def test_rescue_finds_the_augmenting_path_greedy_misses():
    # t1 (served first, larger score) takes c1, its nearest; t2's only candidate is c1.
    # Rescue moves t1 to c2 (also within its caliper) so that both are matched.
    df = pd.DataFrame({"id": ["t1", "t2", "c1", "c2", "c3", "c4"], "treated": [1, 1, 0, 0, 0, 0],
                       "x": [2.0, 1.6, 1.85, 2.3, -3.0, -2.5]})
    g = match(df, "treated", ["x"], ratio=1, caliper=0.3)
    r = match(df, "treated", ["x"], ratio=1, caliper=0.3, refine=True)
    assert (g.matched.treated == 1).sum() == 1
    assert (r.matched.treated == 1).sum() == 2 and r.info["refine"]["rescued"] == 1


def test_matched_att_and_set_clustered_se():
    from evaluation.methods.matching import matched_att

    m = pd.DataFrame({"matched_set_id": [1, 1, 1, 2, 2, 3, 3],
                      "treated": [1, 0, 0, 1, 0, 1, 0],
                      "y": [5.0, 1.0, 3.0, 4.0, 4.0, 9.0, 6.0]})
    att = matched_att(m, "treated", "y")
    d = np.array([5 - 2, 4 - 4, 9 - 6])  # within-set differences, controls averaged
    assert att["estimate"] == pytest.approx(d.mean())
    assert att["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    from scipy import stats
    q = stats.t.ppf(0.975, 2)
    assert att["ci_low"] == pytest.approx(d.mean() - q * att["se"]) and att["n_sets"] == 3


def test_mahalanobis_within_caliper_picks_the_closest_control_on_the_distance_columns():
    # One treated unit; two controls with the same score (the model sees only z) but different
    # baseline use: score matching cannot tell them apart, Mahalanobis matching takes the
    # control whose baseline use is closest.
    df = pd.DataFrame({
        "t": [1, 0, 0, 0, 0, 0, 0],
        "z": [0.0, 0.0, 0.0, 1.0, -1.0, 2.0, -2.0],
        "use": [5.0, 0.0, 5.2, 1.0, 2.0, 3.0, 4.0],
    })
    plain = match(df, "t", ["z"], caliper=None)
    maha = match(df, "t", ["z"], caliper=None, distance_covariates=["use"])
    picked = maha.matched.loc[maha.matched["t"] == 0, "use"].tolist()
    assert picked == [5.2]
    assert plain.matched.loc[plain.matched["t"] == 0, "use"].tolist() == [0.0]  # score tie: first row
    assert maha.info["distance_covariates"] == ["use"]


def test_mahalanobis_matching_tightens_within_set_differences(table):
    cols = COVS
    plain = match(table, "treated", cols, exact="sex", group="month", id_col="pid")
    maha = match(table, "treated", cols, exact="sex", group="month", id_col="pid",
                 distance_covariates=["prior_ae", "trend_ae"])

    def mean_abs_gap(res):
        m = res.matched
        t = m[m["treated"] == 1].set_index("matched_set_id")["prior_ae"]
        c = m[m["treated"] == 0].groupby("matched_set_id")["prior_ae"].mean()
        return float((t - c).abs().mean())

    assert mean_abs_gap(maha) < 0.8 * mean_abs_gap(plain)
    # the design is unchanged: exact keys, group and caliper still hold in every set
    m = maha.matched
    width = maha.info["caliper_width_logit"]
    for _, s in m.groupby("matched_set_id"):
        assert s["sex"].nunique() == 1 and s["month"].nunique() == 1
        assert s["propensity_logit"].max() - s["propensity_logit"].min() <= width + 1e-12


def test_propensity_fitted_per_covariate_pattern_equals_the_logit_on_every_row():
    """The grouped binomial fit is the row-level likelihood: statsmodels' Logit on every row,
    an independent fit, gives the same coefficients and scores, with repeated patterns (counts)
    and with a continuous covariate (a pattern per row); the row order does not matter."""
    import statsmodels.api as sm

    rng = np.random.default_rng(7)
    n = 4000
    df = pd.DataFrame({"age": rng.integers(18, 90, n), "count": rng.poisson(0.7, n),
                       "flat": np.full(n, 3.0), "score": rng.normal(0, 1, n)})
    df["t"] = (rng.random(n) < 1 / (1 + np.exp(-(-2 + 0.03 * (df["age"] - 50) + 0.5 * df["count"])))).astype(int)
    for covs in (["age", "count", "flat"], ["age", "count", "score"]):
        logit, coefs = matching.fit_propensity(df, "t", covs)
        used = [c for c in covs if df[c].std() > 0]
        X = sm.add_constant((df[used] - df[used].mean()) / df[used].std(ddof=0))
        ref = sm.Logit(df["t"].to_numpy(float), X).fit(disp=0, tol=1e-12, maxiter=200)
        assert list(coefs) == ["const", *used]
        np.testing.assert_allclose(list(coefs.values()), ref.params.to_numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(logit, X.to_numpy() @ ref.params.to_numpy(), rtol=1e-8, atol=1e-10)
        shuffled = rng.permutation(n)
        logit_shuffled, _ = matching.fit_propensity(df.iloc[shuffled].reset_index(drop=True), "t", covs)
        np.testing.assert_allclose(logit_shuffled, logit[shuffled], rtol=1e-12, atol=1e-12)


def test_covariate_patterns_are_numbered_in_sorted_order_as_a_groupby_numbers_them():
    rng = np.random.default_rng(1)
    n = 20000
    df = pd.DataFrame({"a": rng.integers(0, 50, n), "b": rng.poisson(0.5, n).astype(float),
                       "c": rng.choice([1.5, np.nan, -2.0], n), "d": rng.normal(size=n).round(1)})
    expected = df.groupby(list(df.columns), sort=True, dropna=False).ngroup().to_numpy()
    np.testing.assert_array_equal(matching._sorted_pattern_codes(df, list(df.columns)), expected)
