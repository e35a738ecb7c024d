"""Parallel-trends sensitivity (evaluation.methods.honest, Rambachan and Roth 2023): the R package
HonestDiD's published example reproduced to 1e-3, the project's faster linear programmes equal
to the library's own, and the two adapters (matched event study, `ltceval did` dynamic
aggregation) on simulated data with known structure."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.did import estimate_event_study
from evaluation.methods.honest import (dynamic_sensitivity, event_study_sensitivity,
                                       honest_sensitivity, sensitivity_to_dict)
from evaluation.methods.staggered import estimate_att_gt

EXAMPLE = json.loads((Path(__file__).parent / "data" / "honestdid_medicaid_example.json").read_text())


@pytest.fixture(scope="module")
def medicaid():
    pub = EXAMPLE["published"]
    res = honest_sensitivity(EXAMPLE["betahat"], EXAMPLE["sigma"], EXAMPLE["num_pre_periods"],
                             EXAMPLE["num_post_periods"], [1.0, 0.0], "first post period",
                             mbar_grid=pub["relative_magnitudes_C_LF"]["mbar"],
                             m_grid=pub["smoothness_FLCI"]["m"])
    return res, pub


def test_relative_magnitudes_reproduce_the_r_package_published_intervals(medicaid):
    res, pub = medicaid
    want = pub["relative_magnitudes_C_LF"]
    np.testing.assert_allclose(res.relative_magnitudes["mbar"], want["mbar"])
    np.testing.assert_allclose(res.relative_magnitudes["lb"], want["lb"], atol=1e-3)
    np.testing.assert_allclose(res.relative_magnitudes["ub"], want["ub"], atol=1e-3)
    assert set(res.relative_magnitudes["method"]) == {"C-LF"}


def test_smoothness_reproduces_the_r_package_published_intervals(medicaid):
    res, pub = medicaid
    want = pub["smoothness_FLCI"]
    np.testing.assert_allclose(res.smoothness["lb"], want["lb"], atol=1e-3)
    np.testing.assert_allclose(res.smoothness["ub"], want["ub"], atol=1e-3)
    assert set(res.smoothness["method"]) == {"FLCI"}


def test_breakdown_values_are_those_the_r_readme_reads_off(medicaid):
    res, pub = medicaid
    assert res.breakdown_mbar == pub["breakdown"]["mbar"]
    assert res.breakdown_m == pub["breakdown"]["m"]
    assert res.ci[0] > 0  # significant under exact parallel trends


def test_fast_linear_programmes_give_the_library_s_own_intervals():
    kw = dict(betahat=EXAMPLE["betahat"], sigma=EXAMPLE["sigma"], n_pre=5, n_post=2, l_vec=[0.5, 0.5],
              target="average", mbar_grid=[1.0], m_grid=[0.01])
    fast, slow = honest_sensitivity(**kw, fast=True), honest_sensitivity(**kw, fast=False)
    np.testing.assert_allclose(fast.relative_magnitudes[["lb", "ub"]], slow.relative_magnitudes[["lb", "ub"]],
                               atol=1e-6)
    np.testing.assert_allclose(fast.smoothness[["lb", "ub"]], slow.smoothness[["lb", "ub"]], atol=1e-6)


def _moment_inequalities(seed=3, n_rows=40, k=10):
    """A least-favourable/conditional-test programme the size of the project's monthly event
    studies: 40 moments, 10 nuisance directions, correlated moments."""
    rng = np.random.default_rng(seed)
    x_t = rng.normal(size=(n_rows, k))
    root = rng.normal(size=(n_rows, n_rows)) / np.sqrt(n_rows)
    return x_t, root @ root.T + 0.1 * np.eye(n_rows), rng


def test_fast_least_favourable_critical_value_is_the_library_s():
    from moderndid.didhonest import arp_nuisance

    from evaluation.methods.honest import _fast_lf_cv
    x_t, sigma, _ = _moment_inequalities()
    for seed in (0, 1):
        want = arp_nuisance.compute_least_favorable_cv(x_t, sigma, 0.05, sims=1000, seed=seed)
        assert _fast_lf_cv(x_t, sigma, 0.05, sims=1000, seed=seed) == pytest.approx(want, abs=1e-7)


def test_fast_conditional_test_programmes_are_the_library_s():
    from moderndid.didhonest import arp_nuisance

    from evaluation.methods.honest import _fast_max_program, _fast_test_delta_lp
    x_t, sigma, rng = _moment_inequalities()
    for _ in range(5):
        y_t = rng.multivariate_normal(np.zeros(len(sigma)), sigma)
        want, got = arp_nuisance._test_delta_lp(y_t, x_t, sigma), _fast_test_delta_lp(y_t, x_t, sigma)
        assert got["success"] and got["eta_star"] == pytest.approx(want["eta_star"], abs=1e-8)
        np.testing.assert_allclose(got["lambda"], want["lambda"], atol=1e-8)
    gamma = want["lambda"] / want["lambda"].sum()
    w_t = np.column_stack([np.sqrt(np.diag(sigma)), x_t])
    s_t = y_t - sigma @ gamma * float(gamma @ y_t) / float(gamma @ sigma @ gamma)
    solved = 0
    for c in np.linspace(-5, 5, 41):  # a bisection's path: the last basis mostly stays optimal
        want = arp_nuisance._solve_max_program(s_t, gamma, sigma, w_t, c)
        got = _fast_max_program(s_t, gamma, sigma, w_t, c)
        assert got.success == want.success
        if want.success:
            solved += 1
            assert got.objective_value == pytest.approx(want.objective_value, abs=1e-8)
    assert solved > 30


def test_shape_errors_are_refused():
    with pytest.raises(ValueError):
        honest_sensitivity([0.0, 1.0], np.eye(3), 1, 1, [1.0], "x")


# --------------------------------------------------------------------------- matched event study


def test_matched_event_study_sensitivity(effect_panel):
    es = estimate_event_study(effect_panel, "gp_appointments")
    assert es.bin_months == 1
    sens = event_study_sensitivity(es, mbar_grid=(0.0, 1.0), m_grid=(0.0, 0.01))
    post = es.coefs[es.coefs["period"] == "post"].sort_values("first_month")
    avg, first = sens["post_average"], sens["first_post"]
    assert avg.estimate == pytest.approx(post["log_rr"].mean(), rel=1e-12)
    assert first.estimate == pytest.approx(post["log_rr"].iloc[0], rel=1e-12)
    # monthly bins: every month from -12 up to the reference is a pre coefficient, every month
    # after it (selection window if any, the index month, the post period) goes in after it
    ref = int(es.coefs.loc[es.coefs["reference"], "first_month"].iloc[0])
    assert (avg.n_pre, avg.n_post) == (ref + 12, 12 - ref)
    rm = avg.relative_magnitudes.set_index("mbar")
    assert rm.loc[1.0, "lb"] <= rm.loc[0.0, "lb"] and rm.loc[1.0, "ub"] >= rm.loc[0.0, "ub"]
    doc = sensitivity_to_dict(sens, exponentiate=True)
    row = doc["post_average"]["relative_magnitudes"][1]
    assert row["ratio_lb"] == pytest.approx(np.exp(row["lb"]))


def test_event_study_with_unestimable_bins_says_so(effect_panel):
    es = estimate_event_study(effect_panel, "gp_appointments")
    coefs = es.coefs.copy()
    coefs.loc[coefs["first_month"] == -10, "log_rr"] = np.nan
    broken = type(es)(**{**es.__dict__, "coefs": coefs})
    sens = event_study_sensitivity(broken)
    assert sens["post_average"] is None and "not estimable" in sens["notes"][0]


# --------------------------------------------------------------------------- ltceval did, dynamic


def _single_cohort_panel(n=4000, periods=8, g=5, slope=0.0, effect=0.0, seed=3):
    """Never-treated units and one cohort first treated at period g; treated units' outcome has
    an extra linear trend `slope` per period (a violation of parallel trends) and a constant effect."""
    rng = np.random.default_rng(seed)
    treated = rng.random(n) < 0.5
    ts = np.arange(1, periods + 1)
    y = rng.normal(size=n)[:, None] + 0.3 * ts + rng.normal(size=(n, periods))
    y[treated] += slope * ts + effect * (ts >= g)
    return pd.DataFrame({"id": np.repeat(np.arange(n), periods), "t": np.tile(ts, n),
                         "g": np.repeat(np.where(treated, g, 0), periods), "y": y.ravel()})


def test_dynamic_pre_coefficients_are_put_on_the_reference_period():
    df = _single_cohort_panel()
    res = estimate_att_gt(df, unit="id", time="t", cohort="g", outcome="y", control="never")
    sens = dynamic_sensitivity(res, mbar_grid=(1.0,), m_grid=(0.0,))
    wide = df.pivot(index="id", columns="t", values="y")
    tr = df.groupby("id")["g"].first() == 5
    base = wide[4]
    for c in sens["coefficients"]:
        t = 5 + c["event_time"]
        d = wide[t] - base
        assert c["estimate"] == pytest.approx(d[tr].mean() - d[~tr].mean(), abs=1e-10)
    assert [c["event_time"] for c in sens["coefficients"]] == [-4, -3, -2, 0, 1, 2, 3]


def test_smoothness_bound_zero_removes_a_linear_pre_trend():
    # treated units drift up 0.15 a period: theta(0) is biased by +0.15, the usual interval
    # misses the true effect 0; the M = 0 interval extrapolates the linear trend and covers it
    df = _single_cohort_panel(slope=0.15, effect=0.0)
    res = estimate_att_gt(df, unit="id", time="t", cohort="g", outcome="y", control="never")
    first = dynamic_sensitivity(res, mbar_grid=(0.0,), m_grid=(0.0,))["first_post"]
    assert first.ci[0] > 0
    sd = first.smoothness.iloc[0]
    assert sd["lb"] <= 0 <= sd["ub"]
    assert first.breakdown_m == 0.0


def test_ltceval_did_json_has_the_honest_block(tmp_path):
    import subprocess
    import sys

    df = _single_cohort_panel(n=600, periods=6, g=4, effect=1.0)
    panel = tmp_path / "panel.csv"
    df.to_csv(panel, index=False)
    out = tmp_path / "did.json"
    proc = subprocess.run([sys.executable, "-m", "ltceval.cli", "did", str(panel), "--unit", "id", "--time", "t",
                           "--cohort", "g", "--outcome", "y", "--bootstrap", "0", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    honest = json.loads(out.read_text())["honest"]
    res = estimate_att_gt(df, unit="id", time="t", cohort="g", outcome="y", control="never")
    dyn = res.aggregate("dynamic")
    avg = honest["post_average"]
    assert avg["estimate"] == pytest.approx(dyn.estimate, rel=1e-10)
    assert [r["mbar"] for r in avg["relative_magnitudes"]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert len(avg["smoothness"]) == 5 and "standard error" in honest["m_grid_basis"]
    assert honest["first_post"]["target"] == "theta(e = 0)"
    assert "breakdown_mbar" in avg and "Rambachan" in honest["method"]["reference"]
    assert "breakdown of the dynamic ATT" in proc.stdout


def test_one_pre_period_coefficient_gives_smoothness_intervals_and_ends():
    # 3-month bins leave one comparison-period coefficient: the library's FLCI search then has
    # equal ends and, unguarded, never stops; relative magnitudes need two and are left out
    rng = np.random.default_rng(4)
    A = rng.normal(size=(4, 4))
    S = (A @ A.T + 4 * np.eye(4)) * 1e-3
    b = np.array([0.02, -0.1, -0.12, -0.08])
    res = honest_sensitivity(b, S, 1, 3, [1 / 3] * 3, "average", m_grid=(0.0, 0.01))
    assert res.relative_magnitudes.empty and "at least 2" in res.notes[0]
    assert np.isfinite(res.smoothness[["lb", "ub"]].to_numpy()).all()
    # M = 0 with one pre coefficient: the line through it and the reference, extrapolated
    assert (res.smoothness["lb"] <= res.smoothness["ub"]).all()
