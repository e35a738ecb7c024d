"""A person in two matched sets (not-yet-referred design: a control at one index month, the
treated person at a later one) is two units, and the sets they link are one cluster."""
import numpy as np
import pandas as pd
from simpanel import simulate_panel

from evaluation.bootstrap import cluster_bootstrap
from evaluation.did import estimate_event_study, estimate_linear_did, estimate_poisson_did
from evaluation.panel import PanelCodes, cohort_counts, linked_set_clusters, prepare_panel


def _share_persons(raw: pd.DataFrame, n_links: int) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Give the first control of set k the person id of the treated person of set k + 1."""
    raw = raw.copy()
    raw["matched_set_id"] = raw["matched_set_id"].astype(str)
    raw["person_id"] = raw["person_id"].astype(str)
    sets = sorted(raw["matched_set_id"].unique())
    links = []
    for a, b in zip(sets[:n_links], sets[1:n_links + 1]):
        ctrl = raw.loc[(raw["matched_set_id"] == a) & (raw["is_treated"] == 0), "person_id"].iloc[0]
        treated = raw.loc[(raw["matched_set_id"] == b) & (raw["is_treated"] == 1), "person_id"].iloc[0]
        raw.loc[(raw["matched_set_id"] == a) & (raw["person_id"] == ctrl), "person_id"] = treated
        links.append((a, b))
    return raw, links


def test_linked_set_clusters_joins_sets_through_shared_people():
    sets = pd.Series(["1", "1", "2", "2", "3", "3", "10", "10"])
    people = pd.Series(["a", "b", "c", "b", "d", "e", "f", "d"])
    assert list(linked_set_clusters(sets, people)) == ["1", "1", "1", "1", "3", "3", "3", "3"]
    # no shared people: each set is its own cluster
    assert list(linked_set_clusters(pd.Series(["7", "7", "9"]), pd.Series(["x", "y", "z"]))) == ["7", "7", "9"]


def test_shared_person_is_two_units_and_links_clusters():
    raw = simulate_panel(n_sets=300, rate_ratio=0.8, seed=5)
    shared, links = _share_persons(raw, n_links=40)
    base, p = prepare_panel(raw), prepare_panel(shared)
    # nothing is merged: same units, same weights, same person-months
    assert p["unit_id"].nunique() == base["unit_id"].nunique()
    assert len(p) == len(base) and np.allclose(np.sort(p["weight"]), np.sort(base["weight"]))
    assert cohort_counts(p)["control_persons"] == cohort_counts(base)["control_persons"]
    # 40 links chain the first 41 sets into one cluster
    assert base["cluster_id"].nunique() == base["matched_set_id"].nunique()
    assert p["cluster_id"].nunique() == base["matched_set_id"].nunique() - 40
    assert p.loc[p["matched_set_id"].isin({s for pair in links for s in pair}), "cluster_id"].nunique() == 1

    for outcome in ("ae_attendances", "gp_appointments"):
        a, b = estimate_poisson_did(base, outcome), estimate_poisson_did(p, outcome)
        # the same units give the same point estimate; only the clustering differs
        assert np.isclose(a.log_rate_ratio, b.log_rate_ratio, rtol=1e-8, atol=1e-10)
        assert a.se_log_rate_ratio != b.se_log_rate_ratio
        assert b.n_treated == a.n_treated and b.n_controls == a.n_controls
        assert np.isclose(estimate_linear_did(base, outcome).estimate_per_py,
                          estimate_linear_did(p, outcome).estimate_per_py)
    es_a, es_b = estimate_event_study(base, "ae_attendances"), estimate_event_study(p, "ae_attendances")
    assert np.allclose(es_a.tidy()["log_rr"], es_b.tidy()["log_rr"], equal_nan=True)

    boot = cluster_bootstrap(p, ["ae_attendances"], reps=20, seed=3)
    assert boot.n_sets == p["cluster_id"].nunique()
    assert np.isfinite(boot.log_rr.to_numpy()).all()


def test_dropping_people_from_the_prepared_panel_equals_preparing_the_table_without_them():
    """drop_persons (the deaths scenario's panel) gives what prepare_panel gives for the
    unprepared rows of everyone else, to the last bit: sets left without their treated person
    or their only control go, control weights change where a set lost a control, and the
    cluster of linked sets splits where the person linking them goes."""
    from exact import assert_identical

    from evaluation.panel import drop_persons

    raw, links = _share_persons(simulate_panel(n_sets=200, rate_ratio=0.8, seed=9, share_one_control=0.3), 30)
    raw = raw.sample(frac=1.0, random_state=4)  # the warehouse's order is any order
    panel = prepare_panel(raw, 6)
    sets = panel.drop_duplicates(["matched_set_id", "person_id"])
    one_control = sets.groupby("matched_set_id")["is_treated"].transform("size") == 2
    # the first control of sets with two, in sets no link touches
    chain = {s for pair in links for s in pair}
    two_controls = sets[~one_control & (sets["is_treated"] == 0) & ~sets["matched_set_id"].isin(chain)
                        ].drop_duplicates("matched_set_id")
    gone = {
        *sets.loc[sets["is_treated"] == 1, "person_id"].iloc[:5],  # their sets go
        *sets.loc[one_control & (sets["is_treated"] == 0), "person_id"].iloc[:5],  # sets left without a control
        *two_controls["person_id"].iloc[:5],  # their sets' other controls weigh more
        *raw.loc[raw["matched_set_id"] == links[10][0], "person_id"],  # a link of the chain
    }
    expected = prepare_panel(raw[~raw["person_id"].isin(gone)], 6)
    got = drop_persons(panel, gone)
    assert_identical(got, expected[list(got.columns)])
    # the chain of linked sets is one cluster, and two without its eleventh link
    assert panel.loc[panel["matched_set_id"].isin(chain), "cluster_id"].nunique() == 1
    assert got.loc[got["matched_set_id"].isin(chain), "cluster_id"].nunique() == 2
    # a set of two controls that lost one: the other weighs 1 instead of 1/2
    lost = two_controls["matched_set_id"].iloc[0]
    assert set(panel.loc[(panel["matched_set_id"] == lost) & (panel["is_treated"] == 0), "weight"]) == {0.5}
    assert set(got.loc[(got["matched_set_id"] == lost) & (got["is_treated"] == 0), "weight"]) == {1.0}
    # from the columns the scenario keeps only
    cols = ["matched_set_id", "person_id", "unit_id", "cluster_id", "is_treated", "weight", "rel_month"]
    assert_identical(drop_persons(panel[cols], gone), expected[cols])

    # from the prepared rows' codes, as the sensitivity analyses drop them: the same rows,
    # weights and codes, the clusters' named as linked_set_clusters names them
    from evaluation.panel import drop_persons_coded

    numeric = ["is_treated", "weight", "rel_month", "exposure_months", "ae_attendances"]
    frame, codes = drop_persons_coded(panel[numeric], PanelCodes.of(panel), gone)
    assert_identical(frame, expected[numeric])
    assert_identical(codes, PanelCodes.of(expected))


def test_linked_set_cluster_codes_name_clusters_as_linked_set_clusters_does():
    from exact import assert_identical

    from evaluation.methods.poisson_fe import SortedCodes
    from evaluation.panel import linked_set_cluster_codes

    sets = pd.Series(["1", "1", "2", "2", "3", "3", "10", "10", "9", "9", "10"], dtype="str")
    people = pd.Series(["a", "b", "c", "b", "d", "e", "f", "d", "g", "h", "h"], dtype="str")
    names = linked_set_clusters(sets, people)  # 1-2 through b; 3-10-9 through d and h: "3" and "9" beat "10"
    assert list(names) == ["1", "1", "1", "1", "3", "3", "3", "3", "3", "3", "3"]
    assert_identical(linked_set_cluster_codes(SortedCodes.of(sets), SortedCodes.of(people)),
                     SortedCodes.of(pd.Series(names, dtype="str")))
    raw, _ = _share_persons(simulate_panel(n_sets=150, rate_ratio=0.8, seed=2), n_links=25)
    panel = prepare_panel(raw)
    assert_identical(linked_set_cluster_codes(SortedCodes.of(panel["matched_set_id"]), SortedCodes.of(panel["person_id"])),
                     SortedCodes.of(pd.Series(linked_set_clusters(panel["matched_set_id"], panel["person_id"]), dtype="str")))


def test_preparing_a_panel_from_id_codes_gives_what_sorting_the_text_gives():
    """prepare_panel sorts, keeps usable sets and names clusters from the ids' codes; with a
    missing id anywhere it sorts and groups the text (its earlier way): the same panel."""
    from exact import assert_identical

    raw, _ = _share_persons(simulate_panel(n_sets=200, rate_ratio=0.8, seed=8, share_one_control=0.3), 30)
    raw = raw.sample(frac=1.0, random_state=1)
    raw.loc[raw.index[:40], "exposure_months"] = 0.0  # rows and, for some, whole people that go
    orphan = raw.iloc[[0]].assign(person_id=None, rel_month=20)  # out of the window; its id is missing
    coded, by_text = prepare_panel(raw, 6), prepare_panel(pd.concat([raw, orphan]), 6)
    assert_identical(coded, by_text)
    assert coded["cluster_id"].nunique() < coded["matched_set_id"].nunique()
