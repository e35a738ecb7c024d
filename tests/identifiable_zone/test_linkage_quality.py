"""Linkage quality against the synthetic ground truth: per source, overall and per subgroup,
people not on the GP list, cluster purity, and splink's configuration (real splink/DuckDB)."""
import json

import numpy as np
import pandas as pd
import pytest

from identifiable_zone import link as lk
from identifiable_zone.sources import SPINE

MIN_RECORDS = 50
PRECISION, RECALL = 0.99, 0.97


def _age_band(dob: pd.Series, at="2019-04-01") -> pd.Series:
    age = (pd.Timestamp(at) - pd.to_datetime(dob)).dt.days // 365.25
    return pd.cut(age, [-1, 17, 34, 49, 64, 79, 200],
                  labels=["0-17", "18-34", "35-49", "50-64", "65-79", "80+"]).astype(str)


@pytest.fixture(scope="module")
def quality(run):
    paths, _ = run
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet")
    persons = pd.read_parquet(paths.ground_truth / "persons.parquet")
    unreg = pd.read_parquet(paths.ground_truth / "unregistered_persons.parquet")
    attrs = pd.concat([
        pd.DataFrame({"true_person_id": persons["person"], "age_band": _age_band(persons["date_of_birth"]),
                      "sex": persons["sex"], "ethnic_category": persons["ethnic_category"],
                      "imd_decile": persons["imd_decile"].astype(str)}),
        pd.DataFrame({"true_person_id": unreg["person"], "age_band": _age_band(unreg["date_of_birth"]),
                      "sex": unreg["sex"], "ethnic_category": "unregistered", "imd_decile": "unregistered"}),
    ], ignore_index=True)
    return lk.linkage_quality(rp, truth, attrs), rp, truth


def test_precision_and_recall_overall_and_per_source(quality):
    q, _, _ = quality
    assert q["overall"]["precision"] >= 0.999 and q["overall"]["recall"] >= 0.995, q["overall"]
    assert set(q["by_source"]) == {"iapt_ids001_mpi", "ecds", "apc", "opa"}
    for src, m in q["by_source"].items():
        assert m["records"] > 0
        if m["links"] >= MIN_RECORDS:
            assert m["precision"] >= PRECISION, (src, m)
        if m["linkable"] >= MIN_RECORDS:
            assert m["recall"] >= RECALL, (src, m)


@pytest.mark.parametrize("dim", ["age_band", "sex", "ethnic_category", "imd_decile"])
def test_precision_and_recall_in_every_subgroup(quality, dim):
    q, _, _ = quality
    groups = q["by_subgroup"][dim]
    checked = 0
    for value, m in groups.items():
        if m["records"] < MIN_RECORDS:
            continue
        checked += 1
        assert m["precision"] >= PRECISION, (dim, value, m)
        if m["linkable"] >= MIN_RECORDS:
            assert m["recall"] >= RECALL, (dim, value, m)
    assert checked >= 2, f"{dim}: fewer than two subgroups with {MIN_RECORDS}+ records"


def test_people_not_on_the_gp_list_never_link_to_a_spine_person(quality):
    q, rp, truth = quality
    assert q["unregistered_records"] >= 20, "synthetic ECDS should hold unregistered people"
    assert q["unregistered_linked"] == 0
    # relatives (same surname and postcode) and namesakes (same surname and birth date) exist
    unreg_ids = truth.loc[~truth["true_person_id"].isin(
        truth.loc[truth["source"] == SPINE, "true_person_id"]), "record_id"]
    assert rp.loc[rp["record_id"].isin(unreg_ids), "person_key"].isna().all()


def test_every_linked_cluster_is_one_true_person(quality):
    q, rp, truth = quality
    assert q["impure_clusters"] == 0 and q["clusters"] > 0
    m = rp[rp["person_key"].notna()].merge(truth, on=["source", "record_id"])
    assert (m.groupby("person_key")["true_person_id"].nunique() == 1).all()


def test_each_link_records_rule_probability_and_weight(run):
    paths, results = run
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    assert set(rp["rule"]) == {"spine", "deterministic_nhs_dob", "probabilistic", "unlinked"}
    prob = rp[rp["rule"] == "probabilistic"]
    assert len(prob) > 0 and np.isfinite(prob["match_weight"]).all()
    assert (prob["match_probability"] >= results["link"]["threshold"]).all()
    # weight and probability agree: p = 2^w / (1 + 2^w)
    assert np.allclose(prob["match_probability"], 1 / (1 + 2.0 ** -prob["match_weight"]), atol=1e-6)
    det = rp[rp["rule"].isin(["spine", "deterministic_nhs_dob"])]
    assert (det["match_probability"] == 1.0).all() and det["match_weight"].isna().all()
    assert (rp.loc[rp["rule"] == "unlinked", "person_key"].isna()).all()


def test_model_is_versioned_term_frequency_adjusted_and_holds_no_values(run):
    paths, results = run
    mdir = paths.identifiable / "linkage_model"
    ptr = json.loads((mdir / "current.json").read_text())
    model = json.loads((mdir / ptr["file"]).read_text())
    assert ptr["file"] == f"splink_model_{ptr['sha']}.json" == results["link"]["model"]["file"]
    assert lk.model_sha(model) == ptr["sha"] and ptr["run_id"] == "test-run"
    tf = {c["output_column_name"]: [lv.get("tf_adjustment_column") for lv in c["comparison_levels"]]
          for c in model["comparisons"]}
    assert "forename" in tf["forename"] and "surname" in tf["surname"]
    assert results["link"]["model"]["term_frequency_adjusted"] == ["forename", "surname"]
    text = json.dumps(model)
    spine = pd.read_csv(paths.landing / "gp_patients.csv", dtype=str)
    assert not any(n in text for n in spine["NHSNumber"].dropna().head(200))
    assert not any(f'"{s}"' in text for s in spine["Surname"].dropna().str.upper().unique())


