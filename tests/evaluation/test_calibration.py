"""Empirical calibration against the R package EmpiricalCalibration 3.1.4: its bundled sccs and
southworthReplication data and the figures its vignettes, README and testthat files print, all
transcribed with their source in data/empirical_calibration_reference.json; then behaviour on
simulated negative controls and the module's refusals."""
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from evaluation.methods import calibration as cal
from evaluation.methods.calibration import (
    EmpiricalNull,
    SystematicErrorModel,
    calibrate_confidence_interval,
    calibrate_p,
    expected_absolute_systematic_error,
    fit_null,
    fit_systematic_error_model,
)

REF = json.loads((Path(__file__).parent / "data" / "empirical_calibration_reference.json").read_text())
PUB = REF["published"]


def _arr(values):
    return np.array([np.nan if v is None else v for v in values], dtype=float)


@pytest.fixture(scope="module")
def sccs():
    d = REF["sccs"]
    truth = np.array(d["groundTruth"])
    lr, se = _arr(d["logRr"]), _arr(d["seLogRr"])
    return {"neg": (lr[truth == 0], se[truth == 0]), "pos": (lr[truth == 1], se[truth == 1])}


@pytest.fixture(scope="module")
def southworth():
    d = REF["southworthReplication"]
    true, lr, se = _arr(d["trueLogRr"]), _arr(d["logRr"]), _arr(d["seLogRr"])
    controls = ~np.isnan(true)
    return {"controls": (lr[controls], se[controls], true[controls]),
            "neg": (lr[true == 0], se[true == 0]),
            "interest": (lr[~controls], se[~controls])}


@pytest.fixture(scope="module")
def sccs_null(sccs):
    return fit_null(*sccs["neg"])


# ------------------------------------------------------------------ the transcribed data


def test_transcribed_data_agree_with_the_rows_the_vignettes_print(sccs, southworth):
    # head(negatives) / drugOfInterest in the p-value vignette, head() in the CI vignette
    d = REF["sccs"]
    printed = {"Thiothixene": (0.4339021, 0.7617538), "Disulfiram": (1.6919273, 0.5955222),
               "Prochlorperazine": (0.8581890, 0.1308460), "Sertraline": (0.7326235, 0.07371708)}
    for name, (lr, se) in printed.items():
        i = d["drugName"].index(name)
        assert d["logRr"][i] == pytest.approx(lr, rel=1e-6)  # R prints 7 significant digits
        assert d["seLogRr"][i] == pytest.approx(se, rel=1e-6)
    assert len(sccs["neg"][0]) == 45 and len(sccs["pos"][0]) == 1
    assert southworth["interest"][0][0] == pytest.approx(-0.3575234, rel=1e-6)
    assert southworth["interest"][1][0] == pytest.approx(0.06668903, rel=1e-6)
    assert len(southworth["controls"][0]) == 172 and len(southworth["neg"][0]) == 49


# ------------------------------------------------------------------ agreement with R


def test_fit_null_matches_the_p_value_vignette(sccs_null):
    ref = PUB["p_vignette_null"]  # printed to 4 decimals
    assert sccs_null.mean == pytest.approx(ref["mean"], abs=5e-5)
    assert sccs_null.sd == pytest.approx(ref["sd"], abs=5e-5)
    assert sccs_null.n_controls == 45 and sccs_null.n_dropped == 0 and sccs_null.converged


def test_calibrated_p_matches_the_vignette_to_its_printed_digits(sccs, sccs_null):
    p = calibrate_p(sccs_null, *sccs["pos"])
    assert p[0] == pytest.approx(PUB["p_vignette_calibrated_p"]["p"], abs=1e-6)


def test_calibrated_p_matches_the_readme_to_1e3(sccs, sccs_null):
    # The README's figure comes from an older fitNull: agreement to 1e-3 only
    p = calibrate_p(sccs_null, *sccs["pos"])
    assert p[0] == pytest.approx(PUB["readme_calibrated_p"]["p"], abs=1e-3)


