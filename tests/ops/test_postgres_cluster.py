"""ops.postgres_cluster: a real throwaway cluster from Debian's server binaries, reached the way
Airflow reaches it (SQLAlchemy with psycopg2 over TCP, password authentication)."""
from __future__ import annotations

import socket

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from ops.postgres_cluster import BINDIR_ENV, PostgresCluster, postgres_bindir
from required_tools import require


@pytest.fixture
def bindir():
    return require(postgres_bindir(), "PostgreSQL server binaries (initdb, pg_ctl)", "postgresql")


def _query(url, sql: str):
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(sql)).one()
    finally:
        engine.dispose()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_cluster_serves_its_database_by_password_and_is_gone_after_stop(bindir):
    cluster = PostgresCluster(bindir=bindir)
    try:
        cluster.start()
        assert _query(cluster.url, "SELECT current_database(), current_user") == (cluster.database, cluster.user)
        with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication failed"):
            _query(make_url(cluster.url).set(password="wrong"), "SELECT 1")
        base = cluster.base
        assert (base / "data" / "PG_VERSION").is_file() and not (base / "pwfile").exists()
    finally:
        cluster.stop()
    assert cluster.base is None and not base.exists()
    assert not _listening(cluster.port)
    cluster.stop()  # a second stop does nothing


def test_bindir_from_the_environment_first_when_it_has_both_binaries(bindir, tmp_path, monkeypatch):
    own = tmp_path / "own"
    own.mkdir()
    (own / "initdb").symlink_to(bindir / "initdb")
    monkeypatch.setenv(BINDIR_ENV, str(own))
    assert postgres_bindir() != own, "initdb without pg_ctl is passed over"
    (own / "pg_ctl").symlink_to(bindir / "pg_ctl")
    assert postgres_bindir() == own
