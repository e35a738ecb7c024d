"""Group-time ATTs for staggered adoption (evaluation.methods.staggered): exact 2x2 arithmetic, recovery
of known heterogeneous dynamic effects where two-way fixed effects fail, pre-trend test, doubly
robust adjustment, bootstrap agreement and the `ltceval did` command."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from evaluation.methods.staggered import AGGREGATIONS, estimate_att_gt
from evaluation.reporting.text import describe

KW = dict(unit="id", time="t", cohort="g", outcome="y")


# --------------------------------------------------------------------------- data


def hand_panel() -> pd.DataFrame:
    """9 units x periods 1-4: never treated (u1, u2), cohort 2 (u3, u4), cohort 3 (u5, u6),
    cohort 4 (u7, u8, u9). Never-treated cohort given as 0 and as empty."""
    y = {
        "u1": (0, [1, 2, 3, 4]), "u2": (np.nan, [2, 2, 5, 5]),
        "u3": (2, [1, 4, 6, 7]), "u4": (2, [3, 5, 5, 9]),
        "u5": (3, [0, 1, 5, 6]), "u6": (3, [2, 4, 2, 8]),
        "u7": (4, [1, 3, 4, 9]), "u8": (4, [5, 6, 8, 8]), "u9": (4, [0, 0, 1, 2]),
    }
    return pd.DataFrame([{"id": u, "t": t, "g": g, "y": float(v)}
                         for u, (g, vals) in y.items() for t, v in zip(range(1, 5), vals)])


def simulate(n=1500, periods=8, cohorts=(3, 5, 7), shares=(0.3, 0.3, 0.3), seed=1,
             effect=lambda g, e: 0.0, pre_bump=0.0, x_shift=0.0, x_trend=0.0):
    """Balanced panel y_it = a_i + 0.3 t + x_trend * x_i * t + effect(g, t-g) 1[t >= g] + noise.
    Treated units' covariate x is shifted by x_shift (so trends differ by cohort if x_trend != 0);
    pre_bump adds a bump to treated units' outcome in the period before treatment."""
    rng = np.random.default_rng(seed)
    G = rng.choice([*cohorts, 0], size=n, p=[*shares, 1 - sum(shares)])
    x = rng.normal(size=n) + x_shift * (G > 0)
    ts = np.arange(1, periods + 1)
    Y = rng.normal(size=n)[:, None] + 0.3 * ts + x_trend * x[:, None] * ts + rng.normal(size=(n, periods))
    for g in cohorts:
        rows = G == g
        for j, t in enumerate(ts):
            if t >= g:
                Y[rows, j] += effect(g, t - g)
            elif t == g - 1:
                Y[rows, j] += pre_bump
    return pd.DataFrame({"id": np.repeat(np.arange(n), periods), "t": np.tile(ts, n),
                         "g": np.repeat(G, periods), "y": Y.ravel(), "x": np.repeat(x, periods)})


def true_aggregates(res, effect):
    """Truth for the simple and dynamic aggregations given deterministic effects, with the
    estimator's own cohort-size weights (realised cohort shares)."""
    c = res.cells[res.cells["post"]]
    w = c["group"].map(res.cohort_sizes).to_numpy(float)
    tau = np.array([effect(g, e) for g, e in zip(c["group"], c["event_time"])])
    simple = float(w @ tau / w.sum())
    dynamic = {int(e): float(w[m] @ tau[m] / w[m].sum())
               for e in np.unique(c["event_time"]) for m in [c["event_time"].to_numpy() == e]}
    return simple, dynamic


# --------------------------------------------------------------------------- 1. exact 2x2


