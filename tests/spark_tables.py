"""Tables of a run's Spark folder (dbt's Spark target, core/spark.py): compared with DuckDB's, and
loaded from Parquet files for tests that need a broken copy of the marts on Spark.

Run in a child process (``load_in_child``): the metastore is an embedded Derby database that one
JVM at a time may open, and the child's JVM ends with it, so the next user (GX on Spark, dbt) can
open it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb


def export_parquet(warehouse: Path, tables: list[str], folder: Path) -> dict[str, Path]:
    """DuckDB tables of ``warehouse`` as one Parquet file each in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        files = {}
        for name in tables:
            files[name] = folder / f"{name}.parquet"
            con.execute(f"copy main.{name} to '{files[name]}' (format parquet)")
        return files
    finally:
        con.close()


def load_in_child(spark_dir: Path, files: dict[str, Path]) -> None:
    """Each Parquet file as a managed table of the dbt schema (replacing one of that name)."""
    cmd = [sys.executable, __file__, str(spark_dir), *(f"{name}={path}" for name, path in files.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, f"loading {sorted(files)} into {spark_dir} failed:\n{proc.stderr[-5000:]}"


def _load(spark_dir: Path, files: dict[str, str]) -> None:
    from core.spark import SPARK_SCHEMA, spark_session

    spark = spark_session(spark_dir, app_name="ltceval-test-tables")
    try:
        spark.sql(f"create database if not exists {SPARK_SCHEMA}")
        for name, path in files.items():
            spark.read.parquet(path).write.mode("overwrite").saveAsTable(f"{SPARK_SCHEMA}.{name}")
    finally:
        spark.stop()


def comparable_frame(df):
    """Rows in one order, dates as dates, whole numbers as floats: engines differ in dtypes only."""
    import pandas as pd

    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].dt.strftime("%Y-%m-%d")
        elif out[c].dtype == object:
            out[c] = out[c].map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v)
        elif pd.api.types.is_bool_dtype(out[c]) or pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].astype("float64")
    return out.sort_values(list(out.columns), na_position="last").reset_index(drop=True)


def assert_spark_table_equals_duckdb(spark_dir: Path, con, name: str, leave_out: tuple[str, ...] = ()) -> None:
    """The Spark table ``name`` (its Parquet files under ``spark_dir``) has the rows of DuckDB's
    ``name`` on ``con``: same columns, numbers within 1e-9 relative, the rest equal (the columns
    ``leave_out`` aside)."""
    import numpy as np

    from core.spark import table_path

    files = table_path(spark_dir, name)
    assert files.is_dir(), f"{name}: no Spark table at {files}"
    on_spark = comparable_frame(duckdb.sql(f"select * from read_parquet('{files}/*.parquet')").df()
                                .drop(columns=list(leave_out)))
    on_duckdb = comparable_frame(con.execute(f'select * from "{name}"').df().drop(columns=list(leave_out)))
    assert list(on_spark.columns) == list(on_duckdb.columns), name
    assert len(on_spark) == len(on_duckdb), name
    for c in on_duckdb.columns:
        a, b = on_spark[c], on_duckdb[c]
        if a.dtype == "float64" and b.dtype == "float64":
            assert np.allclose(a, b, rtol=1e-9, atol=0, equal_nan=True), (name, c)
        else:
            assert a.fillna("<null>").tolist() == b.fillna("<null>").tolist(), (name, c)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _load(Path(sys.argv[1]), dict(arg.split("=", 1) for arg in sys.argv[2:]))
