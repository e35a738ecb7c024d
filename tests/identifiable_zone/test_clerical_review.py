"""Clerical review of the linkage: the interval's coverage by simulation, then a real run with
the generator's harder identifier noise, its sample exported into the identifiable zone, the
decisions filled from the ground truth (a reviewer who knows the truth), read back and checked
against the truth computed over every record; bad decision files; the IG report's section."""
import json
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from identifiable_zone import clerical_review as cr
from identifiable_zone import guild_reporting, ig_report
from identifiable_zone import link as lk
from identifiable_zone import pipeline
from idz_helpers import run_zone
from test_end_to_end import IDENTIFIER_COLS

PERSONS = 3000


# -- the estimator -------------------------------------------------------------------------------

def _population(rng, sizes, shares):
    """Pairs of each stratum: records sharing the pair (1 + Poisson(1.5)) and whether it is a match."""
    return {f"s{h}": pd.DataFrame({"records": 1 + rng.poisson(1.5, n), "match": rng.random(n) < p})
            for h, (n, p) in enumerate(zip(sizes, shares))}


def _coverage(pop, per_stratum, reps, seed):
    """Share of ``reps`` stratified samples whose 95% interval holds the population's share."""
    rng = np.random.default_rng(seed)
    all_pairs = pd.concat(pop.values())
    truth = (all_pairs["records"] * all_pairs["match"]).sum() / all_pairs["records"].sum()
    population = {s: (len(d), int(d["records"].sum())) for s, d in pop.items()}
    hits, widths = 0, []
    for _ in range(reps):
        sample = pd.concat([d.iloc[rng.choice(len(d), min(per_stratum, len(d)), replace=False)].assign(stratum=s)
                            for s, d in pop.items()])
        est = cr.stratified_share(sample, population)
        lo, hi = est["ci95"]
        hits += lo <= truth <= hi
        widths.append(hi - lo)
    return hits / reps, float(np.mean(widths))


@pytest.mark.parametrize("sizes, shares, nominal", [
    ((300, 800, 4000), (0.55, 0.93, 0.995), False),  # precision of links: most in the top stratum, near 1
    ((2000, 150, 40), (0.01, 0.3, 0.7), False),      # true matches among rejected candidates: rare below
    ((60, 5000), (0.0, 0.999), False),               # samples mostly all-agreeing: the zero-variance case
    ((500, 500), (0.9, 0.98), True),  # one stratum all-agreeing in 55% of samples (0.98^30); without the
                                      # pairs' sizes in that stratum's variance it covered 91%
    ((1000, 1000, 1000), (0.5, 0.5, 0.5), True),
])
def test_stratified_wilson_interval_covers_the_truth_about_95_percent(sizes, shares, nominal):
    """Design-based coverage: one population, 600 stratified samples of 30 pairs a stratum. Near
    0 or 1 a sample of 30 cannot show the share (0.995 shows as 30 or 29 of 30), so coverage there
    is above 95%, as for any interval from so few; away from the edges it is about 95%."""
    pop = _population(np.random.default_rng(11), sizes, shares)
    coverage, width = _coverage(pop, per_stratum=30, reps=600, seed=5)
    assert 0.93 <= coverage, coverage
    if nominal:
        assert coverage <= 0.975, coverage
    assert width < 0.25  # an interval, not the whole range


def test_census_of_every_stratum_gives_the_exact_share_and_wilson_its_known_bounds():
    pop = _population(np.random.default_rng(2), (20, 12), (0.4, 0.9))
    sample = pd.concat([d.assign(stratum=s) for s, d in pop.items()])
    est = cr.stratified_share(sample, {s: (len(d), int(d["records"].sum())) for s, d in pop.items()})
    truth = (sample["records"] * sample["match"]).sum() / sample["records"].sum()
    assert est["estimate"] == pytest.approx(truth) and est["ci95"] == [pytest.approx(truth)] * 2
    lo, hi = cr.wilson(0.0, 10)  # 0 of 10: Wilson's upper bound is z^2 / (n + z^2)
    assert lo == 0.0 and hi == pytest.approx(cr.Z95 ** 2 / (10 + cr.Z95 ** 2))


def test_a_stratum_with_records_but_no_decided_pair_is_named():
    decided = pd.DataFrame({"stratum": ["a"], "records": [1], "match": [True]})
    with pytest.raises(cr.ClericalReviewError, match="stratum b has no pair decided"):
        cr.stratified_share(decided, {"a": (5, 5), "b": (3, 4)})


