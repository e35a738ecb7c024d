"""The links at a stricter and a looser threshold that the business case's linkage sensitivity
reads: the thresholds the model chooses, and the published ``linkage_alternatives`` checked
against record_person and the synthetic ground truth (a run with the generator's harder
identifier noise, so that some records lie between the thresholds)."""
import json

import numpy as np
import pandas as pd
import pytest

from identifiable_zone import link as lk
from core.linkage_tables import ALTERNATIVES, SCENARIOS
from idz_helpers import run_zone

PERSONS = 3000


@pytest.fixture(scope="module")
def hard_run(tmp_path_factory):
    from synthetic.generate import generate
    from synthetic.params import HARD_ERROR_RATES, SynthParams

    out = tmp_path_factory.mktemp("idz_hard")
    generate(SynthParams(persons=PERSONS, seed=7, error_rates=HARD_ERROR_RATES), out)
    paths, _ = run_zone(out)
    scenarios = json.loads((paths.identifiable / "link_summary.json").read_text())["threshold_scenarios"]
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    return paths, scenarios, rp


def test_threshold_scenarios_bracket_the_main_threshold_and_meet_their_targets():
    rng = np.random.default_rng(3)
    p = np.r_[np.ones(900), rng.uniform(0.5, 1.0, 100)]
    sc = lk.threshold_scenarios(p, 0.95)
    assert sc["stricter"]["threshold"] >= 0.95 >= sc["looser"]["threshold"]
    for name in ("stricter", "looser"):
        accepted = p[p >= sc[name]["threshold"]]
        assert accepted.mean() >= sc[name]["target_expected_precision"]
        assert sc[name]["expected_precision"] == pytest.approx(accepted.mean())
        # the next lower candidate would break the target (or the bound is the main threshold)
        below = p[p < sc[name]["threshold"]]
        if below.size and sc[name]["threshold"] != 0.95:
            assert np.r_[accepted, below.max()].mean() < sc[name]["target_expected_precision"]
    # a model sure of everything: the stricter links are the main ones
    assert lk.threshold_scenarios(np.ones(10), 0.95)["stricter"]["threshold"] == 1.0


def test_scored_records_keep_their_best_candidate(hard_run):
    paths, _, rp = hard_run
    prob = rp[rp["rule"] == "probabilistic"]
    assert prob["candidate_person_key"].eq(prob["person_key"]).all()
    assert prob["candidate_record_id"].notna().all()
    spine = rp[rp["source"] == "gp_patients"].set_index("record_id")["person_key"]
    # the candidate record is a spine record of the candidate person
    assert prob["candidate_record_id"].map(spine).eq(prob["person_key"]).all()
    assert rp.loc[rp["rule"].str.startswith("deterministic") | (rp["rule"] == "spine"),
                  ["candidate_person_key", "candidate_record_id"]].isna().all().all()
    scored_unlinked = rp[(rp["rule"] == "unlinked") & rp["candidate_record_id"].notna()]
    assert len(scored_unlinked) > 0 and (scored_unlinked["match_probability"] < 0.95).all()


def _scenario_record_person(rp: pd.DataFrame, scenarios: dict, name: str) -> pd.DataFrame:
    """record_person as the scenario links it, written out from the rule in words."""
    t = scenarios[name]["threshold"]
    out = rp.copy()
    if name == "stricter":
        drop = (out["rule"] == "probabilistic") & (out["match_probability"] < t)
        out.loc[drop, ["person_key", "rule"]] = [None, "unlinked"]
    else:
        add = (out["rule"] == "unlinked") & out["candidate_person_key"].notna() & (out["match_probability"] >= t)
        out.loc[add, "person_key"] = out.loc[add, "candidate_person_key"]
        out.loc[add, "rule"] = "probabilistic"
    return out


def test_published_alternatives_are_the_records_whose_person_moves(hard_run):
    paths, scenarios, rp = hard_run
    pub = paths.pseudonymised
    table = pd.read_parquet(pub / f"{SCENARIOS}.parquet").set_index("scenario")
    assert list(table.index) == ["main", "stricter", "looser"]
    for name, sc in scenarios.items():
        assert table.loc[name, "threshold"] == pytest.approx(sc["threshold"])
    alt = pd.read_parquet(pub / f"{ALTERNATIVES}.parquet")
    assert set(alt.columns) == {"table_name", "record_id", "person_id_stricter", "person_id_looser"}
    assert len(alt) > 0 and not alt.duplicated(["table_name", "record_id"]).any()
    # every row is a published record; its main person differs from a scenario's
    ids = {"ecds": "EC_Ident", "apc": "APCS_Ident", "opa": "ATTENDKEY"}
    for name, grp in alt.groupby("table_name"):
        assert name in {*ids, "iapt_referral"}
        if name not in ids:
            continue
        main = pd.read_parquet(pub / f"{name}.parquet", columns=[ids[name], "person_id"]).set_index(ids[name])["person_id"]
        assert grp["record_id"].isin(main.index).all()
        m = grp["record_id"].map(main)
        moved = (grp["person_id_stricter"].fillna("-") != m.fillna("-")) | (grp["person_id_looser"].fillna("-") != m.fillna("-"))
        assert moved.all()
        # exactly the source's records the scenario rule moves, and no other
        src = rp[rp["source"] == name]
        for scenario in ("stricter", "looser"):
            alt_rp = _scenario_record_person(src, scenarios, scenario)
            n_moved = int((alt_rp["person_key"].fillna("-") != src["person_key"].fillna("-")).sum())
            col = f"person_id_{scenario}"
            assert int((grp[col].fillna("-") != m.fillna("-")).sum()) == n_moved, (name, scenario)


def test_stricter_links_are_no_less_precise_and_looser_ones_find_more(hard_run):
    paths, scenarios, rp = hard_run
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet")
    main = lk.linkage_metrics(rp, truth)
    strict = lk.linkage_metrics(_scenario_record_person(rp, scenarios, "stricter"), truth)
    loose = lk.linkage_metrics(_scenario_record_person(rp, scenarios, "looser"), truth)
    assert strict["precision"] >= main["precision"] and strict["recall"] <= main["recall"]
    assert loose["recall"] > main["recall"]  # the hard profile leaves true matches below 0.95
    assert loose["precision"] >= 0.99 * main["precision"]
