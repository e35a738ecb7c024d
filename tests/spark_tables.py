"""Tables of a run's Spark folder (dbt's Spark target, core/spark.py) loaded from Parquet files,
for tests that need marts on Spark which dbt cannot build there yet, or a broken copy of them.

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


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _load(Path(sys.argv[1]), dict(arg.split("=", 1) for arg in sys.argv[2:]))