def test_strata_edges_hold_the_threshold_once():
    assert cr.strata_edges(0.95) == [0.0, 0.5, 0.8, 0.95, 0.99, 0.999, 1.0]
    assert cr.strata_edges(0.99) == [0.0, 0.5, 0.8, 0.99, 0.999, 1.0]
    labels = cr.assign_strata(pd.Series(["link", "rejected"]), pd.Series([0.99, 0.2]), cr.strata_edges(0.95))
    assert labels.tolist() == ["link 0.99-0.999", "rejected 0-0.5"]


# -- a real run ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A run with HARD_ERROR_RATES, its sample exported, decisions filled from the ground truth."""
    from synthetic.generate import generate
    from synthetic.params import HARD_ERROR_RATES, SynthParams

    out = tmp_path_factory.mktemp("idz_clerical")
    generate(SynthParams(persons=PERSONS, seed=7, error_rates=HARD_ERROR_RATES), out)
    paths, _ = run_zone(out)
    report_before = (paths.reports / "ig_report.html").read_text()
    exported = cr.export_sample(paths, per_stratum=30, seed=3)
    folder = cr.review_dir(paths, "test-run")
    sample = pd.read_csv(folder / cr.SAMPLE_FILE, dtype=str, keep_default_na=False)
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet").set_index(
        ["source", "record_id"])["true_person_id"]
    members = pd.read_parquet(folder / cr.RECORDS_FILE)
    candidate = sample.set_index("pair_id")["candidate_record_id"]
    members["match"] = [truth[(s, r)] == truth[("gp_patients", candidate[p])]
                        for s, r, p in zip(members["source"], members["record_id"], members["pair_id"])]
    # a reviewer decides a pair once: every record of a pair shares its identifiers
    by_pair = members.groupby("pair_id")["match"].agg(["min", "max"])
    assert (by_pair["min"] == by_pair["max"]).all()
    decisions = sample.assign(decision=sample["pair_id"].map(by_pair["min"]).map({True: "match", False: "non-match"}))
    decisions_file = out / "decisions.csv"
    decisions.to_csv(decisions_file, index=False)
    result = cr.import_decisions(paths, decisions_file)
    return paths, exported, sample, decisions, result, report_before


def _landing_identifiers(paths):
    nhs, names, postcodes = set(), set(), set()
    for table, (n, f, s, p) in IDENTIFIER_COLS.items():
        df = pd.read_csv(paths.landing / f"{table}.csv", dtype=str)
        nhs |= set(df[n].dropna())
        names |= {v for v in set(df[f].dropna().str.upper()) | set(df[s].dropna().str.upper()) if len(v) > 3}
        postcodes |= set(df[p].dropna().str.replace(" ", "").str.upper())
    return nhs, names, postcodes


# words of the reports' own text (e.g. Wilson, the interval's author; "more") that the noisy
# synthetic names happen to hold too: not identifiers
REPORT_WORDS = {w.upper() for m in (cr, ig_report, guild_reporting)
                for w in re.findall(r"[A-Za-z]+", Path(m.__file__).read_text())}


def _has_identifiers(text, identifiers):
    nhs, names, postcodes = identifiers
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # the charts' bytes
    tokens = set(re.findall(r"[A-Za-z0-9]+", text))
    return bool(tokens & nhs or {t.upper() for t in tokens if len(t) > 3} & (names - REPORT_WORDS)
                or any(p in text.replace(" ", "") for p in postcodes))


