"""GUILD reporting in the IG report: linked versus unlinked records, and the linkage model's
expected error rates checked against the synthetic ground truth (a real run: splink on DuckDB)."""
import json

import numpy as np
import pandas as pd
import pytest

from core.disclosure import SUPPRESSED
from identifiable_zone.guild_reporting import (PRACTICES_SHOWN, expected_errors, linked_unlinked_differences,
                                               practice_rows_to_publish, under_linked_groups)


def _records(groups: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """One row per record: its group and whether it linked ({group: (records, linked)})."""
    return pd.DataFrame([(g, i < linked) for g, (n, linked) in groups.items() for i in range(n)],
                        columns=["group", "linked"])


def _rows(groups: dict[str, tuple[int, int]]) -> list[dict]:
    return [{"source": "ecds", "age_band": g, "records": n, "linked": k} for g, (n, k) in groups.items()]


def test_the_standardised_difference_is_that_of_the_group_indicator_in_linked_and_unlinked_records():
    groups = {"18-34": (400, 300), "35-49": (500, 480), "80+": (300, 290)}
    recs = _records(groups)
    got = {d["group"]: d for d in linked_unlinked_differences(_rows(groups), "age_band", rounded=False)}
    for g in groups:  # from record-level indicators, independently of the function's arithmetic
        x_l = (recs.loc[recs["linked"], "group"] == g).to_numpy(float)
        x_u = (recs.loc[~recs["linked"], "group"] == g).to_numpy(float)
        smd = (x_l.mean() - x_u.mean()) / np.sqrt((x_l.var() + x_u.var()) / 2)
        assert got[g]["std_difference"] == pytest.approx(smd, abs=5e-4)
        assert got[g]["linked_pct"] == pytest.approx(100 * x_l.mean(), abs=0.05)  # 3 figures
    # the 18-34s are a quarter unlinked against 4% and 3%: they are the under-linked group
    assert [d["group"] for d in under_linked_groups(list(got.values()))] == ["18-34"]


def test_published_differences_come_from_rounded_counts_and_hide_small_groups():
    groups = {"18-34": (403, 298), "35-49": (502, 497), "80+": (301, 288)}  # 5 and 13 unlinked
    pub = {d["group"]: d for d in linked_unlinked_differences(_rows(groups), "age_band", rounded=True)}
    assert pub["35-49"]["linked_pct"] == SUPPRESSED and pub["35-49"]["std_difference"] is None
    # 18-34: 300 of the rounded linked (300 + 495 + 290), 105 of the rounded unlinked shown (105 + 15)
    assert pub["18-34"]["linked_pct"] == pytest.approx(100 * 300 / 1085, abs=0.05)
    assert pub["18-34"]["unlinked_pct"] == pytest.approx(100 * 105 / 120, abs=0.05)


def test_published_practices_are_the_most_different_ones_and_the_rest_pooled():
    rows = [{"source": "apc", "practice": f"Y{10000 + i:05d}", "records": 200, "linked": 190} for i in range(30)]
    rows[7]["linked"] = 120  # 40% unlinked against 5%: far the most different
    rows[25]["linked"] = 160  # 20% unlinked: named although its code sorts late
    rows[12] = {**rows[12], "records": 5, "linked": 5}  # a small practice: its counts are suppressed
    rows.append({"source": "apc", "practice": "not recorded", "records": 60, "linked": 10})
    pub = practice_rows_to_publish(rows)
    named = [r["practice"] for r in pub if r["practice"].startswith("Y")]
    assert len(named) == PRACTICES_SHOWN and {"Y10007", "Y10025"} <= set(named)
    assert "Y10012" not in named  # no figures of its own to rank it by: pooled
    other = [r for r in pub if r["practice"].startswith("other practices")]
    assert [r["practice"] for r in other] == [f"other practices ({30 - PRACTICES_SHOWN})"]
    pooled = [r for r in rows[:30] if r["practice"] not in named]
    assert other[0]["records"] == sum(r["records"] for r in pooled)
    assert other[0]["linked"] == sum(r["linked"] for r in pooled)
    assert pub[-1]["practice"] == "not recorded"
    # every record is in exactly one published row
    assert sum(r["records"] for r in pub) == sum(r["records"] for r in rows)
    diffs = linked_unlinked_differences(pub, "practice", rounded=True)
    assert {d["group"] for d in under_linked_groups(diffs)} >= {"Y10007", "Y10025", "not recorded"}


def test_a_group_none_of_whose_records_linked_is_under_linked():
    # every unlinked record is in the group and none of its records linked: no finite difference
    rows = [{"source": "ecds", "practice": "Y10000", "records": 400, "linked": 400},
            {"source": "ecds", "practice": "not recorded", "records": 30, "linked": 0}]
    diffs = linked_unlinked_differences(rows, "practice", rounded=True)
    assert [d["group"] for d in under_linked_groups(diffs)] == ["not recorded"]
    rows[1]["linked"] = 20  # two thirds linked, against all of the others: a finite difference
    assert [d["group"] for d in under_linked_groups(linked_unlinked_differences(rows, "practice", rounded=True))] \
        == ["not recorded"]


def test_expected_errors_of_a_model_whose_probabilities_are_right_match_the_errors_made():
    # links accepted at probabilities p are false with probability 1 - p; rejected best candidates
    # are true with probability p: the expected rates are the observed ones, up to chance
    rng = np.random.default_rng(3)
    p_links = rng.uniform(0.95, 1.0, 20_000)
    p_rejected = rng.uniform(0.01, 0.95, 2_000)
    false = (rng.random(p_links.size) > p_links).sum()
    missed = (rng.random(p_rejected.size) < p_rejected).sum()
    deterministic = 30_000
    e = expected_errors(deterministic + p_links.size, float((1 - p_links).sum()), p_rejected.size + 500,
                        float(p_rejected.sum()), 500)
    true_links = deterministic + p_links.size - false
    assert e["false_match_rate"] == pytest.approx(false / (deterministic + p_links.size), rel=0.1)
    assert e["missed_match_rate"] == pytest.approx(missed / (true_links + missed), rel=0.1)
    assert e["missed_match_rate_upper"] > e["missed_match_rate"]


@pytest.fixture(scope="module")
def reports(run):
    paths, _ = run
    raw = json.loads(next((paths.identifiable / "ig_reports").glob("*.json")).read_text())
    pub = json.loads((paths.reports / "ig_report.json").read_text())
    return paths, raw, pub


def test_the_ig_report_compares_linked_and_unlinked_records_of_every_source(reports):
    paths, raw, pub = reports
    for report in (raw, pub):
        diffs = report["linkage"]["linked_vs_unlinked"]
        assert {d["source"] for d in diffs} == {"iapt_ids001_mpi", "ecds", "apc", "opa"}
        assert {d["characteristic"] for d in diffs} == {"age_band", "sex", "ethnic_category", "imd_decile",
                                                        "practice"}
        assert any(isinstance(d["std_difference"], float) for d in diffs)
    html = (paths.reports / "ig_report.html").read_text()
    assert "Linked versus unlinked records (GUILD)" in html and "Under-linked:" in html
    # people not on the GP list (unregistered A&E visitors) cannot link: in the synthetic data
    # they carry no ethnic category from the GP record, so ECDS's unlinked records differ there
    assert [d for d in raw["linkage"]["under_linked"] if d["source"] == "ecds"]


def test_the_model_s_expected_error_rates_agree_with_the_ground_truth(reports):
    from identifiable_zone.link import linkage_metrics

    paths, raw, pub = reports
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet")
    for src, e in raw["linkage"]["expected_errors"].items():
        observed = linkage_metrics(rp[rp["source"].isin(["gp_patients", src])], truth)
        # the synthetic linkage is near perfect: both rates are well under 1%; the model knows it
        assert abs(e["false_match_rate"] - (1 - observed["precision"])) < 0.005, (src, e, observed)
        assert abs(e["missed_match_rate"] - (1 - observed["recall"])) < 0.01, (src, e, observed)
        assert set(pub["linkage"]["expected_error_rates"][src]) == {
            "false_match_pct", "missed_match_pct", "missed_match_pct_upper"}
    assert "Expected linkage errors (from the linkage model)" in (paths.reports / "ig_report.html").read_text()


def test_the_ig_report_shows_the_linkage_model_without_record_values(reports):
    paths, raw, pub = reports
    model = json.loads((paths.identifiable / "linkage_model" / raw["manifest"]["linkage_model"]["file"]).read_text())
    levels = {(r["comparison"], r["level"]): r for r in pub["linkage"]["model_levels"]}
    checked = 0
    for c in model["comparisons"]:
        for lv in c["comparison_levels"]:
            if lv.get("is_null_level") or not (lv.get("m_probability") and lv.get("u_probability")):
                continue
            row = levels[(c["output_column_name"], lv["label_for_charts"])]
            assert row["match_weight"] == pytest.approx(np.log2(lv["m_probability"] / lv["u_probability"]), abs=0.006)
            checked += 1
    assert checked >= 10
    for src, rows in pub["linkage"]["precision_by_threshold"].items():
        # the mean probability of the records at or above a threshold is at least the threshold,
        # and it can only rise with it
        assert rows, src
        assert all(r["expected_precision"] >= r["threshold"] * (1 - 1e-4) for r in rows)
        assert all(a["expected_precision"] <= b["expected_precision"] * (1 + 1e-4) for a, b in zip(rows, rows[1:]))
        assert all(set(r) == {"threshold", "expected_precision"} for r in rows)  # no counts
    html = (paths.reports / "ig_report.html").read_text()
    assert "The linkage model (splink)" in html and html.count("<img alt=") == 3


def test_practice_is_compared_on_the_record_s_own_practice_field(reports):
    paths, raw, pub = reports
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet", columns=["source", "record_id", "rule"])
    ecds = pd.read_parquet(paths.identifiable / "accepted" / "ecds.parquet", columns=["EC_Ident", "GP_Practice_Code"])
    ecds = ecds.merge(rp[rp["source"] == "ecds"], left_on="EC_Ident", right_on="record_id")
    ecds["practice"] = ecds["GP_Practice_Code"].fillna("not recorded")
    want = {p: (len(g), int((g["rule"] != "unlinked").sum())) for p, g in ecds.groupby("practice")}
    raw_rows = {r["practice"]: (r["records"], r["linked"]) for r in raw["linkage"]["rates_by_subgroup"]["practice"]
                if r["source"] == "ecds"}
    assert raw_rows == want and len(want) > PRACTICES_SHOWN + 1
    # unregistered A&E attenders carry no practice and cannot link: "not recorded" is under-linked
    assert want["not recorded"][1] < want["not recorded"][0] / 2
    assert [d for d in raw["linkage"]["under_linked"]
            if (d["source"], d["characteristic"], d["group"]) == ("ecds", "practice", "not recorded")]
    assert [d for d in pub["linkage"]["linked_vs_unlinked"]
            if (d["source"], d["characteristic"], d["group"]) == ("ecds", "practice", "not recorded")]
    # IAPT's MPI has no practice field; nothing is made up for it
    assert {r["practice"] for r in raw["linkage"]["rates_by_subgroup"]["practice"]
            if r["source"] == "iapt_ids001_mpi"} == {"not in source"}
    for src in ("ecds", "apc", "opa"):
        shown = [r for r in pub["linkage"]["rates_by_subgroup"]["practice"] if r["source"] == src]
        named = [r["practice"] for r in shown if r["practice"][:1] == "Y"]
        assert len(named) == PRACTICES_SHOWN, src
        pooled = [r for r in shown if r["practice"].startswith("other practices (")]
        assert len(pooled) == 1 and all(r["records"] in (0, SUPPRESSED) or r["records"] % 5 == 0 for r in shown)
        raw_src = [r for r in raw["linkage"]["rates_by_subgroup"]["practice"] if r["source"] == src]
        n_other = len([r for r in raw_src if r["practice"][:1] == "Y"]) - PRACTICES_SHOWN
        assert pooled[0]["practice"] == f"other practices ({n_other})"
    html = (paths.reports / "ig_report.html").read_text()
    assert "Linkage by practice" in html and "own GP practice code" in html
