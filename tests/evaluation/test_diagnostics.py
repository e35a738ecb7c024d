"""Diagnostics first, results after (evaluation/diagnostics.py): the rows and their gates, the
pool's equipoise, and the blinded report of a real evaluation run (real DuckDB warehouse, the
real estimators, costing and renderer; no mocks)."""
import json
import math
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from simpanel import simulate_panel, write_warehouse

from core.errors import LtcevalError
from core.settings import Paths
from evaluation import pipeline
from evaluation.costing import CostingConfig
from evaluation.diagnostics import (FAIL, NOT_AVAILABLE, PASS, THRESHOLDS, WARN, build_diagnostics,
                                    unblind_reason)
from evaluation.methods.matching import equipoise
from evaluation.reporting.formatting import fmt_ci, gbp, num

REASON = "pilot cohort: balance on age cannot be reached with 250 sets (test)"


def _balance(smd_age=0.03, vr_imd=0.98):
    return pd.DataFrame({
        "covariate": ["age", "imd_decile", "prior_ae_12m", "baseline_bed_days"] * 2,
        "stage": ["before"] * 4 + ["after"] * 4,
        "smd": [0.4, -0.3, 0.5, 0.6, smd_age, -0.02, 0.04, 0.3],
        "variance_ratio": [1.3, 0.9, 2.2, 3.0, 1.01, vr_imd, 1.1, 2.6],
        "matched_on": [True, True, True, False] * 2,
        "mean_treated": 1.0, "mean_control": 1.0,
    })


EQ = {"n_rows": 40_000, "n_in_range": 34_000}
MDRR = pd.DataFrame({"outcome": ["ae_attendances", "bed_days"], "mdrr": [0.9, 0.62]})
PRE = {"ae_attendances": 0.4, "bed_days": 0.01}


def by_name(d, text, outcome=""):
    return next(r for r in d.rows if text in r.diagnostic and r.outcome == outcome)


def test_thresholds_are_cohortmethods_and_each_has_its_reason():
    t = THRESHOLDS
    assert (t.max_abs_smd, t.variance_ratio_low, t.variance_ratio_high) == (0.1, 0.5, 2.0)
    assert (t.preference_low, t.preference_high, t.min_equipoise, t.max_ease) == (0.3, 0.7, 0.2, 0.25)
    assert t.mdrr_warn_below == 0.85 and t.pretrend_alpha == 0.05
    assert set(t.reasons) == {"max_abs_smd", "variance_ratio", "equipoise", "ease", "ease_gate_max_null_mean_se",
                              "mdrr", "pretrend"}
    assert all(len(v) > 40 for v in t.reasons.values())


def test_passing_gates_warnings_and_ease_not_available():
    d = build_diagnostics(_balance(), EQ, MDRR, PRE)
    assert not d.blinded and not d.failed_gates
    assert by_name(d, "largest |SMD|").status == PASS
    # baseline_bed_days (not matched on) is 0.3 and 2.6 but is not gated, as in the GX suite
    assert by_name(d, "variance ratios").status == PASS
    assert by_name(d, "Equipoise").status == PASS and by_name(d, "Equipoise").value == "0.85"
    ease = by_name(d, "systematic error")
    assert ease.status == NOT_AVAILABLE and ease.gate and not ease.blocks
    assert by_name(d, "Minimum detectable", "A&E attendances").status == PASS
    bed = by_name(d, "Minimum detectable", "Bed days (emergency)")
    assert bed.status == WARN and not bed.gate and "ltceval plan" in bed.action
    assert by_name(d, "Pre-trend", "Bed days (emergency)").status == WARN
    assert by_name(d, "Pre-trend", "A&E attendances").status == PASS
    assert all(r.action == "" for r in d.rows if r.status == PASS)


def test_each_gate_fails_and_blinds_naming_what_failed():
    d = build_diagnostics(_balance(smd_age=0.21, vr_imd=0.4), {"n_rows": 1000, "n_in_range": 150}, MDRR, PRE,
                          ease=0.31)
    failed = {r.diagnostic: r for r in d.failed_gates}
    assert d.blinded and len(failed) == 4
    smd = by_name(d, "largest |SMD|")
    assert smd.status == FAIL and "age +0.210" in smd.value and "matching_refine" in smd.action
    vr = by_name(d, "variance ratios")
    assert vr.status == FAIL and "imd_decile 0.40" in vr.value and "baseline_bed_days" not in vr.value
    assert by_name(d, "Equipoise").status == FAIL and by_name(d, "Equipoise").value == "0.15"
    assert by_name(d, "systematic error").status == FAIL
    doc = d.as_json()
    assert doc["blinded"] and doc["override"] is None and len(doc["failed_gates"]) == 4
    # an override shows the estimates and keeps its reason
    o = build_diagnostics(_balance(smd_age=0.21), EQ, MDRR, PRE, unblind_reason=REASON)
    assert not o.blinded and o.overridden and o.as_json()["override"]["reason"] == REASON


