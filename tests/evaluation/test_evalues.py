"""E-values against the published examples of VanderWeele and Ding (2017) and of the EValue R
package's documentation (``evalues.RR``), whose printed figures are quoted here."""
import math

import pytest

from evaluation.evalues import evalue_of_ratio, evalues_rr


def test_smoking_and_lung_cancer_example_of_vanderweele_and_ding_2017():
    # Hammond and Holl data: RR 10.73 (8.02, 14.36); the paper gives E-values 20.95 and 15.52
    e = evalues_rr(10.73, 8.02, 14.36)
    assert e.evalue_estimate == pytest.approx(20.95, abs=0.005)
    assert e.evalue_limit == pytest.approx(15.52, abs=0.005)


def test_protective_estimate_uses_the_upper_limit_leukemia_example():
    # evalues.RR(0.80, 0.71, 0.91): the paper's breastfeeding-leukemia example, E-values 1.81 and 1.43
    e = evalues_rr(0.80, 0.71, 0.91)
    assert e.evalue_estimate == pytest.approx(1.81, abs=0.005)
    assert e.evalue_limit == pytest.approx(1.43, abs=0.005)


def test_symmetry_of_the_evalue_as_the_package_documents():
    assert evalue_of_ratio(1 / 0.80) == pytest.approx(evalue_of_ratio(0.80), rel=1e-12)


def test_non_null_true_ratio_vignette_example():
    # summary(evalues.RR(est = 2.5, true = 1.5)) prints 2.720759 in the EValue vignette
    assert evalues_rr(2.5, true=1.5).evalue_estimate == pytest.approx(2.720759, abs=1e-6)


def test_interval_containing_the_null_has_evalue_one():
    e = evalues_rr(0.9, 0.75, 1.08)
    assert e.evalue_limit == 1.0
    assert e.evalue_estimate == pytest.approx(1 / 0.9 + math.sqrt(1 / 0.9 * (1 / 0.9 - 1)))


def test_estimate_at_the_null_and_missing_limits():
    assert evalues_rr(1.0, 0.9, 1.1).evalue_estimate == 1.0
    assert math.isnan(evalues_rr(0.8).evalue_limit)
    assert math.isnan(evalues_rr(float("nan"), float("nan"), float("nan")).evalue_estimate)


def test_inconsistent_interval_is_refused():
    with pytest.raises(ValueError):
        evalues_rr(0.8, 0.9, 1.1)
