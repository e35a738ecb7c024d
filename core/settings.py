"""Where each zone lives on disk, and every environment variable the pipeline reads.

Every path derives from one output folder so a run is self-contained and zones stay apart.
``ENVIRONMENT`` documents each ``LTCEVAL_*`` variable in one place (a test holds it to what the
code reads) and ``env_value`` is the one reader of them: the modules that use a variable import
its name from here and read it through ``env_value``, which refuses a name not documented here.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DAGS_DIR = REPO_ROOT / "dags"
OUT_ENV = "LTCEVAL_OUT"
KEY_ENV = "LTCEVAL_PSEUDO_KEY"
KEY_FILE_ENV = "LTCEVAL_PSEUDO_KEY_FILE"
SOURCES_CONFIG_ENV = "LTCEVAL_SOURCES_CONFIG"
LINKAGE_MODEL_ENV = "LTCEVAL_LINKAGE_MODEL"
PERIOD_ENV = "LTCEVAL_PERIOD"
UNBLIND_REASON_ENV = "LTCEVAL_UNBLIND_REASON"
UPSTREAM_KEY_ENV = "LTCEVAL_UPSTREAM_PSEUDO_KEY"
DUCKDB_MEMORY_LIMIT_ENV = "LTCEVAL_DUCKDB_MEMORY_LIMIT"
DEFAULT_DUCKDB_MEMORY_LIMIT = "2GB"  # at 2 million people 4GB put every identifiable-zone DuckDB at 4.3 GiB, twice the 200,000-person peak
DBT_MEMORY_LIMIT_ENV = "LTCEVAL_DBT_MEMORY_LIMIT"
DEFAULT_DBT_MEMORY_LIMIT = "2GB"  # the same default as dbt_project/profiles.yml; the person-month panel is
# built in parts of var('panel_chunk_persons') people so that it fits (dbt build at 2 million people: peak 6.0 -> 4.4 GiB)
VALIDATION_SEGMENT_MIB_ENV = "LTCEVAL_VALIDATION_SEGMENT_MIB"
DEFAULT_VALIDATION_SEGMENT_MIB = 64  # about half a million GP appointments a segment (a worker holds one)
VALIDATION_WORKERS_ENV = "LTCEVAL_VALIDATION_WORKERS"
GENERATOR_WORKERS_ENV = "LTCEVAL_GENERATOR_WORKERS"
LINKAGE_WORKERS_ENV = "LTCEVAL_LINKAGE_WORKERS"
LINKAGE_SENSITIVITY_ENV = "LTCEVAL_LINKAGE_SENSITIVITY"
LINKAGE_SENSITIVITY_MODES = ("auto", "on", "off")
# auto runs the linkage sensitivity up to this many people: it re-fits every headline outcome and
# re-draws the saving's bootstrap twice; an ICS-size run turns it on explicitly
LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS = 100_000
ENGINE_ENV = "LTCEVAL_ENGINE"
ENGINES = ("duckdb", "spark")
SPARK_DRIVER_MEMORY_ENV = "LTCEVAL_SPARK_DRIVER_MEMORY"
# the JVM heap of a local Spark (driver and executor in one JVM); Spark's own default, 1g, ran
# out in the linkage's blocking counts at 200,000 people. The same default as profiles.yml.
DEFAULT_SPARK_DRIVER_MEMORY = "6g"
SPARK_MASTER_ENV = "LTCEVAL_SPARK_MASTER"
DEFAULT_SPARK_MASTER = "local[*]"  # pyspark's own default: driver and executor in one JVM
# what Spark takes as a master URL: local, a standalone cluster (several masters: high
# availability), YARN, Kubernetes
_SPARK_MASTER = re.compile(r"local(\[(\*|[1-9][0-9]*)(,[0-9]+)?\])?|spark://[^\s/:,]+:[0-9]+(,[^\s/:,]+:[0-9]+)*"
                           r"|yarn|k8s://\S+")
DEFAULT_OUT = Path("ltceval-out")

ENVIRONMENT: dict[str, str] = {
    OUT_ENV: "the output folder of a run (default ./ltceval-out); every zone lives under it",
    KEY_ENV: "the pseudonymisation key itself (prefer a key file or a secrets backend)",
    KEY_FILE_ENV: "a file holding the pseudonymisation key, readable only by the service",
    SOURCES_CONFIG_ENV: "the sources config naming the extracts (default config/sources.yml)",
    LINKAGE_MODEL_ENV: "'train' (default), 'current' or a saved splink model file",
    PERIOD_ENV: "the data period YYYY-MM the run is for; the extracts must end in it",
    UNBLIND_REASON_ENV: "evaluation: why the report shows effect estimates although a diagnostic gate (balance, "
                        "variance ratios, equipoise, EASE) failed; printed in the report (evaluation/diagnostics.py)",
    UPSTREAM_KEY_ENV: "synthetic generator only: the key of extracts pseudonymised upstream",
    "LTCEVAL_WAREHOUSE": "set for dbt by the pipeline: the DuckDB warehouse it builds",
    "LTCEVAL_PSEUDONYMISED_DIR": "set for dbt by the pipeline: the pseudonymised tables it reads",
    "LTCEVAL_SPARK_DIR": "set for dbt by the pipeline: where its Spark target (--target spark) keeps its tables and metastore",
    # dbt's cluster targets (profiles.yml; README "Scaling out"): filled from an Airflow Connection
    "LTCEVAL_SPARK_THRIFT_HOST": "dbt --target spark_thrift: the cluster's Thrift server host",
    "LTCEVAL_SPARK_THRIFT_PORT": "dbt --target spark_thrift: the Thrift server's port (default 10000)",
    "LTCEVAL_SPARK_THRIFT_USER": "dbt --target spark_thrift: the user dbt connects as",
    "LTCEVAL_DATABRICKS_HOST": "dbt --target databricks: the workspace host (token: DBT_ENV_SECRET_DATABRICKS_TOKEN)",
    "LTCEVAL_DATABRICKS_HTTP_PATH": "dbt --target databricks: the HTTP path of the SQL warehouse or cluster",
    "LTCEVAL_DATABRICKS_CATALOG": "dbt --target databricks: the Unity Catalog catalog (default hive_metastore)",
    DUCKDB_MEMORY_LIMIT_ENV: "DuckDB's memory limit in the identifiable zone: validation's cross-file rules, linkage, pseudonymisation, the IG report (default 2GB; it spills beyond)",
    DBT_MEMORY_LIMIT_ENV: "DuckDB's memory limit in dbt (dbt_project/profiles.yml; default 2GB; it spills beyond)",
    VALIDATION_SEGMENT_MIB_ENV: "validation: a CSV file larger than this many MiB is validated in segments of "
                                "about this size (default 128; smaller uses less memory, same result)",
    VALIDATION_WORKERS_ENV: "validation: processes validating the segments of a file at once (default: the "
                            "machine's cores, at most 2; 1: one at a time, least memory; same result)",
    LINKAGE_WORKERS_ENV: "linkage: processes standardising the accepted records at once (default: the "
                         "machine's cores, at most 2, from a million records; 1: one at a time; same result)",
    GENERATOR_WORKERS_ENV: "synthetic generator: processes building chunks of people at once (default: the "
                           "machine's cores, at most 2; 1: one at a time, least memory; same files)",
    LINKAGE_SENSITIVITY_ENV: "evaluation: 'auto' (default: on up to 100,000 people), 'on' or 'off': the headline "
                             "rate ratios and net saving re-estimated with links at the stricter and looser "
                             "thresholds (evaluation/linkage_sensitivity.py)",
    ENGINE_ENV: "the pipeline's engine (issue 18; `ltceval run --engine`): 'duckdb' (default) or 'spark': validation's "
                "segments in Spark tasks, splink's SparkAPI, the HMAC on Spark, dbt's Spark target, GX on Spark "
                "(README, Scaling out)",
    SPARK_DRIVER_MEMORY_ENV: "the spark engine: the heap of each local Spark JVM (driver and executor in one; "
                             "spark.driver.memory, e.g. 6g, the default; dbt_project/profiles.yml too)",
    SPARK_MASTER_ENV: "the spark engine: the master of the analytical zone's Spark (dbt's spark target, the "
                      "matching, GX, the collect): local[*] (default), spark://host:7077, yarn or k8s://...; the "
                      "identifiable zone's Spark is always local (README, Pointing the pipeline at a cluster)",
    "LTCEVAL_HONEST": "evaluation: 0 skips the parallel-trends sensitivity (Rambachan-Roth intervals, about "
                      "13 s an outcome); the E-values are always computed",
    "LTCEVAL_PRICE_YEAR": "costing: price year costs are re-based to (default 2024/25; none: as published)",
    "LTCEVAL_LOCAL_TARIFF": "costing: CSV of local unit costs overriding the unit_costs seed by activity",
    "LTCEVAL_THERAPY_COST_GBP": "costing: cost of a course of therapy (default: the iapt_course row)",
    "LTCEVAL_THERAPY_PRICE_YEAR": "costing: price year of LTCEVAL_THERAPY_COST_GBP",
    "LTCEVAL_ANNUAL_CASELOAD": "costing: treated people a year (default: the cohort's own rate)",
    "LTCEVAL_INTERVAL_METHOD": "costing: 'bootstrap' (default) or 'delta' intervals",
    "LTCEVAL_BOOTSTRAP_REPS": "costing: cluster-bootstrap replicates (default 499)",
    "LTCEVAL_PERSISTENCE_YEARS": "costing: years the effect is assumed to persist after follow-up (default 0)",
    "LTCEVAL_PERSISTENCE_DECAY": "costing: yearly decay of a persisting effect (default 0.5)",
    "LTCEVAL_PRELOAD": "ops/airflow_preloaded.py: 0 starts the plain `airflow scheduler`",
    "LTCEVAL_PG_BINDIR": "ops/postgres_cluster.py: where PostgreSQL's initdb and pg_ctl are",
}


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of a documented variable (from ``environ``, default the process environment);
    None when unset or empty."""
    if name not in ENVIRONMENT:
        raise KeyError(f"{name} is not a documented variable (core.settings.ENVIRONMENT)")
    value = (os.environ if environ is None else environ).get(name)
    return None if value in (None, "") else value