def _hand_att(df, g, t, control):
    """Independent difference of mean changes for cell (g, t), varying base period."""
    w = df.pivot(index="id", columns="t", values="y")
    G = df.drop_duplicates("id").set_index("id")["g"].fillna(0).reindex(w.index)
    b = g - 1 if t >= g else t - 1
    dy = w[t] - w[b]
    ctrl = (G == 0) if control == "never" else ((G == 0) | ((G > max(t, b)) & (G != g)))
    return dy[G == g].mean() - dy[ctrl].mean()


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_every_cell_is_the_hand_computed_2x2(control):
    df = hand_panel()
    res = estimate_att_gt(df, **KW, control=control, bootstrap=0)
    cells = res.tidy().set_index(["group", "time"])
    assert sorted(cells.index) == [(g, t) for g in (2, 3, 4) for t in (2, 3, 4)]
    for (g, t), row in cells.iterrows():
        assert row["att"] == pytest.approx(_hand_att(df, g, t, control), abs=1e-10)
        assert row["base_period"] == (g - 1 if t >= g else t - 1)
    # a few cells worked out on paper
    by_hand = {
        "never": {(2, 3): 3.5 - 2.5, (3, 2): 1.5 - 0.5, (4, 2): 1.0 - 0.5, (4, 4): 2.0 - 0.5,
                  (3, 4): 4.5 - 2.5},
        # not yet treated: (2,3) uses cohort 4 + never; (3,2) cohort 4 + never; (4,2) cohort 3
        # + never (untreated in both periods 1 and 2); (4,4) and (3,4) never only
        "notyet": {(2, 3): 3.5 - 12 / 5, (3, 2): 1.5 - 4 / 5, (4, 2): 1.0 - 4 / 4,
                   (4, 4): 2.0 - 0.5, (3, 4): 4.5 - 2.5},
    }[control]
    for cell, value in by_hand.items():
        assert cells.loc[cell, "att"] == pytest.approx(value, abs=1e-10)
    assert cells.loc[(2, 3), "n_control"] == (2 if control == "never" else 5)
    # simple aggregation = cohort-size-weighted mean of post cells, computed by hand
    post = cells[cells["post"]]
    w = post.index.get_level_values("group").map({2: 2, 3: 2, 4: 3}).to_numpy(float)
    assert res.aggregate("simple").estimate == pytest.approx(w @ post["att"] / w.sum(), abs=1e-12)


# --------------------------------------------------------------------------- 2. TWFE bias


def _effect_dynamic(g, e):  # grows with exposure, larger for earlier cohorts
    return (e + 1) * (1 + (7 - g) / 4)


def test_heterogeneous_dynamic_effects_recovered_where_twfe_is_biased():
    df = simulate(n=500, seed=5, effect=_effect_dynamic)
    # two-way fixed effects: OLS of y on treated-and-post with unit and period dummies
    D = ((df["g"] > 0) & (df["t"] >= df["g"])).astype(float).rename("D")
    X = sm.add_constant(pd.concat([
        D, pd.get_dummies(df["id"], prefix="u", drop_first=True, dtype=float),
        pd.get_dummies(df["t"], prefix="t", drop_first=True, dtype=float)], axis=1))
    twfe = sm.OLS(df["y"], X).fit(cov_type="cluster", cov_kwds={"groups": df["id"]})

    for control in ("never", "notyet"):
        res = estimate_att_gt(df, **KW, control=control, bootstrap=499, seed=3)
        truth_simple, truth_dyn = true_aggregates(res, _effect_dynamic)
        simple = res.aggregate("simple")
        assert simple.ci[0] <= truth_simple <= simple.ci[1], (control, simple.estimate, truth_simple)
        dyn = res.aggregate("dynamic")
        tab = dyn.table.set_index("event_time")
        for e, truth in truth_dyn.items():
            assert tab.loc[e, "ci_lo"] <= truth <= tab.loc[e, "ci_hi"], (control, e, tab.loc[e], truth)
            assert tab.loc[e, "cband_lo"] <= truth <= tab.loc[e, "cband_hi"]
        # pre-periods: no effect planted
        assert (tab.loc[tab.index < 0, "cband_lo"] <= 0).all() and (tab.loc[tab.index < 0, "cband_hi"] >= 0).all()
        # TWFE: far from the truth, beyond 10 of its own SEs and by more than half of the truth
        b, se = twfe.params["D"], twfe.bse["D"]
        assert abs(b - truth_simple) > 10 * se and abs(b - truth_simple) > 0.5 * truth_simple, (b, truth_simple)
        assert twfe.conf_int().loc["D", 1] < truth_simple


