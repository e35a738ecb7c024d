"""The identifiable zone's linkage and pseudonymisation on Spark (issue 18, LTCEVAL_ENGINE=spark)
give what they give on DuckDB: one validated synthetic population, linked and published once per
engine. The Spark run scores with the model the DuckDB run trained (splink's u sample is a hash
of the record ids, and DuckDB and Spark hash differently, so a model trained on Spark differs in
its u probabilities); with the same model the links, probabilities and weights agree and the
published tables are the same bytes. Real Spark, splink, DuckDB; nothing mocked."""
from __future__ import annotations

import hashlib
import shutil
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.files import read_json
from core.settings import ENGINE_ENV, SPARK_MASTER_ENV, Paths
from identifiable_zone import pipeline
from identifiable_zone.spark_engine import zone_folder, zone_session
from required_tools import require

from idz_helpers import KEY

pytestmark = pytest.mark.slow
PERSONS = 1000


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(duckdb paths, spark paths, seconds per step and engine)."""
    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    base = tmp_path_factory.mktemp("spark_linkage")
    duck, spark = Paths(base / "duckdb"), Paths(base / "spark")
    generate(SynthParams(persons=PERSONS, seed=23), duck.out)
    mp = pytest.MonkeyPatch()
    for k in ("LTCEVAL_PSEUDO_KEY_FILE", "LTCEVAL_LINKAGE_MODEL", "AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY"):
        mp.delenv(k, raising=False)
    mp.setenv("LTCEVAL_PSEUDO_KEY", KEY)
    seconds = {}
    try:
        mp.setenv(ENGINE_ENV, "duckdb")
        pipeline.validate_all(duck, run_id="spark-linkage")
        shutil.copytree(duck.out, spark.out)  # the same accepted extracts for both engines
        for paths, engine in ((duck, "duckdb"), (spark, "spark")):
            mp.setenv(ENGINE_ENV, engine)
            model = None if engine == "duckdb" else str(next((duck.identifiable / "linkage_model").glob("splink_model_*.json")))
            t0 = time.perf_counter()
            pipeline.link_all(paths, model=model)
            t1 = time.perf_counter()
            pipeline.pseudonymise_and_publish(paths)
            seconds[engine] = {"link": round(t1 - t0, 1), "publish": round(time.perf_counter() - t1, 1)}
        print("seconds by engine:", seconds)
    finally:
        mp.undo()
    return duck, spark, seconds


def _record_person(paths: Paths) -> pd.DataFrame:
    return pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")


def test_spark_scoring_gives_the_same_links_probabilities_and_weights(runs):
    duck, spark, _ = runs
    a, b = _record_person(duck), _record_person(spark)
    assert len(a) == len(b) > PERSONS
    text = [c for c in a.columns if c not in ("match_probability", "match_weight")]
    pd.testing.assert_frame_equal(a[text], b[text])  # same rows in the same order: same links
    assert (a["rule"] == "probabilistic").sum() > 0 and (a["match_weight"].notna()).sum() > 50
    for c in ("match_probability", "match_weight"):
        assert (a[c].isna() == b[c].isna()).all(), c
        both = a[c].notna()
        np.testing.assert_allclose(b.loc[both, c], a.loc[both, c], rtol=0, atol=1e-9, err_msg=c)
    spark_summary = read_json(spark.identifiable / "link_summary.json")
    assert spark_summary["engine"] == "spark" and spark_summary["model"]["trained"] is False
    assert read_json(duck.identifiable / "link_summary.json")["engine"] == "duckdb"


def test_spark_pseudonymisation_publishes_the_same_bytes(runs):
    duck, spark, _ = runs
    names = sorted(p.name for p in duck.pseudonymised.glob("*.parquet"))
    assert len(names) >= 12 and names == sorted(p.name for p in spark.pseudonymised.glob("*.parquet"))
    for name in names:
        a, b = (pq.read_table(p.pseudonymised / name) for p in (duck, spark))
        # "byte-equal after sorting": the rows are already in the accepted order on both engines,
        # so the files themselves are compared
        assert a.num_rows == b.num_rows and a.equals(b), name
        assert hashlib.sha256((duck.pseudonymised / name).read_bytes()).digest() == \
            hashlib.sha256((spark.pseudonymised / name).read_bytes()).digest(), name


def test_spark_leaves_nothing_outside_the_identifiable_zone(runs, monkeypatch):
    _, spark, _ = runs
    # a cluster named for the analytical zone (nothing listens here): this zone's Spark stays local
    monkeypatch.setenv(SPARK_MASTER_ENV, "spark://127.0.0.1:1")
    assert not zone_folder(spark).exists()  # temp, spill and splink's checkpoints removed at the end
    assert list((spark.identifiable / "pseudonymise_spill").iterdir()) == []  # no id -> pseudonym table left
    # no metastore, table or warehouse in the analytical zone's Spark folder
    assert not spark.spark.exists()
    with zone_session(spark) as session:  # the JVM of the runs above: a new session is cheap
        conf = dict(session.sparkContext.getConf().getAll())
        assert conf["spark.local.dir"].startswith(str(spark.identifiable))
        assert conf.get("spark.eventLog.enabled", "false") == "false"
        assert conf["spark.sql.catalogImplementation"] == "in-memory"
        assert session.sparkContext.master == "local[*]"
        assert f"-Djava.io.tmpdir={spark.identifiable}" in conf["spark.driver.extraJavaOptions"]
        assert not any(KEY in v for v in conf.values())
        assert session.sparkContext.getCheckpointDir().startswith(f"file:{spark.identifiable}")
