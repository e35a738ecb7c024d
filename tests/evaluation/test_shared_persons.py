"""A person in two matched sets (not-yet-referred design: a control at one index month, the
treated person at a later one) is two units, and the sets they link are one cluster."""
import numpy as np
import pandas as pd
from simpanel import simulate_panel

from evaluation.bootstrap import cluster_bootstrap
from evaluation.did import estimate_event_study, estimate_linear_did, estimate_poisson_did
from evaluation.panel import cohort_counts, linked_set_clusters, prepare_panel


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