# --------------------------------------------------------------------------- 3. null and pre-trend


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_null_effect_and_planted_pretrend(control):
    null = estimate_att_gt(simulate(n=1500, seed=21), **KW, control=control, bootstrap=0)
    assert null.pretrend.n_cells == 9 and null.pretrend.df == 9
    assert null.pretrend.p_value > 0.05
    for kind in AGGREGATIONS:
        a = null.aggregate(kind)
        assert a.ci[0] <= 0 <= a.ci[1], (kind, a.estimate, a.ci)

    planted = estimate_att_gt(simulate(n=1500, seed=21, pre_bump=0.5), **KW, control=control,
                              bootstrap=0)
    assert planted.pretrend.p_value < 1e-4
    # the bump appears in the e = -1 placebo cells
    e1 = planted.aggregate("dynamic").table.set_index("event_time").loc[-1]
    assert e1["ci_lo"] > 0.2


# --------------------------------------------------------------------------- 4. doubly robust


def _effect_const(g, e):
    return 1.0 + 0.5 * e


def test_doubly_robust_recovers_truth_when_trends_depend_on_a_covariate():
    df = simulate(n=2000, seed=8, effect=_effect_const, x_shift=0.8, x_trend=0.5)
    unadj = estimate_att_gt(df, **KW, bootstrap=0)
    dr = estimate_att_gt(df, **KW, covariates=["x"], bootstrap=0)
    truth_simple, truth_dyn = true_aggregates(dr, _effect_const)
    s_un, s_dr = unadj.aggregate("simple"), dr.aggregate("simple")
    # unconditional parallel trends fail: biased far outside its CI; pre-trends flag it
    assert s_un.ci[0] > truth_simple + 0.5
    assert unadj.pretrend.p_value < 1e-6
    # doubly robust: truth inside CIs, no pre-trend
    assert s_dr.ci[0] <= truth_simple <= s_dr.ci[1], (s_dr.estimate, truth_simple)
    tab = dr.aggregate("dynamic").table.set_index("event_time")
    for e, truth in truth_dyn.items():
        assert tab.loc[e, "ci_lo"] <= truth <= tab.loc[e, "ci_hi"], (e, tab.loc[e], truth)
    assert dr.pretrend.p_value > 0.05
    assert dr.covariates == ("x",) and "doubly robust" in dr.method


def test_doubly_robust_formula_and_double_robustness():
    """(a) one cell against the Sant'Anna-Zhao formula computed here from statsmodels fits;
    (b) outcome model wrong (trend in x squared, OLS linear in x) but propensity model right
    (x normal with a shifted mean among the treated: the logit in x is exact): still unbiased."""
    df = simulate(n=3000, seed=15, effect=_effect_const, x_shift=0.8, x_trend=0.5)
    df["y"] = df["y"] + 0.4 * df["x"] ** 2 * df["t"]
    dr = estimate_att_gt(df, **KW, covariates=["x"], bootstrap=0)
    w = df.pivot(index="id", columns="t", values="y")
    first = df.drop_duplicates("id").set_index("id")
    sub = first["g"].isin([5, 0])
    dy = (w[7] - w[4])[sub].to_numpy()
    d = (first.loc[sub, "g"] == 5).to_numpy(float)
    X = sm.add_constant(first.loc[sub, "x"].to_numpy())
    ps = sm.Logit(d, X).fit(disp=0).predict(X)
    m = X @ sm.OLS(dy[d == 0], X[d == 0]).fit().params
    w0 = (1 - d) * ps / (1 - ps)
    expected = np.mean((dy - m)[d == 1]) - np.sum(w0 * (dy - m)) / np.sum(w0)
    got = dr.tidy().set_index(["group", "time"]).loc[(5, 7), "att"]
    assert got == pytest.approx(expected, abs=1e-8)

    truth_simple, truth_dyn = true_aggregates(dr, _effect_const)
    s_dr = dr.aggregate("simple")
    assert s_dr.ci[0] <= truth_simple <= s_dr.ci[1], (s_dr.estimate, truth_simple)
    s_un = estimate_att_gt(df, **KW, bootstrap=0).aggregate("simple")
    assert s_un.ci[0] > truth_simple + 0.5


