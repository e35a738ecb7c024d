"""core.memory: DuckDB's cache held down for a block, on a real DuckDB file; the heap released."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from core.memory import duckdb_cache_held_down, release_memory
from core.settings import DBT_MEMORY_LIMIT_ENV, dbt_memory_limit


def _cached_mib(con) -> float:
    return con.sql("SELECT sum(memory_usage_bytes) / 2^20 FROM duckdb_memory() WHERE tag = 'BASE_TABLE'").fetchall()[0][0]


def test_the_limit_is_lowered_for_the_block_and_set_back(tmp_path, monkeypatch):
    monkeypatch.setenv(DBT_MEMORY_LIMIT_ENV, "2GB")
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i, range * 2.5 AS x, md5(range::VARCHAR) AS s FROM range(6000000)")
    with duckdb.connect(str(path), config={"memory_limit": dbt_memory_limit()}) as con:
        before = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        con.sql("SELECT sum(i), sum(x), count(DISTINCT s) FROM t").fetchall()  # caches the table's blocks
        cached = _cached_mib(con)
        assert cached > 64
        with duckdb_cache_held_down(con, "32MB"):
            assert con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] != before
            assert _cached_mib(con) <= 32  # evicted at once, not at the next query
            # queries still run meanwhile (beyond the limit they spill or stream)
            assert con.sql("SELECT count(*) FROM t").fetchall()[0][0] == 6_000_000
        assert con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == before


def test_the_limit_is_set_back_when_the_block_fails(tmp_path, monkeypatch):
    monkeypatch.setenv(DBT_MEMORY_LIMIT_ENV, "1GB")
    with duckdb.connect(str(tmp_path / "w.duckdb"), config={"memory_limit": dbt_memory_limit()}) as con:
        before = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        with pytest.raises(ZeroDivisionError):
            with duckdb_cache_held_down(con):
                1 / 0
        assert con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == before


def test_release_memory_leaves_live_objects_alone():
    frame = pd.DataFrame({"x": np.arange(1_000_000, dtype="int64")})
    garbage = [pd.DataFrame({"y": np.arange(100_000)}) for _ in range(20)]
    del garbage
    release_memory()
    assert int(frame["x"].sum()) == 999_999 * 1_000_000 // 2
