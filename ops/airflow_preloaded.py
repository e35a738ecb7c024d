"""`airflow <command>` with the task-time libraries imported first (fork-inherited).

    python ops/airflow_preloaded.py scheduler       # instead of: airflow scheduler

Why: with the LocalExecutor on Linux, the scheduler forks its executor workers and each worker
forks one process per task, so whatever the scheduler imported before starting is already
loaded in every task process. The analytical DAG has a task per dbt node (cosmos watcher
mode: one `dbt build`, then a sensor per model, seed and model's tests, one at a time for
DuckDB's single writer): each of those task processes imports cosmos to parse the DAG file,
and the producer dbt and its DuckDB adapter, seconds each time, more than a sensor takes to
read its node's status; great_expectations and statsmodels cost other tasks as much again.
Importing them once here makes the DAG runs markedly faster, with the same scheduler,
executor, DAGs and task processes (nothing else changes). (The dag-processor forks its
parsing processes the same way, but it needs few of these libraries: start it plainly.)

Only third-party libraries are preloaded, never the project's own modules: a changed DAG or
pipeline file is picked up by the next task as usual (a library upgrade needs a restart,
which rebuilding the image implies anyway).

Only import-time work happens here: no threads, connections or files are opened before the
fork. A module that fails to import is skipped (the task imports it itself, as usual).
Set LTCEVAL_PRELOAD=0 to start the plain command.
"""
from __future__ import annotations

import importlib
import os
import sys

PRELOAD = (
    # dbt in-process (cosmos InvocationMode.DBT_RUNNER) and its DuckDB adapter
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "dbt.adapters.duckdb.impl",
    # cosmos operators, the Task SDK the task runner uses
    "cosmos",
    "cosmos.operators.local",
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    # third-party libraries of the tasks (several seconds each to import); never the project's
    # own modules, so that a changed pipeline file is picked up by the next task as usual
    "great_expectations",
    "splink",
    "statsmodels.api",
    "scipy.stats",
    "matplotlib",
    "openpyxl",
    "duckdb",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
)


def preload(modules=PRELOAD) -> list[str]:
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - best effort: the task imports it itself
            pass
    return loaded


def main() -> None:
    if os.environ.get("LTCEVAL_PRELOAD", "1") not in ("0", "false", "False", "no"):
        preload()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