def test_doubly_robust_without_confounding_matches_difference_of_means_closely():
    df = simulate(n=800, periods=4, cohorts=(3, 4), shares=(0.3, 0.3), seed=4, effect=_effect_const)
    a = estimate_att_gt(df, **KW, bootstrap=0).tidy()
    b = estimate_att_gt(df, **KW, covariates=["x"], bootstrap=0).tidy()
    # x is unrelated to treatment and outcome: adjustment moves estimates by well under one SE
    assert np.all(np.abs(a["att"] - b["att"]) < 0.5 * a["se"])


# --------------------------------------------------------------------------- 5. SE agreement


def test_analytic_se_agrees_with_multiplier_bootstrap():
    res = estimate_att_gt(simulate(n=1500, seed=2, effect=_effect_dynamic), **KW, control="notyet",
                          bootstrap=1999, seed=11, multiplier="mammen")
    ratio = res.cells["se_boot"] / res.cells["se"]
    assert ratio.between(0.85, 1.15).all(), ratio.describe()
    # uniform band is wider than the pointwise interval, but not absurdly
    assert 1.96 < res.crit_uniform < 4.0
    for kind in ("dynamic", "group", "calendar"):
        t = res.aggregate(kind).table
        assert (t["se_boot"] / t["se"]).between(0.85, 1.15).all(), (kind, t)
    rad = estimate_att_gt(simulate(n=1500, seed=2, effect=_effect_dynamic), **KW, control="notyet",
                          bootstrap=1999, seed=11, multiplier="rademacher")
    assert (rad.cells["se_boot"] / rad.cells["se"]).between(0.85, 1.15).all()


def test_doubly_robust_analytic_se_agrees_with_resampling_units():
    """The DR influence function (propensity and outcome-model estimation included) against a
    nonparametric bootstrap that resamples whole units and re-estimates everything."""
    df = simulate(n=600, periods=4, cohorts=(3, 4), shares=(0.35, 0.35), seed=6,
                  effect=_effect_const, x_shift=0.8, x_trend=0.5)
    kw = dict(KW, covariates=["x"], bootstrap=0)
    res = estimate_att_gt(df, **kw)
    arr = df.sort_values(["id", "t"]).to_numpy()
    T = 4
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(120):
        pick = rng.integers(0, 600, 600)
        rows = (pick[:, None] * T + np.arange(T)).ravel()
        bd = pd.DataFrame(arr[rows], columns=df.sort_values(["id", "t"]).columns)
        bd["id"] = np.repeat(np.arange(600), T)
        bd = bd.astype(float)
        r = estimate_att_gt(bd, **kw)
        draws.append([r.aggregate("simple").estimate, *r.cells["att"]])
    sd = np.std(draws, axis=0, ddof=1)
    analytic = np.array([res.aggregate("simple").se, *res.cells["se"]])
    ratio = analytic / sd
    assert np.all((ratio > 0.75) & (ratio < 1.25)), ratio


# --------------------------------------------------------------------------- result API


def test_result_api_and_json():
    res = estimate_att_gt(simulate(n=400, seed=9, effect=_effect_const), **KW, bootstrap=199)
    txt = describe(res)
    assert "Callaway" in txt and "Pre-trend test" in txt and "simple" in txt
    d = json.loads(res.to_json())
    assert len(d["group_time"]) == len(res.cells) == 3 * 7
    assert set(d["aggregations"]) == set(AGGREGATIONS)
    for a in d["aggregations"].values():
        assert a["se"] > 0 and a["ci95"][0] < a["estimate"] < a["ci95"][1]
    assert 0 <= d["pretrend_test"]["p_value"] <= 1
    with pytest.raises(ValueError, match="kind"):
        res.aggregate("nonsense")
    with pytest.raises(AttributeError):
        res.outcome = "z"  # frozen
    with pytest.raises(ValueError, match="not found: nope"):
        estimate_att_gt(hand_panel(), unit="id", time="t", cohort="g", outcome="nope")
    with pytest.raises(ValueError, match="never-treated"):
        estimate_att_gt(hand_panel().query("g > 0"), **KW, control="never")


