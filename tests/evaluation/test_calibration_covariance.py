"""The correlation-aware calibrated standard error (evaluation.calibration.null_error_se,
evaluation.methods.calibration.allowing_for_the_correlated_null_s_error): the outcome's log rate
ratio and the empirical null's fitted mean are estimated on the same matched people, so the
standard error of (estimate - null mean) subtracts their covariance, taken from the DiDs'
cluster influence values (CountDiDResult.log_rate_ratio_influence).

The panel: simulated matched sets in which the five outpatient negative controls are parts of
the outpatient outcome (a multinomial split of each month's attendances), as in the warehouse,
so the outcome and the controls are positively correlated."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from simpanel import simulate_panel

from core.contract import NEGATIVE_CONTROLS
from evaluation.calibration import calibrate_outcomes, influence_covariance, null_error_se
from evaluation.did import estimate_poisson_dids, estimate_outcome
from evaluation.methods import calibration as ec
from evaluation.methods.poisson_fe import fit_poisson_fe
from evaluation.panel import ID_COLUMNS, comparison_months, prepare_panel

OUTPATIENT_CONTROLS = [c for c in NEGATIVE_CONTROLS if c.endswith("_attendances")]
SHARE = 0.1  # of the outpatient attendances, per outpatient control


@pytest.fixture(scope="module")
def panel():
    raw = simulate_panel(n_sets=300, rate_ratio=1.0, seed=41, negative_controls=1.0)
    rng = np.random.default_rng(3)
    split = rng.multinomial(raw["outpatient_attendances"].to_numpy(),
                            [SHARE] * len(OUTPATIENT_CONTROLS) + [1 - SHARE * len(OUTPATIENT_CONTROLS)])
    for k, c in enumerate(OUTPATIENT_CONTROLS):
        raw[c] = split[:, k]
    return prepare_panel(raw)


@pytest.fixture(scope="module")
def dids(panel):
    return estimate_poisson_dids(panel, ["outpatient_attendances", "ae_attendances", *NEGATIVE_CONTROLS])


def _null(dids, names):
    return ec.fit_null([dids[c].log_rate_ratio for c in names], [dids[c].se_log_rate_ratio for c in names])


def _weights(dids, names, sd):
    w = np.array([1 / (dids[c].se_log_rate_ratio ** 2 + sd**2) for c in names])
    return w / w.sum()


def test_influence_values_give_the_standard_error(dids):
    for d in dids.values():
        v = d.log_rate_ratio_influence
        assert len(v) > 0 and v.name == d.outcome
        assert math.sqrt(float((v**2).sum())) == pytest.approx(d.se_log_rate_ratio, rel=1e-12)


def test_influence_covariance_is_the_cluster_robust_covariance_of_the_stacked_model(panel, dids):
    """Two outcomes stacked in one conditional Poisson fit (a unit per person and outcome, the
    relative-month effects and treated x post per outcome, clustered on the matched set): its
    sandwich covariance of the two treated x post coefficients is what the separate fits'
    influence values give, to rounding."""
    a, b = "outpatient_attendances", OUTPATIENT_CONTROLS[0]
    df = panel[panel["period"].isin(["pre", "post"])]
    pre = comparison_months(df)
    levels = [m for m in sorted(df["rel_month"].unique()) if m != pre[-1]]
    blocks = []
    for k, o in enumerate((a, b)):
        X = pd.DataFrame(0.0, index=df.index, columns=[f"{n}_{j}" for j in range(2)
                                                        for n in [*(f"rel_{m}" for m in levels), "treated_post"]])
        for m in levels:
            X[f"rel_{m}_{k}"] = (df["rel_month"] == m).astype(float)
        X[f"treated_post_{k}"] = df["treated_post"].astype(float)
        blocks.append((X, df[o].to_numpy(), (df["unit_id"].astype(str) + f"#{k}").to_numpy()))
    X = pd.concat([x for x, _, _ in blocks], ignore_index=True)
    fit = fit_poisson_fe(np.concatenate([y for _, y, _ in blocks]), X,
                         np.tile(df["exposure_months"].to_numpy(), 2),
                         np.concatenate([u for _, _, u in blocks]),
                         np.tile(df["cluster_id"].to_numpy(), 2), np.tile(df["weight"].to_numpy(), 2))
    stacked = fit.cov.loc[["treated_post_0", "treated_post_1"], ["treated_post_0", "treated_post_1"]].to_numpy()
    V = influence_covariance([dids[a], dids[b]])
    assert fit.params["treated_post_0"] == pytest.approx(dids[a].log_rate_ratio, abs=1e-8)
    np.testing.assert_allclose(V, stacked, rtol=1e-6)
    assert V[0, 1] > 0.2 * math.sqrt(V[0, 0] * V[1, 1])  # a part of the outcome: correlated


@pytest.mark.slow
def test_influence_covariance_agrees_with_a_cluster_bootstrap(panel, dids):
    """Matched sets resampled with replacement, 300 times, both DiDs re-fitted: the bootstrap
    correlation of the outpatient outcome and one outpatient control is within 0.15 of the
    influence values' (its Monte Carlo SE is about (1 - r^2) / sqrt(300) = 0.05), and the
    bootstrap variance of their difference is within 20% of se_a^2 + se_b^2 - 2 cov (MC SE
    sqrt(2 / 300) = 8%) and nearer to it than to the independent se_a^2 + se_b^2."""
    a, b = "outpatient_attendances", OUTPATIENT_CONTROLS[0]
    rng = np.random.default_rng(17)
    sets, set_of_row = np.unique(panel["matched_set_id"].to_numpy(), return_inverse=True)
    rows_of = [np.flatnonzero(set_of_row == s) for s in range(len(sets))]
    ids = {c: pd.factorize(panel[c])[0].astype(np.int64) for c in ID_COLUMNS[:3]}
    reps = []
    for _ in range(300):
        pick = rng.integers(0, len(sets), len(sets))
        rows = np.concatenate([rows_of[s] for s in pick])
        copy = np.repeat(np.arange(len(pick)), [len(rows_of[s]) for s in pick])
        boot = panel.iloc[rows].reset_index(drop=True)
        for c, codes in ids.items():  # a set drawn twice is two sets, of different people
            boot[c] = codes[rows] * len(pick) + copy
        r = estimate_poisson_dids(boot, [a, b])
        reps.append([r[a].log_rate_ratio, r[b].log_rate_ratio])
    Vb = np.cov(np.array(reps).T)
    V = influence_covariance([dids[a], dids[b]])
    r_if = V[0, 1] / math.sqrt(V[0, 0] * V[1, 1])
    r_boot = Vb[0, 1] / math.sqrt(Vb[0, 0] * Vb[1, 1])
    assert abs(r_boot - r_if) < 0.15
    var_diff = V[0, 0] + V[1, 1] - 2 * V[0, 1]
    boot_diff = Vb[0, 0] + Vb[1, 1] - 2 * Vb[0, 1]
    assert boot_diff == pytest.approx(var_diff, rel=0.2)
    assert abs(boot_diff - var_diff) < abs(boot_diff - (V[0, 0] + V[1, 1]))


def test_an_outcome_that_is_a_control_gets_the_variance_of_its_difference_from_the_mean(dids):
    """Perfect correlation: the outcome is one of the controls. The variance of (b - mu_hat) is
    then that of the influence values of the difference b_j - sum a_k b_k, plus the null's
    systematic variance of the weighted mean, sd^2 sum a_k^2 - whatever the null's sd."""
    names = list(NEGATIVE_CONTROLS)
    fitted = _null(dids, names)
    for null in (fitted, dataclasses.replace(fitted, sd=0.15)):
        a = _weights(dids, names, null.sd)
        M = pd.concat([dids[c].log_rate_ratio_influence for c in names], axis=1).fillna(0.0)
        for j, c in enumerate(names):
            diff = M.iloc[:, j] - M.to_numpy() @ a
            direct = float((diff**2).sum()) + null.sd**2 * float(a @ a)
            V = influence_covariance([dids[c], *(dids[k] for k in names)])
            se = ec.allowing_for_the_correlated_null_s_error(
                dids[c].se_log_rate_ratio, null, [dids[k].log_rate_ratio for k in names],
                [dids[k].se_log_rate_ratio for k in names], V[0, 1:], V[1:, 1:])
            assert se**2 == pytest.approx(max(direct, ec.MIN_VARIANCE_SHARE * dids[c].se_log_rate_ratio**2),
                                          rel=1e-10)
            assert se < ec.allowing_for_the_null_s_error(dids[c].se_log_rate_ratio, null)


