"""Analytical zone: dbt builds the marts from the pseudonymised tables, then GX validates them.

Scheduled on the `pseudonymised_tables` asset. A cosmos `DbtTaskGroup` renders the dbt
project (`dbt_project/`, LoadMode.DBT_LS) as one task per model/seed, each running
`dbt build` on its node (model + its tests, unit tests included); tests with several parents
run as their own tasks. dbt is the only writer of the DuckDB warehouse; tasks run one at a
time (`max_active_tasks=1`). The thin GX task then reads the marts read-only and raises on a
failed critical expectation (balance, uniqueness, windows), which fails the run before the
`evaluation_panel` asset is published. Results: `<out>/reports/gx/*.json`, and GX Data Docs
(HTML, naming each failed expectation and why it is critical) in `<out>/reports/gx/data_docs/`.

DuckDB single writer: a DuckDB file has one writing process at a time, and a process that
holds it open for writing locks out readers in other processes (and vice versa). Inside this
DAG that is guaranteed by `max_active_tasks=1` and `max_active_runs=1`, and the GX task opening the
file `read_only=True` after every dbt task has finished. dbt runs in the task's own process
(cosmos DBT_RUNNER: dbt is imported once, not once per model, which makes the DAG several
times faster); dbt-duckdb keeps its database handle for the life of that process, so the GX
task releases any such handle first (under `dag.test()` all tasks share one process; under a
scheduler each task is its own process and there is none to release). No Airflow pool is needed for that. The
one cross-DAG case is a new `pseudonymised_tables` event arriving while the evaluation DAG
still reads the warehouse: dbt would then fail on the file lock (and retry/fail visibly; it
cannot corrupt the file). If runs may overlap in production, put the dbt tasks and the
evaluation DAG's warehouse readers in one Airflow pool with a single slot.

Paths come from `ltceval.settings.Paths.from_env()` (env LTCEVAL_OUT): the warehouse and the
pseudonymised folder are handed to dbt as env LTCEVAL_WAREHOUSE / LTCEVAL_PSEUDONYMISED_DIR.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

# cosmos caches `dbt ls` in Airflow Variables, i.e. a metadata-DB read/write while parsing;
# parsing must also work without a metadata DB (DAG-integrity tests), and dbt ls is quick here
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS", "False")

from airflow.sdk import dag, task  # noqa: E402
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig  # noqa: E402
from cosmos.constants import InvocationMode, LoadMode, TestBehavior  # noqa: E402

from ltceval.assets import EVALUATION_PANEL, PSEUDONYMISED_TABLES  # noqa: E402
from ltceval.settings import DBT_PROJECT_DIR, Paths  # noqa: E402

_paths = Paths.from_env()
DBT_ENV = {
    "LTCEVAL_OUT": str(_paths.out),
    "LTCEVAL_WAREHOUSE": str(_paths.warehouse),
    "LTCEVAL_PSEUDONYMISED_DIR": str(_paths.pseudonymised),
}
DBT_EXECUTABLE = Path(sys.executable).parent / "dbt"


@dag(
    dag_id="analytical_zone",
    schedule=[PSEUDONYMISED_TABLES],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,  # one DuckDB writer at a time
    tags=["ltceval", "analytical"],
    doc_md=__doc__,
)
def analytical_zone():
    dbt_build = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(dbt_project_path=DBT_PROJECT_DIR, env_vars=DBT_ENV, install_dbt_deps=False),
        profile_config=ProfileConfig(
            profile_name="ltceval",
            target_name="dev",
            profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
        ),
        # dbt in-process (dbtRunner): a child process per model would re-import dbt ~3 s each time
        execution_config=ExecutionConfig(dbt_executable_path=DBT_EXECUTABLE, invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_LS,
            test_behavior=TestBehavior.BUILD,
            # tests with several parents (relationships) run as their own task after all parents
            should_detach_multiple_parents_tests=True,
        ),
    )

    @task(outlets=[EVALUATION_PANEL])
    def validate_marts() -> dict:
        """GX suites on the marts; raises CriticalExpectationError when a critical one fails."""
        from expectations.marts import release_in_process_dbt_handle
        from expectations.marts import validate_marts as run_suites
        from ltceval.settings import Paths

        paths = Paths.from_env()
        release_in_process_dbt_handle()
        summary = run_suites(paths.warehouse, paths.reports / "gx")
        return {"matched_share": summary["matched_share"], "max_abs_smd_after": summary["max_abs_smd_after"]}

    dbt_build >> validate_marts()


analytical_zone()
