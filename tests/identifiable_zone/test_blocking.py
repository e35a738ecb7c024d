"""Bounded linkage: exact pair counts per blocking rule, rules over budget skipped, EM on a sample."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from identifiable_zone import blocking
from identifiable_zone import link as lk
from identifiable_zone.sources import SPINE, load_sources_config


def test_pair_counts_are_exact_and_missing_keys_make_no_pairs():
    rng = np.random.default_rng(4)

    def frame(n):
        return pd.DataFrame({c: np.where(rng.random(n) < 0.15, None, rng.integers(0, 6, n).astype(str)).astype(object)
                             for c in ("dob", "surname")})

    left, right = frame(400), frame(300)
    rules = [("dob",), ("dob", "surname")]
    counts = blocking.pair_counts(left, right, rules)
    for rule, c in zip(rules, counts):
        brute = left.dropna(subset=list(rule)).merge(right.dropna(subset=list(rule)), on=list(rule))
        assert c.rule == rule and c.pairs == len(brute) > 0
    assert counts[0].pairs > counts[1].pairs
    marked = blocking.within_budget(counts, counts[1].pairs)
    assert [c.used for c in marked] == [False, True]
    assert blocking.em_sample_fraction(counts, counts[0].pairs) == 1.0
    assert blocking.em_sample_fraction(counts, counts[0].pairs // 4) == pytest.approx(0.25, rel=1e-3)


@pytest.fixture(scope="module")
def frames(run):
    """The 3,000-person run's accepted ECDS and spine identifiers, and its trained model."""
    paths, _ = run
    cfg = load_sources_config()
    acc = paths.identifiable / "accepted"
    spine = lk.standardise_identifiers(pd.read_parquet(acc / f"{SPINE}.parquet"), cfg[SPINE])
    ecds = lk.standardise_identifiers(pd.read_parquet(acc / "ecds.parquet"), cfg["ecds"])
    tuples, _ = lk._distinct_tuples(ecds, "ecds")
    pointer = json.loads((paths.identifiable / "linkage_model" / "current.json").read_text())
    model = json.loads((paths.identifiable / "linkage_model" / pointer["file"]).read_text())
    return tuples, spine, model, paths


def test_a_rule_over_the_pair_budget_is_skipped_and_the_others_still_score(frames):
    tuples, spine, model, paths = frames
    full_info, tight_info = {}, {}
    full = lk.predict_links(tuples, spine, model, paths.identifiable / "spill", full_info)
    full_counts = full_info["prediction_rules"]
    dob = next(c for c in full_counts if c["rule"] == "dob")
    assert all(c["used"] for c in full_counts) and dob["pairs"] == max(c["pairs"] for c in full_counts)
    tight = lk.predict_links(tuples, spine, model, paths.identifiable / "spill", tight_info,
                             pair_budget=dob["pairs"] - 1)
    tight_counts = tight_info["prediction_rules"]
    assert tight_info["prediction_pair_budget"] == dob["pairs"] - 1
    assert [c["rule"] for c in tight_counts if not c["used"]] == ["dob"]
    assert 0 < len(tight) <= len(full)  # pairs at p >= 0.01: here the other rules find them all
    # the pairs the other rules make are the same pairs with the same scores
    both = tight.merge(full, on=["tuple_id", "record_id"], suffixes=("", "_full"))
    assert len(both) == len(tight)
    assert np.allclose(both["match_probability"], both["match_probability_full"])
    # the best candidate of almost every tuple is still found: the other rules cover most matches
    assert tight["tuple_id"].nunique() >= 0.97 * full["tuple_id"].nunique()
    with pytest.raises(lk.LinkageError, match="every blocking rule"):
        lk.predict_links(tuples, spine, model, paths.identifiable / "spill", pair_budget=0)


def test_em_trains_on_a_uniform_sample_when_a_rule_would_block_too_many_pairs(frames):
    tuples, spine, model, paths = frames
    info = {}
    em_counts = blocking.pair_counts(tuples, spine, [("dob",), ("forename", "surname")])
    budget = max(c.pairs for c in em_counts) // 3
    sampled = lk.train_model(tuples, spine, spill_dir=paths.identifiable / "spill", training=info,
                             em_pair_budget=budget)
    assert info["tuples"] == len(tuples) and info["training_tuples"] == pytest.approx(len(tuples) / 3, rel=0.01)
    assert {r["rule"]: r["pairs"] for r in info["em_rules"]} == {"+".join(c.rule): c.pairs for c in em_counts}
    # the model from a third of the tuples links as the full model does
    persons = lk.spine_persons(spine)
    a = lk.best_matches(lk.predict_links(tuples, spine, sampled), persons, lk.DEFAULT_THRESHOLD)
    b = lk.best_matches(lk.predict_links(tuples, spine, model), persons, lk.DEFAULT_THRESHOLD)
    m = a.merge(b, on="tuple_id", suffixes=("_sampled", "_full"))
    agree = (m["linked_sampled"] == m["linked_full"]) & (
        ~m["linked_full"].astype(bool) | (m["person_key_sampled"] == m["person_key_full"]))
    assert len(m) == len(b) and agree.mean() >= 0.99
