"""Negative controls through the evaluation (evaluation.pipeline.negative_controls,
evaluation.calibration, the report's section): on a simulated matched panel with residual
confounding planted on treated people (outcomes and negative controls alike), the empirical
null finds the confounding, and the calibrated interval of a planted effect covers it where
the matched DiD's own interval cannot."""
import math

import pandas as pd
import pytest
from simpanel import simulate_panel, write_warehouse

from core.contract import NEGATIVE_CONTROLS, outcome_label
from core.settings import Paths
from evaluation import pipeline
from evaluation.costing import CostingConfig
from evaluation.robustness import HONEST_ENV

CONFOUNDING = 0.8
PLANTED_AE = 0.75
RARE = NEGATIVE_CONTROLS[-1]  # 40 events in the run below: below the 100 the null needs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("ltceval-nc"))
    paths.warehouse.parent.mkdir(parents=True)
    panel = simulate_panel(n_sets=500, rate_ratio={"ae_attendances": PLANTED_AE}, seed=31,
                           negative_controls=CONFOUNDING)
    panel[RARE] = 0
    panel.loc[panel.index[:40], RARE] = 1
    write_warehouse(paths.warehouse, panel)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HONEST_ENV, "0")  # the parallel-trends sensitivity is not what this module tests
        summary = pipeline.run_all(paths, CostingConfig(bootstrap_reps=99))
    return paths, summary


def test_the_empirical_null_finds_the_planted_confounding(run):
    _, summary = run
    nc = summary["negative_controls"]
    assert set(nc["negative_controls"]) == set(NEGATIVE_CONTROLS)
    null = nc["null"]
    assert null["controls_used"] == len(NEGATIVE_CONTROLS) - 1  # all but the rare one
    assert abs(null["mean"] - math.log(CONFOUNDING)) < 3 * null["mean_se"]
    assert nc["ease"] > 0.1  # the design's systematic error is there to see


def test_calibrated_interval_covers_the_effect_the_confounded_one_misses(run):
    _, summary = run
    ae = summary["negative_controls"]["outcomes"]["ae_attendances"]
    lo, hi = ae["ci95"]
    assert hi < PLANTED_AE  # the matched DiD sees effect x confounding
    clo, chi = ae["calibrated_ci95"]
    assert clo <= PLANTED_AE <= chi
    assert chi - clo > hi - lo  # it allows for the systematic error and its uncertainty


def test_the_pipeline_calibrates_with_the_correlation_aware_error(run):
    """The calibrated intervals the run saved allow for the covariance of each outcome with the
    null's mean (evaluation.calibration.null_error_se on the saved estimates' influence values),
    not the independent sqrt(se^2 + mean_se^2)."""
    from evaluation.calibration import null_error_se
    from evaluation.methods import calibration as ec

    paths, _ = run
    cal = pipeline._load(paths, "calibration")
    controls = pipeline._load(paths, "negative_controls")
    assert not any("influence" in n for n in cal.notes)
    used = [controls[c].did for c in NEGATIVE_CONTROLS if cal.controls[c]["usable"]]
    for o, c in cal.outcomes.items():
        d = pipeline._load(paths, f"outcome_{o}").did
        se, correlated = null_error_se(d, used, cal.null)
        assert correlated
        ci = ec.calibrate_confidence_interval(d.log_rate_ratio, se, cal.model)
        assert c.calibrated_ci == pytest.approx((math.exp(ci.log_lb[0]), math.exp(ci.log_ub[0])), rel=1e-12)


def test_report_and_table_show_the_negative_controls(run):
    paths, _ = run
    text = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    assert "id='calibration'" in text and "EASE" in text
    for c in NEGATIVE_CONTROLS:
        assert outcome_label(c) in text
    t = pd.read_csv(paths.reports / "tables" / "negative_controls_and_calibration.csv")
    assert set(t.loc[t["kind"] == "negative_control", "name"]) == set(NEGATIVE_CONTROLS)
    assert t.loc[t["kind"] == "outcome", "calibrated_lo95"].notna().all()


def test_too_few_estimable_negative_controls_are_said_not_calibrated(tmp_path, monkeypatch):
    monkeypatch.setenv(HONEST_ENV, "0")
    paths = Paths(tmp_path)
    paths.warehouse.parent.mkdir(parents=True)
    panel = simulate_panel(n_sets=200, seed=32, negative_controls=1.0)
    for c in NEGATIVE_CONTROLS[:3]:
        panel[c] = 0  # no events: no rate ratio
    write_warehouse(paths.warehouse, panel)
    for o in pipeline.OUTCOMES:
        pipeline.estimate(paths, o)
    summary = pipeline.negative_controls(paths)
    assert summary["null"] is None and summary["outcomes"] == {}
    assert any("not calibrated" in n and "at least 5" in n for n in summary["notes"])


def test_the_calibrated_interval_stands_beside_each_headline_estimate(run):
    import re

    paths, _ = run
    text = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    section = text[text.index("id='outcomes'"):text.index("<h2", text.index("id='outcomes'"))]
    assert "Calibrated rate ratio (95% CI; negative controls)" in section
    rows = dict(re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", section))
    t = pd.read_csv(paths.reports / "tables" / "negative_controls_and_calibration.csv")
    for r in t[t["kind"] == "outcome"].itertuples():
        body = rows[outcome_label(r.name).replace("&", "&amp;")]
        assert body.endswith(f"<td>{r.calibrated_rate_ratio:.2f} ({r.calibrated_lo95:.2f} to {r.calibrated_hi95:.2f})</td>")


def test_a_negative_control_too_rare_to_trust_is_named_and_its_estimate_not_published(run):
    paths, _ = run
    t = pd.read_csv(paths.reports / "tables" / "negative_controls_and_calibration.csv")
    row = t[t["name"] == RARE].iloc[0]
    assert not row["used_in_null"] and "fewer than 100 events" in row["not_used_because"]
    assert pd.isna(row["rate_ratio"]) and pd.isna(row["lo95"])
    assert t.loc[(t["kind"] == "negative_control") & (t["name"] != RARE), "used_in_null"].all()
    text = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    assert "no (fewer than 100 events in the matched cohort)" in text