def test_ease_of_imprecise_negative_controls_warns_instead_of_blinding():
    """EASE gates only when the null's mean is pinned down (standard error at most 0.1)."""
    imprecise = build_diagnostics(_balance(), EQ, MDRR, PRE, ease=0.31, null_mean_se=0.13)
    row = by_name(imprecise, "systematic error")
    assert not imprecise.blinded and row.status == WARN and not row.gate and "imprecise" in row.value
    assert "too few or too rare" in row.action
    precise = build_diagnostics(_balance(), EQ, MDRR, PRE, ease=0.31, null_mean_se=0.04)
    assert precise.blinded and by_name(precise, "systematic error").status == FAIL
    calm = build_diagnostics(_balance(), EQ, MDRR, PRE, ease=0.05, null_mean_se=0.13)
    assert not calm.blinded and by_name(calm, "systematic error").status == PASS


def test_a_gate_that_cannot_be_checked_blinds():
    d = build_diagnostics(None, None, None, PRE)
    assert d.blinded
    assert {r.diagnostic for r in d.failed_gates} == {
        "Balance: largest |SMD| after matching", "Balance: variance ratios after matching",
        "Equipoise: share with preference score in 0.3-0.7"}


def test_equipoise_is_cohortmethods_preference_score_share():
    # Walker et al.: ln(F/(1-F)) = ln(PS/(1-PS)) - ln(P/(1-P)), P the treated share
    rng = np.random.default_rng(3)
    is_t = rng.random(5000) < 0.1
    logit = rng.normal(-2.2, 1.5, 5000)
    p = is_t.mean()
    ps = 1 / (1 + np.exp(-logit))
    odds = (ps / (1 - ps)) / (p / (1 - p))
    f = odds / (1 + odds)
    expected = int(((f >= 0.3) & (f <= 0.7)).sum())
    e = equipoise(logit, is_t)
    assert e["n_rows"] == 5000 and e["n_in_range"] == expected and e["share"] == pytest.approx(expected / 5000)
    # everyone at the average propensity: preference 0.5, all in equipoise
    assert equipoise(np.full(10, math.log(p / (1 - p))), is_t[:10].copy() | (np.arange(10) == 0))["n_in_range"] <= 10
    flat = np.r_[np.ones(2, bool), np.zeros(8, bool)]
    assert equipoise(np.full(10, math.log(0.2 / 0.8)), flat)["share"] == 1.0


@pytest.mark.parametrize("value", ["1", "yes", "  TRUE ", "   ", "because"])
def test_an_override_without_a_reason_is_refused(value):
    with pytest.raises(LtcevalError, match="LTCEVAL_UNBLIND_REASON .* not a reason"):
        unblind_reason({"LTCEVAL_UNBLIND_REASON": value})


def test_an_override_reason_is_read_and_an_unset_one_is_none():
    assert unblind_reason({}) is None and unblind_reason({"LTCEVAL_UNBLIND_REASON": ""}) is None
    assert unblind_reason({"LTCEVAL_UNBLIND_REASON": f"  {REASON}\n"}) == REASON


# --- a real evaluation run on a warehouse whose balance fails -------------------------------

CONFIG = CostingConfig(interval_method="delta")


@pytest.fixture(scope="module")
def unbalanced(tmp_path_factory):
    """One evaluation (estimates, costing, sensitivity) on a warehouse whose age is out of
    balance; the report written twice: blinded, and with the override's reason."""
    out = tmp_path_factory.mktemp("unbalanced")
    paths = Paths(out)
    paths.warehouse.parent.mkdir(parents=True)
    panel = simulate_panel(n_sets=250, rate_ratio={"ae_attendances": 0.75}, seed=21)
    balance = pd.DataFrame({
        "covariate": ["age", "imd_decile", "propensity_logit"] * 2, "stage": ["before"] * 3 + ["after"] * 3,
        "mean_treated": [55.0, 4.2, -2.0] * 2, "mean_control": [50.0, 5.5, -2.6, 52.5, 4.3, -2.01],
        "smd": [0.35, -0.4, 0.6, 0.23, -0.04, 0.01], "variance_ratio": [1.2, 0.9, 1.1, 1.05, 0.98, 1.0],
        "matched_on": [True] * 6})
    write_warehouse(paths.warehouse, panel, balance=balance)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LTCEVAL_HONEST", "0")  # E-values only: the robustness section is there, faster
        mp.delenv("LTCEVAL_UNBLIND_REASON", raising=False)
        summary = pipeline.run_all(paths, CONFIG)
        shown = paths.with_reports(out / "reports-unblinded")
        mp.setenv("LTCEVAL_UNBLIND_REASON", REASON)
        shown_summary = pipeline.report(shown)
    return paths, shown, summary, shown_summary


def _text_of(path):
    if path.suffix == ".xlsx":  # the cells' text is in the workbook's XML parts
        with zipfile.ZipFile(path) as z:
            return " ".join(z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith(".xml"))
    return path.read_text(encoding="utf-8")