def test_systematic_error_model_matches_the_ci_vignette(southworth):
    ref = PUB["ci_vignette_error_model"]
    model = fit_systematic_error_model(*southworth["controls"])
    assert model.mean_intercept == pytest.approx(ref["meanIntercept"], abs=1e-6)
    assert model.mean_slope == pytest.approx(ref["meanSlope"], abs=1e-6)
    assert model.sd_intercept == pytest.approx(ref["sdIntercept"], abs=1e-6)
    assert model.sd_slope == pytest.approx(ref["sdSlope"], abs=1e-6)
    assert model.converged and model.n_controls == 172


def test_calibrated_interval_matches_the_ci_vignette(southworth):
    ref = PUB["ci_vignette_calibrated_ci"]
    model = fit_systematic_error_model(*southworth["controls"])
    ci = calibrate_confidence_interval(*southworth["interest"], model)
    assert ci.log_rr[0] == pytest.approx(ref["logRr"], abs=1e-6)
    assert ci.log_lb[0] == pytest.approx(ref["logLb95Rr"], abs=1e-6)
    assert ci.log_ub[0] == pytest.approx(ref["logUb95Rr"], abs=1e-6)
    assert ci.se_log_rr[0] == pytest.approx(ref["seLogRr"], abs=1e-6)


def test_fit_null_on_rs_two_control_test_case():
    ref = PUB["test_fitnull_two_controls"]
    with pytest.raises(ValueError):  # our default floor refuses it ...
        fit_null(ref["logRr"], ref["seLogRr"])
    null = fit_null(ref["logRr"], ref["seLogRr"], min_controls=2)  # ... R fits it
    assert null.mean == pytest.approx(ref["mean"], abs=1e-3)


def test_calibrate_p_on_rs_degenerate_null_test_case():
    ref = PUB["test_calibratep_degenerate_null"]
    null = fit_null(ref["null_logRr"], ref["null_seLogRr"], min_controls=2)
    x, se = ref["logRr"], _arr(ref["seLogRr"])
    two = calibrate_p(null, x, se)
    upper = calibrate_p(null, x, se, two_sided=False)
    lower = calibrate_p(null, x, se, two_sided=False, upper=False)
    np.testing.assert_allclose(two[:2], ref["two_sided"][:2], atol=1e-5)
    np.testing.assert_allclose(upper[:2], ref["one_sided_upper"][:2], atol=1e-5)
    np.testing.assert_allclose(np.round(lower[:2], 2), ref["one_sided_lower_rounded_2dp"][:2])
    assert np.isnan(two[2]) and np.isnan(upper[2]) and np.isnan(lower[2])


def test_ease_as_rs_tests(sccs_null):
    ref = PUB["test_ease_sccs"]
    ease = expected_absolute_systematic_error(sccs_null)
    assert ease == pytest.approx(sccs_null.mean, rel=ref["relative_tolerance_to_null_mean"])
    zero = EmpiricalNull(mean=0.0, sd=0.0, n_controls=0)
    assert expected_absolute_systematic_error(zero) == ref["ease_of_zero_null"]


def test_converted_null_interval_as_rs_test(sccs):
    ref = PUB["test_convert_null_ci_sccs"]
    model = fit_systematic_error_model(*sccs["neg"], np.zeros(45))
    ci = calibrate_confidence_interval(*sccs["pos"], model)
    assert ci.log_rr[0] == pytest.approx(ref["logRr"], abs=1e-3)  # R: -0.0593, tolerance 0.1


def test_gaussian_product_as_rs_test():
    ref = PUB["test_gaussian_product"]
    assert cal._gaussian_product(*ref["args"]) == pytest.approx(ref["value"], rel=1e-6)


# ------------------------------------------------------------------ independent checks


def test_fit_null_is_the_maximum_likelihood_estimate(sccs, sccs_null):
    # The marginal likelihood written directly, maximised by another optimiser over log(sd)
    lr, se = sccs["neg"]

    def nll(theta):
        return -stats.norm.logpdf(lr, theta[0], np.sqrt(np.exp(2 * theta[1]) + se**2)).sum()

    best = optimize.minimize(nll, [0.0, -1.0], method="BFGS", options={"gtol": 1e-9})
    assert sccs_null.mean == pytest.approx(best.x[0], abs=1e-3)
    assert sccs_null.sd == pytest.approx(math.exp(best.x[1]), abs=1e-3)
    assert sccs_null.log_likelihood == pytest.approx(-best.fun, abs=1e-5)


