"""The pipeline's Spark (issue 18): one session configuration for every Spark user of a run.

dbt's Spark target (``dbt_project/profiles.yml``, session mode) and the pipeline's own Spark
steps (the matching between the two dbt selections, the identifiable zone on Spark) must see
the same tables: the same warehouse folder and the same metastore, under ``Paths.spark``. The
profile cannot import Python, so ``session_parameters`` is its twin, held to it by
tests/core/test_spark.py. The metastore is an embedded Derby database: one JVM at a time, so a
process opens its session, works, and stops it before the next user (dbt, a task) starts.
Its master is ``LTCEVAL_SPARK_MASTER`` (default local[*]): a standalone cluster, YARN or
Kubernetes runs the analytical zone's Spark, which holds pseudonymised data only; the
identifiable zone's session is always local (``identifiable_zone.spark_engine``).
pyspark is imported only when a session is asked for: the DuckDB engine never pays for it.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from core.settings import spark_driver_memory, spark_master

SPARK_SCHEMA = "ltceval"  # dbt's Spark target schema (profiles.yml `schema`): its tables' database


def session_parameters(spark_dir: Path) -> dict[str, str]:
    """The Spark settings of dbt's `spark` target (profiles.yml server_side_parameters). A JVM
    that runs out of heap exits (ExitOnOutOfMemoryError), so the step fails with an error: by
    default its threads die one by one and the step waits for ever."""
    d = str(spark_dir)
    return {
        "spark.master": spark_master(),
        "spark.sql.warehouse.dir": f"{d}/warehouse",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={d}/metastore_db;create=true",
        "spark.driver.memory": spark_driver_memory(),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={d} -XX:+ExitOnOutOfMemoryError",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
    }


def spark_session(spark_dir: Path, app_name: str = "ltceval", extra: Mapping[str, str] | None = None):
    """The local Spark session on a run's Spark folder (``Paths.spark``), as dbt's session
    mode builds it (Hive support: tables named in the metastore); an existing session in this
    process is returned as it is (dbt run in-process may have started it). ``extra``: more
    settings, or replacements of these (the identifiable zone's temp folders, splink's jar)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    for name, value in {**session_parameters(spark_dir), **(extra or {})}.items():
        builder = builder.config(name, value)
    return builder.getOrCreate()


def table_path(spark_dir: Path, table: str) -> Path:
    """Where a managed table of the dbt schema keeps its Parquet files."""
    return Path(spark_dir) / "warehouse" / f"{SPARK_SCHEMA}.db" / table