def _ids(rows):
    return pd.DataFrame(rows, columns=["record_id"] + lk.ID_COLS)


def test_twins_and_namesakes_are_not_chained(run):
    """Two different people sharing surname, birth date, sex and address (twins) stay two
    people; a record of each links to its own twin; a third sibling who is not registered
    and a namesake elsewhere link to nobody. Uses the model trained on the synthetic run."""
    paths, _ = run
    model, _ = lk.load_model("current", paths.identifiable / "linkage_model")
    spine = _ids([
        ("G1", "9434765919", "OLIVER", "SUTCLIFFE", "1980-01-01", "M", "HX1 1AA"),
        ("G2", "4010232137", "GEORGE", "SUTCLIFFE", "1980-01-01", "M", "HX1 1AA"),
        ("G3", "4857773456", "AMELIA", "HAIGH", "1975-06-30", "F", "HX2 3BB"),
    ])
    source = _ids([
        ("E1", None, "OLIVER", "SUTCLIFFE", "1980-01-01", "M", "HX1 1AA"),   # twin 1, no NHS number
        ("E2", None, "GEORGE", "SUTCLIFFE", "1980-01-01", "M", "HX1 1AA"),   # twin 2, no NHS number
        ("E3", None, "FREDDIE", "SUTCLIFFE", "1980-01-01", "M", "HX1 1AA"),  # unregistered triplet
        ("E4", None, "THOMAS", "SUTCLIFFE", "1980-01-01", "M", "M1 4PQ"),    # namesake elsewhere
        ("E5", None, "AMELIA", "HAIGH", "1975-06-30", "F", "HX2 3BB"),
    ])
    res = lk.link_sources({SPINE: spine, "ecds": source}, model=model)
    rp = res.record_person.set_index(["source", "record_id"])
    key = lambda s, r: rp.loc[(s, r), "person_key"]  # noqa: E731
    assert key(SPINE, "G1") != key(SPINE, "G2")
    assert key("ecds", "E1") == key(SPINE, "G1")
    assert key("ecds", "E2") == key(SPINE, "G2")
    assert key("ecds", "E5") == key(SPINE, "G3")
    assert pd.isna(key("ecds", "E3")) and pd.isna(key("ecds", "E4"))
    assert rp.loc[("ecds", "E3"), "rule"] == "unlinked"


def test_staging_in_pieces_by_worker_processes_gives_the_whole_frames_standardisation(run, tmp_path, monkeypatch):
    """Linkage's staging (link_records.stage_sources) reads only the columns it needs, in
    pieces of row groups, in two worker processes; every staged row equals what the
    standardisation and subgroups give on the whole accepted table, in accepted row order."""
    import pyarrow.parquet as pq

    from identifiable_zone import link_records
    from identifiable_zone.cross_file_rules import text_frame
    from identifiable_zone.sources import load_sources_config
    from identifiable_zone.subgroups import subgroup_columns

    paths, _ = run
    cfg = load_sources_config()
    sources = list(cfg.identifier_sources)
    accepted = tmp_path / "accepted"
    accepted.mkdir()
    for table in sources:  # row groups of 100 rows, pieces of three of them
        pq.write_table(pq.read_table(paths.identifiable / "accepted" / f"{table}.parquet"),
                       accepted / f"{table}.parquet", row_group_size=100)
    monkeypatch.setattr(link_records, "BATCH_ROWS", 250)
    at = pd.Timestamp("2024-03-31")
    ref = pd.read_parquet(paths.identifiable / "accepted" / "lsoa_imd.parquet")
    imd = dict(zip(ref["LSOA11"], ref["IMD_Decile"]))
    staged = {}
    for workers in (1, 2):
        staged[workers] = {t: tmp_path / f"staged{workers}" / f"{t}.parquet" for t in sources}
        (tmp_path / f"staged{workers}").mkdir()
        link_records.stage_sources(accepted, cfg, sources, at, imd, staged[workers], workers=workers)
    for table in sources:
        one = pq.read_table(staged[1][table])
        assert one.equals(pq.read_table(staged[2][table])), table
        assert pq.ParquetFile(accepted / f"{table}.parquet").metadata.num_row_groups >= 2
        acc = text_frame(pd.read_parquet(accepted / f"{table}.parquet"))
        ids = lk.standardise_identifiers(acc, cfg[table])
        sg = subgroup_columns(acc, cfg[table], at, imd)
        text = lambda values: [None if pd.isna(v) else str(v) for v in values]  # noqa: E731
        assert one.column("record_id").to_pylist() == text(ids["record_id"])
        for c in lk.ID_COLS:
            assert one.column(c).to_pylist() == text(ids[c]), (table, c)
        for c in link_records.SUBGROUPS:
            want = sg[c] if isinstance(sg[c], pd.Series) else [sg[c]] * len(acc)
            assert one.column("sg_" + c).to_pylist() == text(want), (table, c)
