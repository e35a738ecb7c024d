"""The evaluation on real dbt-built warehouses from the synthetic generator (perfect-linkage
fixture): one population with planted effects and one with none (slow, ~3-4 minutes).

Seeds are fixed (EFFECT_SEED, NULL_SEED; 20,000 persons each, about 600-700 matched pairs). A
single population checks that the whole path recovers the truth within its 95% intervals at
these seeds; coverage over many populations is measured by `benchmarks/monte_carlo.py`. With
five outcomes and 95% intervals, about one seed in four or five misses at least one outcome
by chance (seed 101, for example, puts A&E at RR 1.11, 95% CI 0.87-1.41, against 0.85), so a
failure here after a change to the generator or the marts is a prompt to run the benchmark,
not proof of bias on its own.
"""
from __future__ import annotations

import json
import math

import pytest

from evaluation import pipeline
from evaluation.costing import CostingConfig
from evaluation.robustness import HONEST_ENV
from core.contract import COUNT_OUTCOMES
from core.settings import Paths
from ltceval.warehouse_build import build_warehouse

pytestmark = pytest.mark.slow

PERSONS = 20_000
EFFECT_SEED = 102
NULL_SEED = 202
CONFIG = CostingConfig(bootstrap_reps=199)


def _build(tmp_path_factory, seed: int, null_effect: bool) -> tuple[Paths, dict, dict]:
    from synthetic.fixture import write_pseudonymised_fixture
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    params = SynthParams(persons=PERSONS, seed=seed)
    if null_effect:
        params = params.with_null_effect()
    paths = Paths(tmp_path_factory.mktemp(f"warehouse-{seed}"))
    generate(params, paths.out, fmt="parquet")
    write_pseudonymised_fixture(paths.out, b"test-key-not-secret")
    build_warehouse(paths)
    truth = json.loads((paths.ground_truth / "planted_effects.json").read_text())["rate_ratio"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HONEST_ENV, "0")  # the parallel-trends sensitivity is tested in test_pipeline.py
        summary = pipeline.run_all(paths, CONFIG)
    return paths, truth, summary


@pytest.fixture(scope="module")
def effect(tmp_path_factory):
    return _build(tmp_path_factory, EFFECT_SEED, null_effect=False)


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    return _build(tmp_path_factory, NULL_SEED, null_effect=True)


def _by_outcome(summary):
    return {e["outcome"]: e for e in summary["estimates"]}


def test_intervals_contain_the_planted_effects(effect):
    paths, truth, summary = effect
    est = _by_outcome(summary)
    assert set(est) == set(COUNT_OUTCOMES)
    assert truth["ae_attendances"] < 1 and truth["emergency_admissions"] < 1
    for o in COUNT_OUTCOMES:
        lo, hi = est[o]["rate_ratio_ci"]
        print(o, est[o]["rate_ratio"], (lo, hi), "planted", truth.get(o, 1.0))
        assert lo <= truth.get(o, 1.0) <= hi, (o, est[o])
        assert est[o]["n_matched_sets"] >= 400


def test_null_intervals_contain_one_while_naive_shows_a_fall(null):
    paths, truth, summary = null
    assert all(v == 1.0 for v in truth.values())
    est = _by_outcome(summary)
    for o in COUNT_OUTCOMES:
        lo, hi = est[o]["rate_ratio_ci"]
        print(o, est[o]["rate_ratio"], (lo, hi), "naive", est[o]["naive_pct_change"])
        assert lo <= 1.0 <= hi, (o, est[o])
    # people are referred near a peak: the NAIVE before/after (all eligible treated people,
    # mart_treated_panel) shows a fall with no effect. Its size varies between populations (on
    # the generator's own counts of all treated people, averaged over null seeds 1-3 and over
    # 101, 102, 202: A&E -12% and -7.5%, emergency admissions -10% and -12.5%; the matched
    # treated alone fall less, as matching fails most for those with the highest recent use),
    # so one population is checked for a fall in
    # both acute outcomes, and for the NAIVE A&E figure (the acute outcome with the most events)
    # sitting below the matched estimate, not for significance.
    naive = {o: pipeline._load(paths, f"outcome_{o}").naive
             for o in ("ae_attendances", "emergency_admissions")}
    assert all(n.pct_change < 0 for n in naive.values()), {o: n.pct_change for o, n in naive.items()}
    assert naive["ae_attendances"].pct_change < est["ae_attendances"]["rate_ratio"] - 1
    # the NAIVE counts every eligible treated person, matched or not
    assert naive["ae_attendances"].n_treated >= est["ae_attendances"]["n_matched_sets"]


def test_business_case_on_the_real_warehouse(effect, null):
    for paths, _, summary in (effect, null):
        c = summary["cost"]
        assert c["interval_method"] == "bootstrap"
        lo, hi = c["net_saving_ci"]
        assert lo < c["net_saving_per_treated_person"] < hi
        assert math.isfinite(c["caseload_net_saving"]) and c["annual_caseload"] >= 5
        html = (paths.reports / "business_case.html").read_text(encoding="utf-8")
        # 20,000 people pass the diagnostics gates (balance, variance ratios, the pool's
        # equipoise from the dbt matching model; EASE not available yet): not blinded
        diagnostics = json.loads((paths.reports / "diagnostics.json").read_text())
        assert not diagnostics["blinded"] and diagnostics["failed_gates"] == [], diagnostics
        equipoise = next(r for r in diagnostics["rows"] if r["diagnostic"].startswith("Equipoise"))
        assert equipoise["status"] == "pass", equipoise
        for section in ("id='sensitivity'", "id='secondary'", "Recovered (of those at caseness)",
                        "Long-term condition group", "Site (practice of the treated person)"):
            assert section in html
        # no pseudonymised person ids in anything published
        panel = pipeline.load_panel(paths.warehouse)
        ids = set(panel["person_id"])
        for f in [paths.reports / "business_case.html", *(paths.reports / "tables").glob("*.csv")]:
            text = f.read_text(encoding="utf-8")
            assert not any(i in text for i in ids), f.name
    # with no effect the costed change in use is centred on zero: its interval includes 0
    g_lo, g_hi = _gross_ci(null[0])
    assert g_lo < 0 < g_hi


def _gross_ci(paths):
    c = pipeline._load(paths, "costing")["costing"]
    return c.gross_saving_per_person_ci