def test_sample_is_stratified_and_written_privately_inside_the_zone(reviewed):
    paths, exported, sample, *_ = reviewed
    folder = cr.review_dir(paths, "test-run")
    assert folder.parent.parent == paths.identifiable
    for f in (cr.SAMPLE_FILE, cr.RECORDS_FILE, cr.MANIFEST_FILE, cr.ESTIMATE_FILE):
        assert stat.S_IMODE((folder / f).stat().st_mode) == 0o600, f
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    manifest = json.loads((folder / cr.MANIFEST_FILE).read_text())
    assert manifest["run_id"] == "test-run" and manifest["threshold"] == 0.95
    assert [s["stratum"] for s in manifest["strata"]] == [
        f"{k} {lo:g}-{hi:g}" for k in cr.KINDS for lo, hi in zip(cr.strata_edges(0.95), cr.strata_edges(0.95)[1:])]
    # populations from record_person: every probabilistic link and scored unlinked record, once
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    prob = rp[rp["rule"] == "probabilistic"]
    rejected = rp[(rp["rule"] == "unlinked") & rp["candidate_record_id"].notna()]
    by_kind = {k: sum(s["population_records"] for s in manifest["strata"] if s["kind"] == k) for k in cr.KINDS}
    assert by_kind == {"link": len(prob), "rejected": len(rejected)}
    top = next(s for s in manifest["strata"] if s["stratum"] == "link 0.999-1")
    assert top["population_pairs"] > 30 and top["sample_pairs"] == 30  # more than drawn: a sample
    for s in manifest["strata"]:
        assert s["sample_pairs"] == min(30, s["population_pairs"])
        assert (sample["stratum"] == s["stratum"]).sum() == s["sample_pairs"]
    assert manifest["records"]["deterministic_links"] == int(rp["rule"].str.startswith("deterministic").sum())
    # each sampled pair: its probability in its stratum, identifiers side by side, no decision yet
    edges = cr.strata_edges(0.95)
    kinds = np.where(sample["stratum"].str.startswith("link"), "link", "rejected")
    assert cr.assign_strata(pd.Series(kinds), sample["match_probability"].astype(float), edges).tolist() == \
        sample["stratum"].tolist()
    for c in lk.ID_COLS:
        assert {f"record_{c}", f"candidate_{c}", f"record_{c}_received", f"candidate_{c}_received"} <= set(sample)
    assert (sample["record_surname"] != "").mean() > 0.9 and (sample["candidate_surname"] != "").all()
    assert sample["pair_id"].is_unique and sample["pair_id"].str.startswith(exported["export_id"] + "-").all()
    # what export returns (and the CLI prints) holds no identifiers
    assert not _has_identifiers(json.dumps(exported), _landing_identifiers(paths))
    assert _has_identifiers(sample.to_csv(), _landing_identifiers(paths))  # the scan finds them where they are


def test_estimates_hold_the_truth_computed_from_every_record(reviewed):
    paths, _, _, _, result, _ = reviewed
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet").set_index(
        ["source", "record_id"])["true_person_id"]
    rp["true"] = [truth[(s, r)] for s, r in zip(rp["source"], rp["record_id"])]
    rp["candidate_true"] = [truth[("gp_patients", c)] if pd.notna(c) else None for c in rp["candidate_record_id"]]
    prob = rp[rp["rule"] == "probabilistic"]
    rejected = rp[(rp["rule"] == "unlinked") & rp["candidate_record_id"].notna()]
    true_precision = (prob["true"] == prob["candidate_true"]).mean()
    true_missed = int((rejected["true"] == rejected["candidate_true"]).sum())
    assert len(prob) > 1000 and len(rejected) > 0 and true_missed > 0
    lo, hi = result["precision_probabilistic"]["ci95"]
    assert lo <= true_precision <= hi and hi - lo < 0.25
    lo, hi = result["missed_matches"]["ci95"]
    # a stratum reviewed whole gives its count exactly (the weighted sum's float noise aside)
    assert lo - 1e-9 * true_missed <= true_missed <= hi + 1e-9 * true_missed
    # the pipeline's own judge of links (linkage_metrics: the linked person's spine records)
    by_rule = lk.linkage_metrics(rp, truth.reset_index())["by_rule"]["probabilistic"]
    lo, hi = result["false_match_rate_probabilistic"]["ci95"]
    assert lo <= by_rule["wrong"] / by_rule["links"] <= hi
    det = int(rp["rule"].str.startswith("deterministic").sum())
    true_recall = (det + (prob["true"] == prob["candidate_true"]).sum()) / (
        det + (prob["true"] == prob["candidate_true"]).sum() + true_missed)
    lo, hi = result["recall"]["ci95"]
    assert lo <= true_recall <= hi
    assert result["decided_pairs"] == len(pd.read_csv(cr.review_dir(paths, "test-run") / cr.SAMPLE_FILE))
    assert result["unsure_pairs"] == 0 and result["not_reviewed_pairs"] == 0


