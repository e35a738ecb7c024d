"""Same inputs + same key -> byte-identical outputs; another key -> unlinkable pseudonyms;
the key through Airflow's own Variable/Connection API; reuse of a saved linkage model.
Everything real: files, GX, DuckDB, splink, Airflow's secrets backends (no mocks)."""
import hashlib
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from identifiable_zone import pipeline
from identifiable_zone import pseudonymise as ps

from idz_helpers import KEY, copy_landing, run_zone

OTHER_KEY = "another-project-key-" + "fedcba9876543210" * 2


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def two_runs(small_landing, tmp_path_factory):
    """Run A: key from LTCEVAL_PSEUDO_KEY. Run B: same landing copied elsewhere, the same key
    given only as AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY (read by airflow.sdk.Variable.get through
    Airflow's environment-variables secrets backend), model trained again from scratch."""
    a = copy_landing(small_landing, tmp_path_factory.mktemp("run_a"))
    b = copy_landing(small_landing, tmp_path_factory.mktemp("run_b"))
    return run_zone(a, run_id="repro"), run_zone(b, run_id="repro", key_env="AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY")


def test_same_inputs_same_key_give_byte_identical_outputs(two_runs):
    (pa_, ra), (pb, rb) = two_runs
    da, db = _digests(pa_.pseudonymised), _digests(pb.pseudonymised)
    assert len(da) >= 12 and da == db
    assert ra["link"]["model"]["sha"] == rb["link"]["model"]["sha"]  # training is deterministic too
    a = pd.read_parquet(pa_.identifiable / "links" / "record_person.parquet")
    b = pd.read_parquet(pb.identifiable / "links" / "record_person.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_airflow_variable_route_delivered_the_key(two_runs):
    (pa_, ra), (pb, rb) = two_runs
    assert ra["publish"]["key_fingerprint"] == rb["publish"]["key_fingerprint"] == ps.key_fingerprint(KEY.encode())
    pub_b = json.loads((pb.identifiable / "publish_summary.json").read_text())
    assert pub_b["key_source"] == "Airflow Variable ltceval_pseudo_key"
    rep = json.loads((pb.reports / "ig_report.json").read_text())
    assert rep["manifest"]["key_source"] == "Airflow Variable ltceval_pseudo_key"
    assert KEY not in (pb.reports / "ig_report.json").read_text()


def test_airflow_connection_route(monkeypatch):
    for k in ("LTCEVAL_PSEUDO_KEY", "LTCEVAL_PSEUDO_KEY_FILE", "AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY",
                       json.dumps({"conn_type": "generic", "password": OTHER_KEY}))
    key, where = ps.load_key_with_source()
    assert key == OTHER_KEY.encode() and where.startswith("Airflow Connection ltceval_pseudo_key")
    # the Variable wins over the Connection; the environment variable over both
    monkeypatch.setenv("AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY", KEY)
    assert ps.load_key() == KEY.encode()
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", "env-" + OTHER_KEY)
    assert ps.load_key_with_source() == (("env-" + OTHER_KEY).encode(), "environment variable LTCEVAL_PSEUDO_KEY")


def test_a_different_key_gives_unlinkable_pseudonyms(two_runs, tmp_path, monkeypatch):
    (pa_, _), _ = two_runs
    import shutil

    c = tmp_path / "run_c"
    shutil.copytree(pa_.out, c)
    from core.settings import Paths

    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", OTHER_KEY)
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY_FILE", raising=False)
    res = pipeline.pseudonymise_and_publish(Paths(c))
    assert res["key_fingerprint"] == ps.key_fingerprint(OTHER_KEY.encode())
    ids_a = set(pq.read_table(pa_.pseudonymised / "person.parquet").column("person_id").to_pylist())
    ids_c = set(pq.read_table(c / "analytical" / "pseudonymised" / "person.parquet").column("person_id").to_pylist())
    assert len(ids_a) == len(ids_c) > 500 and not (ids_a & ids_c)
    # same structure: only the pseudonyms changed, the record ids' too (issue 15: a new key
    # must not leave a column on which old and new tables join)
    ta = pq.read_table(pa_.pseudonymised / "ecds.parquet").to_pandas()
    tc = pq.read_table(c / "analytical" / "pseudonymised" / "ecds.parquet").to_pandas()
    assert ta.drop(columns=["person_id", "EC_Ident"]).equals(tc.drop(columns=["person_id", "EC_Ident"]))
    assert ta["person_id"].isna().equals(tc["person_id"].isna())
    assert not set(ta["EC_Ident"]) & set(tc["EC_Ident"])


def test_a_saved_model_is_reused_instead_of_retraining(two_runs, tmp_path, monkeypatch):
    (pa_, ra), (pb, _) = two_runs
    before = sorted(p.name for p in (pa_.identifiable / "linkage_model").iterdir())
    # 1. by environment variable, the current model of this output folder
    monkeypatch.setenv("LTCEVAL_LINKAGE_MODEL", "current")
    s = pipeline.link_all(pa_)
    assert s["model"]["trained"] is False and s["model"]["option"] == "current"
    assert s["model"]["file"] == ra["link"]["model"]["file"] and s["model_trained"] is False
    assert sorted(p.name for p in (pa_.identifiable / "linkage_model").iterdir()) == before
    # 2. by explicit file, from another run's folder: identical links
    monkeypatch.delenv("LTCEVAL_LINKAGE_MODEL")
    model_file = pa_.identifiable / "linkage_model" / ra["link"]["model"]["file"]
    s2 = pipeline.link_all(pb, model=str(model_file))
    assert s2["model"]["trained"] is False and s2["model"]["sha"] == ra["link"]["model"]["sha"]
    a = pd.read_parquet(pa_.identifiable / "links" / "record_person.parquet")
    b = pd.read_parquet(pb.identifiable / "links" / "record_person.parquet")
    pd.testing.assert_frame_equal(a, b)
    # 3. nothing saved yet -> a clear error, not a silent retrain
    from identifiable_zone.link import LinkageError
    from core.settings import Paths

    empty = Paths(tmp_path)
    (tmp_path / "identifiable").mkdir()
    (tmp_path / "identifiable" / "run.json").write_text(json.dumps({"run_id": "x", "started_at": "2024-01-01T00:00:00"}))
    with pytest.raises(LinkageError, match="no saved linkage model"):
        pipeline.link_all(empty, model="current")


def test_extra_site_column_is_reported_and_not_published(two_runs):
    (pa_, ra), _ = two_runs
    val = json.loads((pa_.identifiable / "validation_summary.json").read_text())
    assert val["tables"]["ecds"]["extra_columns"] == ["LocalTriageNotes"]
    rep = json.loads((pa_.reports / "ig_report.json").read_text())
    v = {x["table"]: x for x in rep["validation"]}
    assert v["ecds"]["extra_columns_not_read"] == ["LocalTriageNotes"]
    assert "LocalTriageNotes" in (pa_.reports / "ig_report.html").read_text()
    assert "LocalTriageNotes" not in pq.read_table(pa_.pseudonymised / "ecds.parquet").column_names