@pytest.mark.parametrize("mu,sd", [(0.0, 0.3), (0.5, 0.2), (-0.2, 0.4), (0.1, 1e-3), (0.7, 0.0)])
def test_ease_closed_form_equals_numerical_integration(mu, sd):
    null = EmpiricalNull(mean=mu, sd=sd, n_controls=10)
    if sd == 0:
        expected = abs(mu)
    else:
        expected = integrate.quad(lambda x: abs(x) * stats.norm.pdf(x, mu, sd),
                                  mu - 12 * sd, mu + 12 * sd, points=[0.0], limit=200)[0]
    assert expected_absolute_systematic_error(null) == pytest.approx(expected, abs=1e-9)


def test_negative_controls_only_model_is_the_converted_null(sccs, sccs_null):
    model = fit_systematic_error_model(*sccs["neg"], np.zeros(45))
    assert (model.mean_intercept, model.sd_intercept) == (sccs_null.mean, sccs_null.sd)
    assert (model.mean_slope, model.sd_slope) == (1.0, 0.0)
    assert any("negative controls only" in n for n in model.notes)


def test_rs_bfgs_route_agrees_with_the_null_where_it_converges(southworth):
    # R's own fitSystematicErrorModel on negatives only (our port of its BFGS) vs fit_null
    lr, se = southworth["neg"]
    theta, _, converged = cal._bfgs(
        lambda th: cal._minus_ll_error_model(th, lr.tolist(), se.tolist(), [0.0] * len(lr)),
        [0.0, 1.0, 0.1, 0.0])
    null = fit_null(lr, se)
    assert converged
    assert theta[1] == 1.0 and theta[3] == 0.0  # unidentified slopes never move
    assert theta[0] == pytest.approx(null.mean, abs=1e-4)
    assert theta[2] == pytest.approx(null.sd, abs=1e-4)


def test_calibrated_p_equals_calibrated_interval_excluding_zero(sccs, sccs_null):
    # With the converted null the calibrated 95% interval excludes 0 iff calibrated p < 0.05
    model = fit_systematic_error_model(*sccs["neg"], np.zeros(45))
    x = np.linspace(-0.5, 2.0, 26)
    se = np.full_like(x, 0.1)
    p = calibrate_p(sccs_null, x, se)
    ci = calibrate_confidence_interval(x, se, model)
    excludes = (ci.log_lb > 0) | (ci.log_ub < 0)
    clear = np.abs(p - 0.05) > 1e-3  # uniroot's tolerance blurs the boundary itself
    assert np.array_equal(excludes[clear], (p < 0.05)[clear])


# ------------------------------------------------------------------ behaviour on simulations


def _controls(rng, n, mean, sd):
    se = rng.uniform(0.05, 0.3, n)
    return rng.normal(mean, sd, n) + rng.normal(0, se), se


def test_without_systematic_error_calibration_changes_little():
    rng = np.random.default_rng(1)
    lr, se = _controls(rng, 1000, 0.0, 0.0)
    null = fit_null(lr, se)
    assert abs(null.mean) < 0.02 and null.sd < 0.03
    x, s = rng.normal(0, 0.3, 50), rng.uniform(0.05, 0.3, 50)
    traditional = 2 * stats.norm.sf(np.abs(x / s))
    diff = np.abs(calibrate_p(null, x, s) - traditional)
    assert np.max(diff) < 0.05 and np.mean(diff) < 0.015