def test_unsure_and_blank_pairs_are_left_out_and_counted(reviewed):
    paths, exported, sample, decisions, result, _ = reviewed
    folder = cr.review_dir(paths, "test-run")
    manifest = json.loads((folder / cr.MANIFEST_FILE).read_text())
    samples = pd.read_parquet(folder / cr.RECORDS_FILE).groupby(["pair_id", "stratum"]).size().rename(
        "records").reset_index()
    given = dict(zip(decisions["pair_id"], decisions["decision"]))
    top = sample.loc[sample["stratum"] == "link 0.999-1", "pair_id"].tolist()
    for pid in top[:4]:
        given[pid] = "unsure"
    del given[top[4]]
    est = cr.estimate(manifest, samples, given)
    assert est["unsure_pairs"] == 4 and est["not_reviewed_pairs"] == 1
    assert est["decided_pairs"] == result["decided_pairs"] - 5
    row = next(s for s in est["strata"] if s["stratum"] == "link 0.999-1")
    assert row["unsure"] == 4 and row["not reviewed"] == 1 and row["match"] + row["non-match"] == 25


@pytest.mark.parametrize("edit, message", [
    (lambda d, x: d.assign(pair_id=d["pair_id"].where(d.index != 2, f"{x}-9999")),
     r"line 4: field pair_id {x}-9999 is unknown: not in export {x}"),
    (lambda d, x: d.assign(decision=d["decision"].where(d.index != 0, "probably")),
     r"line 2: field decision of {x}-\d+ is not one of match, non-match, unsure"),
    (lambda d, x: d.assign(decision=d["decision"].where(d.index != 5, "")),
     r"line 7: field decision of {x}-\d+ is empty"),
    (lambda d, x: d.assign(pair_id=d["pair_id"].str.replace(x, "0badc0de")),
     r"line 2: field pair_id 0badc0de-0001 is from another export \(0badc0de; this run's export is {x}\)"),
    (lambda d, x: d.assign(pair_id=d["pair_id"].where(d.index != 1, "ANGELA SMITH")),
     r"line 3: field pair_id is not a pair id of a clerical-review sample$"),
    (lambda d, x: pd.concat([d, d.iloc[[0]]]),
     r"field pair_id {x}-0001 is also on line 2"),
    (lambda d, x: d.drop(columns="decision"), r"line 1: no decision column"),
])
def test_bad_decision_files_name_file_line_and_field(reviewed, tmp_path, edit, message):
    paths, exported, _, decisions, result, _ = reviewed
    x = exported["export_id"]
    bad = tmp_path / "decisions.csv"
    edit(decisions.copy(), x).to_csv(bad, index=False)
    with pytest.raises(cr.ClericalReviewError) as e:
        cr.import_decisions(paths, bad)
    assert str(bad) in str(e.value)
    assert re.search(message.format(x=x), str(e.value), re.M), str(e.value)
    assert "ANGELA" not in str(e.value)  # a value that is not a pair id is never repeated
    # the estimate of the good decisions is untouched
    kept = json.loads((cr.review_dir(paths, "test-run") / cr.ESTIMATE_FILE).read_text())
    assert kept["decided_pairs"] == result["decided_pairs"]


def test_a_new_export_is_refused_once_the_review_is_estimated(reviewed):
    paths, *_ = reviewed
    with pytest.raises(cr.ClericalReviewError, match="already holds the estimate"):
        cr.export_sample(paths)


def test_ig_report_shows_the_review_beside_the_model_without_identifiers_or_small_counts(reviewed):
    paths, _, _, _, result, report_before = reviewed
    assert "No clerical review recorded" in report_before
    pipeline.write_ig_report(paths)
    pub = json.loads((paths.reports / "ig_report.json").read_text())
    html = (paths.reports / "ig_report.html").read_text()
    review = pub["linkage"]["clerical_review"]
    assert review["recorded"] and review["export_id"] == result["export_id"]
    n = review["decided_pairs"]
    assert n == "*" or (n % 5 == 0 and abs(n - result["decided_pairs"]) <= 2)
    rates = {r["measure"]: r for r in review["rates"]}
    precision = rates["precision of the probabilistic links"]
    assert precision["clerical_pct"] == pytest.approx(100 * result["precision_probabilistic"]["estimate"], rel=1e-2)
    lo, hi = precision["clerical_ci95_pct"]
    assert lo <= precision["clerical_pct"] <= hi and precision["model_expected_pct"] > 99
    assert rates["missed-match rate (among scored candidates)"]["model_expected_pct"] is not None
    assert "Clerical review of the linkage" in html and "No clerical review recorded" not in html
    raw = json.loads(next((paths.identifiable / "ig_reports").glob("*.json")).read_text())
    assert raw["linkage"]["clerical_review"]["estimate"]["export_id"] == result["export_id"]
    identifiers = _landing_identifiers(paths)
    for text in (html, json.dumps(pub), json.dumps(raw)):
        assert not _has_identifiers(text, identifiers)