def _estimate_strings(paths):
    """How the effect estimates and savings of this run are printed in the full report."""
    c = pipeline._load(paths, "costing")["costing"]
    out = {gbp(c.net_saving_per_person), gbp(c.gross_saving_per_person), fmt_ci(*c.net_saving_per_person_ci, money=True)}
    for o in pipeline.OUTCOMES:
        d = pipeline._load(paths, f"outcome_{o}").did
        if math.isfinite(d.rate_ratio):
            out.add(f"{num(d.rate_ratio)} ({fmt_ci(*d.rate_ratio_ci)})")
    return out


def test_a_blinded_report_opens_with_the_diagnostics_and_names_the_failed_gate(unbalanced):
    paths, _, summary, _ = unbalanced
    assert summary["report"]["blinded"] is True
    assert summary["report"]["failed_gates"] == ["Balance: largest |SMD| after matching"]
    html = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    body = html[html.index("<body>"):]
    # the title, the data-period note, then the diagnostics table
    assert re.search(r"<body>\s*<h1>[^<]*</h1>\s*<p class='note'>.*?</p>\s*<h2 id='diagnostics'>", body, re.S)
    assert "Results withheld" in html and "age +0.230" in html and "matching_refine" in html
    assert "LTCEVAL_UNBLIND_REASON" in html
    for section in ("id='balance'", "id='attrition'", "id='design'"):
        assert section in html
    doc = json.loads((paths.reports / "diagnostics.json").read_text())
    assert doc["blinded"] and doc["failed_gates"] == ["Balance: largest |SMD| after matching"]
    assert doc["thresholds"]["max_abs_smd"] == 0.1


def test_a_blinded_run_publishes_no_estimate_saving_or_costing_anywhere(unbalanced):
    paths, shown, _, _ = unbalanced
    files = sorted(p.relative_to(paths.reports).as_posix() for p in paths.reports.rglob("*") if p.is_file())
    assert set(files) <= {"business_case.html", "diagnostics.json", "business_case_tables.xlsx",
                          "tables/diagnostics.csv", "tables/balance.csv", "tables/attrition.csv",
                          "tables/minimum_detectable_rate_ratio.csv", "tables/unit_costs.csv",
                          "tables/price_index.csv"}, files
    assert "business_case.html" in files and "tables/diagnostics.csv" in files
    estimates = _estimate_strings(paths)
    shown_html = (shown.reports / "business_case.html").read_text(encoding="utf-8")
    assert all(e in shown_html for e in estimates)  # the strings are those the report prints
    words = ("Net saving", "net saving", "Matched DiD", "rate ratio (95% CI)", "NAIVE", "E-value",
             "Return per", "id='costs'", "id='outcomes'", "id='robustness'", "id='sensitivity'",
             "id='event'", "id='secondary'", "did_rate_ratio", "net_saving", "gross_saving", "roi")
    for f in files:
        text = _text_of(paths.reports / f)
        leaked = [s for s in (*estimates, *words) if s in text]
        assert not leaked, f"{f} carries {leaked}"


def test_ltceval_run_says_when_its_report_is_blinded(unbalanced):
    from ltceval.cli import blinded_note

    paths, shown, _, _ = unbalanced
    note = blinded_note(paths.reports / "business_case.html")
    assert "BLINDED" in note and "Balance: largest |SMD| after matching" in note and "LTCEVAL_UNBLIND_REASON" in note
    assert REASON in blinded_note(shown.reports / "business_case.html")


def test_the_override_shows_the_estimates_and_prints_its_reason(unbalanced):
    paths, shown, _, shown_summary = unbalanced
    assert shown_summary["blinded"] is False
    html = (shown.reports / "business_case.html").read_text(encoding="utf-8")
    assert REASON in html and "Shown although a diagnostic gate failed" in html
    assert html.index("id='diagnostics'") < html.index("class='kfs'") < html.index("id='costs'")
    for section in ("id='outcomes'", "id='robustness'", "id='sensitivity'", "id='event'"):
        assert section in html
    assert (shown.reports / "tables" / "outcomes_naive_vs_did.csv").exists()
    doc = json.loads((shown.reports / "diagnostics.json").read_text())
    assert doc["override"] == {"reason": REASON, "variable": "LTCEVAL_UNBLIND_REASON"} and not doc["blinded"]


def test_an_override_without_a_reason_stops_the_report_before_it_is_written(unbalanced, tmp_path, monkeypatch):
    paths, _, _, _ = unbalanced
    target = paths.with_reports(tmp_path / "refused")
    monkeypatch.setenv("LTCEVAL_UNBLIND_REASON", "yes")
    with pytest.raises(LtcevalError, match="LTCEVAL_UNBLIND_REASON is set to 'yes', which is not a reason"):
        pipeline.report(target)
    assert not (tmp_path / "refused" / "business_case.html").exists()