# --------------------------------------------------------------------------- 6. CLI


def ltceval(*args):
    return subprocess.run([sys.executable, "-m", "ltceval.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_round_trip(tmp_path):
    df = simulate(n=300, seed=12, effect=_effect_const).rename(columns={"y": "cost", "g": "first_month"})
    df.loc[df["first_month"] == 0, "first_month"] = np.nan  # never treated as empty cells
    panel = tmp_path / "panel.csv"
    df.to_csv(panel, index=False)
    out = tmp_path / "out" / "did.json"
    proc = ltceval("did", str(panel), "--unit", "id", "--time", "t", "--cohort", "first_month",
                   "--outcome", "cost", "--control", "notyet", "--covariates", "x",
                   "--bootstrap", "199", "--seed", "5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(out.read_text())
    lib = estimate_att_gt(df, unit="id", time="t", cohort="first_month", outcome="cost",
                          control="notyet", covariates=["x"], bootstrap=199, seed=5)
    got = pd.DataFrame(d["group_time"])
    assert len(got) == len(lib.cells)
    np.testing.assert_allclose(got["att"], lib.cells["att"], rtol=1e-12)
    np.testing.assert_allclose(got["se"], lib.cells["se"], rtol=1e-12)
    np.testing.assert_allclose(got["cband_lo"], lib.cells["cband_lo"], rtol=1e-12)
    for kind in AGGREGATIONS:
        a = d["aggregations"][kind]
        assert a["estimate"] == pytest.approx(lib.aggregate(kind).estimate, rel=1e-12)
        assert a["se"] > 0 and len(a["ci95"]) == 2
    assert d["pretrend_test"]["df"] == 9 and d["control_group"] == "notyet"
    assert "simple ATT" in proc.stdout


def _bad_input(tmp_path, case):
    panel = tmp_path / "panel.csv"
    hand_panel().to_csv(panel, index=False)
    outcome, extra = "y", []
    if case == "missing_column":
        outcome = "costs"
    elif case == "text_time":
        hand_panel().assign(t=lambda d: "month " + d["t"].astype(str)).to_csv(panel, index=False)
    elif case == "empty":
        panel.write_text("")
    elif case == "header_only":
        panel.write_text("id,t,g,y\n")
    elif case == "no_file":
        panel = tmp_path / "absent.csv"
    elif case == "text_cohort":
        hand_panel().assign(g="soon").to_csv(panel, index=False)
    else:
        extra = ["--control", "sometimes"]
    return ["did", str(panel), "--unit", "id", "--time", "t", "--cohort", "g", "--outcome", outcome,
            *extra, "--json", str(tmp_path / "o.json")]


def _check_one_line(tmp_path, case, stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltceval: error:"), stderr
    assert "Traceback" not in stderr
    if case != "bad_control":
        assert "panel.csv" in lines[0] or "absent.csv" in lines[0], lines[0]
    expected = {"missing_column": "costs", "text_time": "'t'", "empty": "empty",
                "header_only": "no rows", "text_cohort": "'g'", "bad_control": "sometimes"}
    if case in expected:
        assert expected[case] in lines[0], lines[0]
    assert not (tmp_path / "o.json").exists()


def test_cli_bad_input_in_a_real_process(tmp_path):
    proc = ltceval(*_bad_input(tmp_path, "text_time"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _check_one_line(tmp_path, "text_time", proc.stderr)


@pytest.mark.parametrize("case", ["missing_column", "text_time", "empty", "header_only", "no_file",
                                  "text_cohort", "bad_control"])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, case):
    from ltceval.cli import main

    assert main(_bad_input(tmp_path, case)) == 2
    _check_one_line(tmp_path, case, capsys.readouterr().err)