def test_without_covariances_it_is_the_independent_formula(dids):
    names = list(NEGATIVE_CONTROLS)
    null = _null(dids, names)
    x = [dids[c].log_rate_ratio for c in names]
    s = np.array([dids[c].se_log_rate_ratio for c in names])
    for se in (0.01, 0.06, 0.3, 1.2):
        old = ec.allowing_for_the_null_s_error(se, null)
        assert ec.allowing_for_the_correlated_null_s_error(se, null, x, s, np.zeros(len(s))) == pytest.approx(old, rel=1e-12)
        assert ec.allowing_for_the_correlated_null_s_error(se, null, x, s, np.zeros(len(s)), np.diag(s**2)) == \
            pytest.approx(old, rel=1e-12)


def test_the_variance_is_clipped_at_a_share_of_the_outcome_s_own(dids):
    names = list(NEGATIVE_CONTROLS)
    null = _null(dids, names)
    x = [dids[c].log_rate_ratio for c in names]
    s = [dids[c].se_log_rate_ratio for c in names]
    se = 0.05
    got = ec.allowing_for_the_correlated_null_s_error(se, null, x, s, np.full(len(s), 10.0))
    assert got == pytest.approx(math.sqrt(ec.MIN_VARIANCE_SHARE) * se, rel=1e-12)


