"""`ltceval run --config <database sources>` (issue 18): the baseline run's extracts, three of
them served by a real PostgreSQL server instead of landing files, give the same business case."""
from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from identifiable_zone.sources import DEFAULT_SOURCES_CONFIG
from ltceval_runs import baseline, comparable, current_period, key_file, ltceval, run_env
from ops.postgres_cluster import PostgresCluster, postgres_bindir
from postgres_tables import load_csv_as_text
from required_tools import require

pytestmark = pytest.mark.slow

URL_ENV = "LTCEVAL_TEST_WAREHOUSE_URL"
FROM_DATABASE = {"gp_patients": {"connection": "ltceval_test_gp", "table": "gp_patients"},
                 "ecds": {"url_env": URL_ENV, "table": "ecds"},
                 "opa": {"url_env": URL_ENV, "query": "SELECT * FROM opa"}}


# The linkage thresholds of the sensitivity table come from the model's match probabilities,
# which splink's u sampling makes depend on the order the records arrive in: a database returns
# its rows in an order of its own (a parallel scan), so those thresholds differ in their last
# digits from the file run's (seen: 0.0309 against 0.0313 for the looser one). Every estimate
# in the table, and everything else, must be the same.
LINKAGE_TABLE = "tables/linkage_sensitivity.csv"
LINKAGE_SECTION = re.compile(r"How the estimates move with the linkage threshold.*?</table>", re.S)


def _business_case(out, period):
    """The period's published files but the IG report and run manifest (which name the reads),
    GX's results of the identifiable zone's inputs, and the files holding the linkage
    thresholds: (exact, masked) as ltceval_runs compares; then those files without them."""
    exact, masked = comparable(out, period)
    skip = ("ig_report", "run_manifest", "gx/", LINKAGE_TABLE, "business_case.html", "business_case_tables.xlsx")
    keep = lambda rel: not rel.startswith(skip)  # noqa: E731
    root = out / "reports" / period
    estimates = pd.read_csv(root / LINKAGE_TABLE).drop(columns=["threshold", "expected_precision"])
    html = LINKAGE_SECTION.sub("<linkage table>", (root / "business_case.html").read_text(encoding="utf-8"))
    html = re.sub(r"Generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "Generated <time>", html)
    return ({k: v for k, v in exact.items() if keep(k)}, {k: v for k, v in masked.items() if keep(k)},
            estimates, html)


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
        raw = yaml.safe_load(DEFAULT_SOURCES_CONFIG.read_text())
        for table, how in FROM_DATABASE.items():
            raw["sources"][table].pop("file")
            raw["sources"][table]["database"] = how
        config = out.parent / "sources_database.yml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        env = run_env(key_file(tmp_path_factory), **{
            URL_ENV: cluster.url,
            "AIRFLOW_CONN_LTCEVAL_TEST_GP": cluster.url.replace("postgresql+psycopg2://", "postgres://")})
        proc = ltceval("run", "--config", str(config), "--out", str(out), env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finally:
        cluster.stop()
    assert current_period(out) == period
    got, want = _business_case(out, period), _business_case(base, period)
    assert set(got[0]) | set(got[1]) == set(want[0]) | set(want[1])
    assert {k for k in want[0] if got[0].get(k) != want[0][k]} <= {"tables/balance.csv"}  # float noise
    assert got[1] == {k: v for k, v in want[1].items()}
    pd.testing.assert_frame_equal(got[2], want[2])  # every estimate of the linkage sensitivity
    assert got[3] == want[3]  # the report, its linkage table aside
    # what the IG report says of the reads: each connection by name, never the URL
    ig = (out / "reports" / period / "ig_report.html").read_text()
    assert "Sources read from a database" in ig and "Airflow Connection ltceval_test_gp" in ig
    assert cluster.password not in ig and cluster.password not in proc.stdout + proc.stderr