def configured_env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of a variable the sources config names (a database source's URL,
    ``database.url_env``): the user chooses its name, so it is not in ``ENVIRONMENT``; None
    when unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    return None if value in (None, "") else value


def duckdb_memory_limit(environ: Mapping[str, str] | None = None) -> str:
    """DuckDB's memory limit (e.g. '4GB'); beyond it DuckDB spills to disk instead of growing."""
    return env_value(DUCKDB_MEMORY_LIMIT_ENV, environ) or DEFAULT_DUCKDB_MEMORY_LIMIT


def dbt_memory_limit(environ: Mapping[str, str] | None = None) -> str:
    """DuckDB's memory limit in dbt (e.g. '2GB'), which dbt_project/profiles.yml gives it."""
    return env_value(DBT_MEMORY_LIMIT_ENV, environ) or DEFAULT_DBT_MEMORY_LIMIT


def _one_of(name: str, choices: tuple[str, ...], environ: Mapping[str, str] | None) -> str:
    """Variable ``name``: one of ``choices`` (case and spaces aside), the first when unset."""
    raw = env_value(name, environ)
    value = choices[0] if raw is None else raw.strip().lower()
    if value not in choices:
        raise ValueError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return value


def engine(environ: Mapping[str, str] | None = None) -> str:
    """``LTCEVAL_ENGINE``: 'duckdb' (default) or 'spark'."""
    return _one_of(ENGINE_ENV, ENGINES, environ)


