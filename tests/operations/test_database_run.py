"""`ltceval run --config <database sources>` (issue 18): the baseline run's extracts, three of
them served by a real PostgreSQL server instead of landing files, give the same business case."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import sqlalchemy as sa

from ltceval_runs import (baseline, business_case_apart_from_linkage_thresholds, current_period, key_file, ltceval,
                          run_env)
from ops.postgres_cluster import PostgresCluster, postgres_bindir
from postgres_tables import database_sources_config, load_csv_as_text
from required_tools import require

pytestmark = pytest.mark.slow

URL_ENV = "LTCEVAL_TEST_WAREHOUSE_URL"
FROM_DATABASE = {"gp_patients": {"connection": "ltceval_test_gp", "table": "gp_patients"},
                 "ecds": {"url_env": URL_ENV, "table": "ecds"},
                 "opa": {"url_env": URL_ENV, "query": "SELECT * FROM opa"}}


def test_a_run_reading_sources_from_a_database_gives_the_same_business_case(tmp_path_factory):
    base = baseline(tmp_path_factory)
    period = current_period(base)
    require(postgres_bindir(), "PostgreSQL server binaries (initdb, pg_ctl)", "postgresql")
    cluster = PostgresCluster().start()
    try:
        engine = sa.create_engine(cluster.url)
        for table in FROM_DATABASE:
            load_csv_as_text(engine, table, base / "landing" / f"{table}.csv")
        engine.dispose()
        out = tmp_path_factory.mktemp("from_database") / "out"
        shutil.copytree(base / "landing", out / "landing")
        for table in FROM_DATABASE:
            (out / "landing" / f"{table}.csv").unlink()
        config = database_sources_config(out.parent, FROM_DATABASE)
        env = run_env(key_file(tmp_path_factory), **{
            URL_ENV: cluster.url,
            "AIRFLOW_CONN_LTCEVAL_TEST_GP": cluster.url.replace("postgresql+psycopg2://", "postgres://")})
        proc = ltceval("run", "--config", str(config), "--out", str(out), env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finally:
        cluster.stop()
    assert current_period(out) == period
    got, want = business_case_apart_from_linkage_thresholds(out, period), business_case_apart_from_linkage_thresholds(base, period)
    assert set(got[0]) | set(got[1]) == set(want[0]) | set(want[1])
    assert {k for k in want[0] if got[0].get(k) != want[0][k]} <= {"tables/balance.csv"}  # float noise
    assert got[1] == {k: v for k, v in want[1].items()}
    pd.testing.assert_frame_equal(got[2], want[2])  # every estimate of the linkage sensitivity
    assert got[3] == want[3]  # the report, its linkage table aside
    # what the IG report says of the reads: each connection by name, never the URL
    ig = (out / "reports" / period / "ig_report.html").read_text()
    assert "Sources read from a database" in ig and "Airflow Connection ltceval_test_gp" in ig
    assert cluster.password not in ig and cluster.password not in proc.stdout + proc.stderr
