"""The identifiable zone's Spark (issue 18, ``LTCEVAL_ENGINE=spark``): one local session for a
step (linkage, pseudonymisation), kept inside the identifiable zone.

Spark writes what it works on to disk: shuffle and spill files (``spark.local.dir``), the JVM's
temp files (``java.io.tmpdir``) and splink's intermediate tables (Parquet in the checkpoint
folder: ``break_lineage_method='parquet'``, splink's default off Databricks). They hold
identifiers, so all three live under ``<identifiable>/spark/`` and are removed when the step ends.
The session has ``core.spark``'s settings but no Hive metastore (an in-memory catalog) and its
warehouse folder in the same place: splink and this zone use temporary views only, and nothing
of the zone's Spark is left in the analytical zone's Spark folder. Event logs (which would
record query plans, and so literal values) are refused. pyspark is imported only here, only on
the spark engine.
"""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import DEFAULT_SPARK_MASTER, Paths
from core.spark import session_parameters, spark_session


class SparkZoneError(RuntimeError):
    """The Spark session would write identifiers outside the identifiable zone."""


def zone_folder(paths: Paths) -> Path:
    """Where the identifiable zone's Spark keeps its temp, spill and checkpoint files."""
    return paths.identifiable / "spark"


def zone_settings(paths: Paths) -> dict[str, str]:
    """Spark settings that keep a session's files inside the identifiable zone, with splink's
    similarity functions (jaro_winkler, damerau_levenshtein, ...) on the class path."""
    from splink.backends.spark import similarity_jar_location

    work = zone_folder(paths)
    return {
        # always local, whatever LTCEVAL_SPARK_MASTER says: a cluster's executors spill and
        # shuffle into their workers' own folders (SPARK_LOCAL_DIRS overrides spark.local.dir),
        # which this zone cannot confine or remove
        "spark.master": DEFAULT_SPARK_MASTER,
        # no Hive metastore: an embedded Derby database would be created (under the analytical
        # zone's Spark folder) and its lock held by this JVM
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        "spark.local.dir": str(work / "local"),
        "spark.driver.extraJavaOptions": f"{session_parameters(work)['spark.driver.extraJavaOptions']} "
                                         f"-Djava.io.tmpdir={work / 'tmp'}",
        "spark.jars": similarity_jar_location(),
        "spark.eventLog.enabled": "false",
        "spark.pyspark.python": sys.executable,  # the HMAC's workers import this project's code
    }


@contextmanager
def zone_session(paths: Paths, app_name: str = "ltceval-identifiable") -> Iterator[object]:
    """A local Spark session whose files stay in the identifiable zone; stopped, and its files
    removed, at the end. Refuses a session already running in this process with other folders
    (its temp files could be anywhere) or with event logs on."""
    work = zone_folder(paths)
    if work.exists():
        shutil.rmtree(work)
    for sub in ("local", "tmp", "checkpoints"):
        (work / sub).mkdir(parents=True)
    settings = zone_settings(paths)
    spark = spark_session(paths.spark, app_name, extra=settings)
    try:
        conf = spark.sparkContext.getConf()
        if conf.get("spark.local.dir") != settings["spark.local.dir"]:
            raise SparkZoneError(
                f"a Spark session already runs in this process with spark.local.dir={conf.get('spark.local.dir')!r}; "
                f"the identifiable zone's Spark must keep its files in {work} (stop the other session first)")
        if not conf.get("spark.master", "").startswith("local"):
            raise SparkZoneError(
                f"a Spark session already runs in this process on {conf.get('spark.master')!r}: the identifiable "
                "zone's Spark runs locally, so that its files stay in the zone (stop the other session first)")
        if conf.get("spark.eventLog.enabled", "false").lower() != "false":
            raise SparkZoneError("Spark event logs are on (spark.eventLog.enabled): they would record identifiers; "
                                 "turn them off for the identifiable zone")
        spark.sparkContext.setCheckpointDir(str(work / "checkpoints"))
        # Python tasks (validation's segments, the HMAC) run in this interpreter, which has this
        # package and its dependencies: pyspark otherwise starts `python3` from PATH, as
        # spark.pyspark.python is read only by spark-submit, not by a session started in-process
        spark.sparkContext.pythonExec = sys.executable
        yield spark
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