def test_a_planted_bias_is_recovered_and_calibration_restores_coverage():
    rng = np.random.default_rng(2)
    lr, se = _controls(rng, 300, 0.3, 0.15)
    null = fit_null(lr, se)
    assert null.mean == pytest.approx(0.3, abs=0.03)
    assert null.sd == pytest.approx(0.15, abs=0.03)
    assert expected_absolute_systematic_error(null) == pytest.approx(0.3, abs=0.04)
    # New negative controls from the same biased design: nominal 5% false positives
    new_lr, new_se = _controls(rng, 400, 0.3, 0.15)
    traditional = 2 * stats.norm.sf(np.abs(new_lr / new_se))
    calibrated = calibrate_p(null, new_lr, new_se)
    assert np.mean(traditional < 0.05) > 0.3
    assert np.mean(calibrated < 0.05) == pytest.approx(0.05, abs=0.03)
    # Calibrated intervals of a true effect log(2) estimated with the same error cover it
    model = fit_systematic_error_model(lr, se, np.zeros_like(lr))
    est_lr, est_se = _controls(rng, 400, 0.3 + math.log(2), 0.15)
    ci = calibrate_confidence_interval(est_lr, est_se, model)
    covered = (ci.log_lb <= math.log(2)) & (math.log(2) <= ci.log_ub)
    assert np.mean(covered) == pytest.approx(0.95, abs=0.03)
    naive = np.abs(est_lr - math.log(2)) <= 1.96 * est_se
    assert np.mean(naive) < 0.6


# ------------------------------------------------------------------ refusals and edge cases


def test_too_few_controls_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least 5 are needed"):
        fit_null([0.1, 0.2, 0.3, 0.0], [0.1] * 4)
    with pytest.raises(ValueError, match="at least 5 are needed"):
        fit_systematic_error_model([0.1, 0.2], [0.1, 0.1], [0.0, 0.0])
    with pytest.raises(ValueError, match="min_controls must be at least 2"):
        fit_null([0.1, 0.2, 0.3], [0.1] * 3, min_controls=1)


def test_non_finite_and_extreme_controls_are_dropped_with_a_warning():
    rng = np.random.default_rng(3)
    lr, se = _controls(rng, 20, 0.1, 0.1)
    clean = fit_null(lr, se)
    lr2 = np.r_[lr, np.inf, np.nan, 0.1, 0.2, 5.0]  # 5 > log(100): extreme
    se2 = np.r_[se, 0.1, 0.1, np.inf, np.nan, 0.1]
    with pytest.warns(UserWarning) as record:
        dirty = fit_null(lr2, se2)
    messages = " ".join(str(w.message) for w in record)
    for what in ("infinite standard error", "infinite log_rr", "missing (NaN) standard error",
                 "missing (NaN) log_rr", "extreme log_rr"):
        assert what in messages
    assert dirty.n_dropped == 5 and dirty.n_controls == 20 and len(dirty.notes) == 5
    assert (dirty.mean, dirty.sd) == (clean.mean, clean.sd)
    with pytest.raises(ValueError, match="at least 5"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_null([np.nan] * 6, [0.1] * 6)


def test_argument_errors():
    null = EmpiricalNull(mean=0.1, sd=0.1, n_controls=10)
    with pytest.raises(ValueError, match="equal length"):
        calibrate_p(null, [0.1, 0.3, 0.2], [0.05, 0.1])
    with pytest.raises(ValueError, match="equal length"):
        fit_null(np.zeros(6), np.ones(5))
    with pytest.raises(ValueError, match="non-negative"):
        fit_null(np.zeros(6), -np.ones(6))
    with pytest.raises(ValueError, match="cannot be separated"):
        fit_systematic_error_model(np.zeros(6), np.ones(6), np.full(6, 0.5))
    with pytest.raises(ValueError, match="ci_width"):
        calibrate_confidence_interval([0.1], [0.1], SystematicErrorModel(0, 1, 0.1, 0, 10),
                                      ci_width=1.5)


def test_scalar_inputs_and_json_ready_results(sccs_null):
    p = calibrate_p(sccs_null, 0.7326235, 0.07371708)
    assert isinstance(p, float)
    assert p == pytest.approx(PUB["p_vignette_calibrated_p"]["p"], abs=1e-6)
    model = SystematicErrorModel(sccs_null.mean, 1.0, sccs_null.sd, 0.0, 45)
    ci = calibrate_confidence_interval([0.7, np.nan], [0.1, 0.1], model)
    assert np.isnan(ci.log_rr[1])
    for obj in (sccs_null, model, ci):
        json.dumps(obj.as_dict(), allow_nan=False)
    assert sccs_null.as_dict()["ease"] == pytest.approx(expected_absolute_systematic_error(sccs_null))
    assert ci.as_dict()["log_lb"][1] is None