def spark_driver_memory(environ: Mapping[str, str] | None = None) -> str:
    """``LTCEVAL_SPARK_DRIVER_MEMORY``: the local Spark JVM's heap, as Spark writes sizes (6g, 8192m)."""
    raw = env_value(SPARK_DRIVER_MEMORY_ENV, environ)
    value = DEFAULT_SPARK_DRIVER_MEMORY if raw is None else raw.strip().lower()
    if not re.fullmatch(r"[1-9][0-9]*[mg]", value):
        raise ValueError(f"{SPARK_DRIVER_MEMORY_ENV}={raw!r}: expected a size such as 6g or 8192m")
    return value


def spark_master(environ: Mapping[str, str] | None = None) -> str:
    """``LTCEVAL_SPARK_MASTER``: where the analytical zone's Spark runs (a Spark master URL)."""
    raw = env_value(SPARK_MASTER_ENV, environ)
    value = DEFAULT_SPARK_MASTER if raw is None else raw.strip()
    if not _SPARK_MASTER.fullmatch(value):
        raise ValueError(f"{SPARK_MASTER_ENV}={raw!r}: expected a Spark master URL: local[*], local[4], "
                         "spark://host:7077, yarn or k8s://https://host:443")
    return value


def validation_workers(environ: Mapping[str, str] | None = None) -> int:
    """Processes validating a file's segments at once (``LTCEVAL_VALIDATION_WORKERS``). The
    default is the cores, at most 2: each holds a segment, so memory grows with them."""
    return _process_count(VALIDATION_WORKERS_ENV, "validates", environ)


def _process_count(name: str, verb: str, environ: Mapping[str, str] | None) -> int:
    """A number of worker processes from variable ``name``: default the cores, at most 2."""
    raw = env_value(name, environ)
    if raw is None:
        return max(1, min(2, os.cpu_count() or 1))
    try:
        workers = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of processes") from None
    if workers < 1:
        raise ValueError(f"{name}={raw!r}: at least 1 process {verb}")
    return workers


def generator_workers(environ: Mapping[str, str] | None = None) -> int:
    """Processes building the synthetic population's chunks at once (``LTCEVAL_GENERATOR_WORKERS``);
    the default is the cores, at most 2 (each holds a chunk)."""
    return _process_count(GENERATOR_WORKERS_ENV, "builds", environ)