def test_controls_that_are_not_those_of_the_null_are_refused(dids):
    names = list(NEGATIVE_CONTROLS)
    null = _null(dids, names)
    with pytest.raises(ValueError, match="null was fitted on"):
        ec.allowing_for_the_correlated_null_s_error(
            0.1, null, [dids[c].log_rate_ratio for c in names[:-1]],
            [dids[c].se_log_rate_ratio for c in names[:-1]], np.zeros(len(names) - 1))


@pytest.fixture(scope="module")
def estimates(panel):
    return {o: estimate_outcome(panel, o) for o in ("outpatient_attendances", "ae_attendances", *NEGATIVE_CONTROLS)}


def test_calibrate_outcomes_uses_the_correlation_aware_error_and_narrows_the_correlated_interval(estimates):
    controls = {c: estimates[c] for c in NEGATIVE_CONTROLS}
    outcomes = {o: estimates[o] for o in ("outpatient_attendances", "ae_attendances")}
    cal = calibrate_outcomes(controls, outcomes)
    assert cal.available and not any("influence" in n for n in cal.notes)
    used = [controls[c].did for c in NEGATIVE_CONTROLS if cal.controls[c]["usable"]]
    op = estimates["outpatient_attendances"].did
    se, correlated = null_error_se(op, used, cal.null)
    assert correlated
    ci = ec.calibrate_confidence_interval(op.log_rate_ratio, se, cal.model)
    got = cal.outcomes["outpatient_attendances"].calibrated_ci
    assert got == pytest.approx((math.exp(ci.log_lb[0]), math.exp(ci.log_ub[0])), rel=1e-12)
    old = ec.calibrate_confidence_interval(
        op.log_rate_ratio, ec.allowing_for_the_null_s_error(op.se_log_rate_ratio, cal.null), cal.model)
    assert got[1] / got[0] < math.exp(old.log_ub[0] - old.log_lb[0])  # narrower: the shared error is not counted twice


def test_without_influence_values_it_falls_back_and_says_so(estimates):
    """Estimates saved before the influence values were kept: the independent formula, and a note."""
    def without(e):
        return dataclasses.replace(e, did=dataclasses.replace(e.did, log_rate_ratio_influence=pd.Series(dtype=float)))

    controls = {c: estimates[c] for c in NEGATIVE_CONTROLS}
    outcomes = {"outpatient_attendances": without(estimates["outpatient_attendances"])}
    cal = calibrate_outcomes(controls, outcomes)
    op = outcomes["outpatient_attendances"].did
    old = ec.calibrate_confidence_interval(
        op.log_rate_ratio, ec.allowing_for_the_null_s_error(op.se_log_rate_ratio, cal.null), cal.model)
    assert cal.outcomes["outpatient_attendances"].calibrated_ci == pytest.approx(
        (math.exp(old.log_lb[0]), math.exp(old.log_ub[0])), rel=1e-12)
    assert any("no cluster influence values" in n and "Outpatient attendances" in n for n in cal.notes)
