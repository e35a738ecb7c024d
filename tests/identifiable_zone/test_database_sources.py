"""Sources read from a database (issue 18): a real PostgreSQL server started by the test, loaded
with the synthetic extracts; a run reading GP patients, A&E and admitted care from it gives the
same pseudonymised tables as a run reading the files, and its IG report names the connection,
the statement's checksum and the rows read, never a URL or a credential."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from identifiable_zone.database_extracts import read_to_parquet, statement
from identifiable_zone.sources import ExtractUnusable, SourceConfigError, load_sources_config
from idz_helpers import KEY, copy_landing, run_zone
from ops.postgres_cluster import PostgresCluster, postgres_bindir
from postgres_tables import database_sources_config, load_csv_as_text
from required_tools import require

PERSONS = 1500
URL_ENV = "LTCEVAL_TEST_SUS_URL"
CONNECTION = "ltceval_test_gp"
# source -> how the database run reads it
FROM_DATABASE = {
    "gp_patients": {"connection": CONNECTION, "table": "public.gp_patients"},
    "ecds": {"url_env": URL_ENV, "table": "ecds"},
    "apc": {"url_env": URL_ENV, "query": "SELECT * FROM apc WHERE true"},
}
TYPED_DATES = {"ecds": ["Arrival_Date", "Date_Of_Birth"]}  # held as DATE: read back as ISO text


def _config(tmp_path, database: dict) -> str:
    return str(database_sources_config(tmp_path, database))


@pytest.fixture(scope="module")
def cluster():
    require(postgres_bindir(), "PostgreSQL server binaries (initdb, pg_ctl)", "postgresql")
    c = PostgresCluster().start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    files = tmp_path_factory.mktemp("from_files")
    generate(SynthParams(persons=PERSONS, seed=5), files)
    engine = sa.create_engine(cluster.url)
    for table in FROM_DATABASE:
        load_csv_as_text(engine, table, files / "landing" / f"{table}.csv", TYPED_DATES.get(table, ()))
    engine.dispose()
    db = copy_landing(files, tmp_path_factory.mktemp("from_database"))
    for table in FROM_DATABASE:  # only the database holds them now
        (db / "landing" / f"{table}.csv").unlink()
    config = _config(tmp_path_factory.mktemp("config"), FROM_DATABASE)
    mp = pytest.MonkeyPatch()
    mp.setenv(URL_ENV, cluster.url)
    mp.setenv(f"AIRFLOW_CONN_{CONNECTION.upper()}",
              cluster.url.replace("postgresql+psycopg2://", "postgres://"))
    try:
        from_files, _ = run_zone(files, key=KEY)
        from_database, results = run_zone(db, key=KEY, config_path=config)
    finally:
        mp.undo()
    return from_files, from_database, results, config


def test_a_run_from_the_database_publishes_what_a_run_from_the_files_does(runs):
    from_files, from_database, _, _ = runs
    published = sorted(p.name for p in from_files.pseudonymised.glob("*.parquet"))
    assert published == sorted(p.name for p in from_database.pseudonymised.glob("*.parquet"))
    for name in published:
        a = pd.read_parquet(from_files.pseudonymised / name)
        b = pd.read_parquet(from_database.pseudonymised / name)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)


def test_rows_read_are_accepted_or_quarantined_and_the_ig_report_names_the_reads(runs, cluster):
    _, from_database, results, config = runs
    manifest = json.loads((from_database.identifiable / "input_manifest.json").read_text())
    reads = {f["table"]: f for f in manifest["files"] if f.get("database")}
    assert set(reads) == set(FROM_DATABASE)
    engine = sa.create_engine(cluster.url)
    try:
        for table, f in reads.items():
            sql = statement(load_sources_config(config)[table].database, engine.dialect)
            assert f["database"]["statement_sha256"] == hashlib.sha256(sql.encode()).hexdigest()
            with engine.connect() as con:
                rows = con.execute(sa.text(f"SELECT count(*) FROM ({sql}) t")).scalar()
            counts = results["validate"]["tables"][table]
            assert f["database"]["rows"] == rows == counts["rows_in"] == \
                counts["rows_accepted"] + counts["rows_quarantined"]
    finally:
        engine.dispose()
    assert reads["gp_patients"]["database"]["from"] == f"Airflow Connection {CONNECTION}"
    assert reads["ecds"]["database"]["from"] == f"the URL in ${URL_ENV}"
    ig = json.loads((from_database.reports / "ig_report.json").read_text())
    assert {r["table"] for r in ig["database_reads"]} == set(FROM_DATABASE)
    html = (from_database.reports / "ig_report.html").read_text()
    assert "Sources read from a database" in html
    # nothing of the URL beyond what the config itself says leaves in any report or summary
    for folder in (from_database.reports, from_database.identifiable):
        for path in folder.rglob("*.json"):
            text = path.read_text()
            assert cluster.password not in text and str(cluster.port) not in text, path


def test_unreadable_databases_name_the_source_and_never_the_credentials(cluster, tmp_path, monkeypatch):
    spec = load_sources_config(_config(tmp_path, {"ecds": {"url_env": URL_ENV, "table": "ecds"}}))["ecds"]
    monkeypatch.delenv(URL_ENV, raising=False)
    with pytest.raises(ExtractUnusable, match=rf"ecds: the database URL is missing: set the environment variable {URL_ENV}"):
        read_to_parquet(spec, tmp_path)
    wrong = sa.engine.make_url(cluster.url).set(password="not-the-password-9f3e")
    monkeypatch.setenv(URL_ENV, wrong.render_as_string(hide_password=False))
    with pytest.raises(ExtractUnusable) as err:
        read_to_parquet(spec, tmp_path)
    assert str(err.value).startswith(f"ecds: reading from the URL in ${URL_ENV} failed (OperationalError")
    assert "not-the-password-9f3e" not in str(err.value)
    monkeypatch.setenv(URL_ENV, cluster.url)
    missing = load_sources_config(_config(tmp_path, {"apc": {"url_env": URL_ENV, "table": "no_such_table"}}))["apc"]
    with pytest.raises(ExtractUnusable, match=r"apc: reading from the URL in \$LTCEVAL_TEST_SUS_URL failed \(ProgrammingError"):
        read_to_parquet(missing, tmp_path)
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written is left to validate
    unknown = load_sources_config(_config(tmp_path, {"apc": {"connection": "no_such_connection", "table": "apc"}}))["apc"]
    with pytest.raises(ExtractUnusable, match="apc: no Airflow Connection no_such_connection"):
        read_to_parquet(unknown, tmp_path)


@pytest.mark.parametrize("database, message", [
    ({"table": "ecds"}, "give one of connection .* or url_env"),
    ({"url_env": "X", "connection": "y", "table": "ecds"}, "give one of connection .* or url_env"),
    ({"url_env": "X"}, "give one of table or query"),
    ({"url_env": "postgresql://u:p@h/db", "table": "ecds"}, "must be an environment variable name"),
    ({"url_env": "X", "table": "ecds; DROP TABLE x"}, "must be a table name"),
    ({"url_env": "X", "table": "ecds", "password": "p"}, r"unknown key\(s\) \['password'\]"),
])
def test_bad_database_entries_are_refused_naming_the_source(tmp_path, database, message):
    with pytest.raises(SourceConfigError, match=rf"config: ecds\.database.*{message}"):
        load_sources_config(_config(tmp_path, {"ecds": database}))


def test_a_source_gives_file_or_database_not_both(tmp_path):
    path = _config(tmp_path, {"ecds": {"url_env": "X", "table": "ecds"}})
    raw = yaml.safe_load(open(path))
    raw["sources"]["ecds"]["file"] = "ecds.*"
    (tmp_path / "both.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SourceConfigError, match="config: ecds: give file or database, not both"):
        load_sources_config(str(tmp_path / "both.yml"))