def linkage_workers(environ: Mapping[str, str] | None = None) -> int:
    """Processes standardising linkage's records at once (``LTCEVAL_LINKAGE_WORKERS``); the
    default is the cores, at most 2 (each holds a piece of about half a million records)."""
    return _process_count(LINKAGE_WORKERS_ENV, "standardises", environ)


def linkage_sensitivity_mode(environ: Mapping[str, str] | None = None) -> str:
    """``LTCEVAL_LINKAGE_SENSITIVITY``: 'auto' (default), 'on' or 'off'."""
    return _one_of(LINKAGE_SENSITIVITY_ENV, LINKAGE_SENSITIVITY_MODES, environ)


def validation_segment_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The size of a validation segment in bytes (``LTCEVAL_VALIDATION_SEGMENT_MIB``)."""
    raw = env_value(VALIDATION_SEGMENT_MIB_ENV, environ)
    try:
        mib = float(raw) if raw is not None else DEFAULT_VALIDATION_SEGMENT_MIB
    except ValueError:
        raise ValueError(f"{VALIDATION_SEGMENT_MIB_ENV}={raw!r} is not a number of MiB") from None
    if not mib > 0:
        raise ValueError(f"{VALIDATION_SEGMENT_MIB_ENV}={raw!r}: the segment size must be above 0 MiB")
    return max(1, int(mib * 2**20))


@dataclass(frozen=True)
class Paths:
    """The folder layout of one run (see docs/data-contracts.md).

    ``reports_dir`` and ``warehouse_file`` redirect where a step writes its reports or which
    warehouse file it uses: the DAG tasks point them at a run's unpublished version folder
    and at the staging warehouse (``ltceval.publish``); library code just uses
    ``paths.reports`` and ``paths.warehouse``.
    """

    out: Path
    reports_dir: Path | None = None
    warehouse_file: Path | None = None

    @classmethod
    def from_env(cls) -> "Paths":
        return cls(Path(env_value(OUT_ENV) or DEFAULT_OUT).resolve())

    @property
    def landing(self) -> Path:
        return self.out / "landing"

    @property
    def ground_truth(self) -> Path:
        return self.out / "ground_truth"

    @property
    def identifiable(self) -> Path:
        return self.out / "identifiable"

    @property
    def pseudonymised(self) -> Path:
        return self.out / "analytical" / "pseudonymised"

    @property
    def warehouse(self) -> Path:
        """The warehouse this step reads (default: the published one)."""
        return self.warehouse_file or self.published_warehouse

    @property
    def published_warehouse(self) -> Path:
        """The published warehouse: replaced as a whole, only after the mart gates pass."""
        return self.out / "analytical" / "warehouse.duckdb"

    @property
    def staging_warehouse(self) -> Path:
        """Where dbt builds the next warehouse (same file system as the published one, and the
        same file name, so DuckDB's catalog name is the same once it is swapped in)."""
        return self.out / "analytical" / ".staging" / "warehouse.duckdb"

    @property
    def gx_results(self) -> Path:
        """The latest run's full GX results and Data Docs: analytical zone, never published
        (they print the marts' exact row counts and quote values; the report folder gets a
        rounded summary, expectations.marts)."""
        return self.out / "analytical" / "gx"

    @property
    def reports(self) -> Path:
        """Where this step writes its reports (default: the top of the published folder)."""
        return self.reports_dir or self.reports_root

    @property
    def reports_root(self) -> Path:
        """The published folder: ``<period>/`` per data period and ``latest`` (symlinks)."""
        return self.out / "reports"

    @property
    def run_handoff(self) -> Path:
        """The current run's data period and version key, handed from the identifiable-zone
        DAG to the analytical and evaluation DAGs (no identifiers)."""
        return self.out / "analytical" / "current_run.json"

    def with_reports(self, reports_dir: Path) -> "Paths":
        return replace(self, reports_dir=Path(reports_dir))

    def with_warehouse(self, warehouse_file: Path) -> "Paths":
        return replace(self, warehouse_file=Path(warehouse_file))

    def dbt_env(self) -> dict[str, str]:
        """The environment `dbt_project/profiles.yml` and the sources read: the warehouse dbt
        writes and the pseudonymised tables it reads."""
        return {"LTCEVAL_WAREHOUSE": str(self.warehouse),
                "LTCEVAL_PSEUDONYMISED_DIR": str(self.pseudonymised),
                "LTCEVAL_SPARK_DIR": str(self.spark)}

    @property
    def spark(self) -> Path:
        """dbt's Spark target (``--target spark``): its tables and their metastore."""
        return self.out / "analytical" / "spark"

    @property
    def airflow_home(self) -> Path:
        return self.out / "airflow"
