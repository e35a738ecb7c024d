"""Analytical zone: dbt builds the marts from the pseudonymised tables, then GX validates them.

Scheduled on the `pseudonymised_tables` asset. The build is three steps, as outside Airflow
(``ltceval.warehouse_build``): dbt up to the eligible matching pool, the matching step, dbt on
the matched cohort. The matching is no dbt model (dbt-spark runs Python models only on
Databricks; one step serves DuckDB and Spark): the task `match_cohort` (``evaluation.matching_step``)
reads `int_match_pool_filtered_to_eligible` and writes dbt's source `matching` (the matched
cohort and its balance) into the same warehouse. Each dbt step is a cosmos `DbtTaskGroup` in
watcher mode (ExecutionMode.WATCHER), rendering its selection of the dbt project (`dbt_project/`,
LoadMode.DBT_LS): `dbt_before_matching` excludes `source:matching+`, `dbt_after_matching`
selects it. In each group one task, `<group>.dbt_producer_watcher`, runs a single `dbt build`
of the selection (models, seeds and data tests; dbt's unit tests check code, not data, and run
in the test suite), and every model and seed is a task of its own that reports its node's
result from that build, as is each model's data tests (`<group>.<model>.test`). Those tasks are
sensors: they start once the build has ended and read the statuses it left (XCom); the
producer's failure also fails the run (the matching step waits for the first producer's gate).
Tests on the source's two tables run in the second group's build (they are no model's task).
One dbt start-up per group instead of one per model: at 20,000 people the single-group DAG
took 35 s, against 53 s with a `dbt build` per model (`benchmarks/scale.py --via-airflow`, quiet
machine). dbt and then the matching step are the only writers of the DuckDB warehouse, one after
the other; tasks run one at a time (`max_active_tasks=1`). The thin GX task then reads the marts
read-only and raises on a failed critical expectation (balance, uniqueness, windows), which
fails the run before the `evaluation_panel` asset is published. Full results: `<out>/analytical/gx/*.json`,
and GX Data Docs (HTML, naming each failed expectation and why it is critical) in
`<out>/analytical/gx/data_docs/`, never published (exact counts, unexpected values); the run's
report folder gets `gx/summary.json`, counts rounded (docs/disclosure-policy.md).

Staging and publishing (``ltceval.publish``, called through ``ltceval.tasks``): dbt builds a fresh warehouse in
``analytical/.staging/warehouse.duckdb`` (``prepare_warehouse`` removes any earlier one first,
so every table is rebuilt from the pseudonymised tables and a rerun can never duplicate rows).
The GX gates read that file and write their summary into the run's unpublished version
folder; only when they pass does ``publish_warehouse`` swap the file in for
``analytical/warehouse.duckdb`` (one rename; readers keep the old file until then) and
publish the `evaluation_panel` asset. A failed gate or a killed run leaves the published
warehouse as it was.

DuckDB single writer: a DuckDB file has one writing process at a time, and a process that
holds it open for writing locks out readers in other processes (and vice versa). The only
file ever opened for writing is the staging file, and only by this DAG: one task and one run
at a time (`max_active_tasks=1`, `max_active_runs=1`); the node sensors write nothing (they run
after the build, so one slot is enough), except on a run cleared by hand, where cosmos has
each of them run its own node, still one at a time; the matching step opens it for writing
after the first group has ended and before the second starts; the GX task opens it `read_only=True`
after every dbt task has finished, and the swap is a rename under a lock file
(`analytical/.warehouse.lock`). Readers of the published warehouse (the evaluation DAG, a
notebook) open it read-only and are never blocked by a dbt run, nor block one. dbt runs in
the task's own process (cosmos DBT_RUNNER: no dbt child process); dbt-duckdb keeps its
database handle for the life of that process, so the matching, GX and publish tasks release any such
handle first (under `dag.test()` all tasks share one process; under a scheduler each task is
its own process and there is none to release).

Retries: none for the dbt tasks and the matching step (a model or test that fails fails again on the same input,
and no other process writes the staging file, so there is no lock to wait for; cosmos would
skip a retried producer rather than build again) and none for the GX gates;
`prepare_warehouse` and `publish_warehouse` retry on transient I/O errors
(``ltceval.retries.IO_RETRIES``; a full disk or a permission error fails at once). To build
again, start a new run: a cleared run does not build in one go (cosmos skips the cleared
producer, and each cleared sensor runs its own node, one at a time, as the DAG did before
watcher mode).

Paths come from `core.settings.Paths.from_env()` (env LTCEVAL_OUT): the staging warehouse
and the pseudonymised folder are handed to dbt as env LTCEVAL_WAREHOUSE /
LTCEVAL_PSEUDONYMISED_DIR (``ltceval.tasks.dbt_environment``).
"""
from __future__ import annotations

import os
from datetime import datetime

# cosmos caches `dbt ls` in Airflow Variables, i.e. a metadata-DB read/write while parsing;
# parsing must also work without a metadata DB (DAG-integrity tests): off unless configured
# (`ltceval run`, the ops stack and docker-compose turn it on: they have a metadata DB)
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS", "False")

from airflow.sdk import dag, get_parsing_context, task  # noqa: E402
from airflow.task.trigger_rule import TriggerRule  # noqa: E402
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig  # noqa: E402
from cosmos.constants import (  # noqa: E402
    PRODUCER_WATCHER_DONE_TASK_ID,
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    TestBehavior,
)

from core.assets import ANALYTICAL_ZONE, IDENTIFIABLE_ZONE, airflow_asset  # noqa: E402
from core.dbt import DBT_EXECUTABLE, dbt_vars  # noqa: E402
from core.settings import DBT_PROJECT_DIR, engine  # noqa: E402
from ltceval import tasks  # noqa: E402
from ltceval.retries import IO_RETRIES, NO_RETRIES  # noqa: E402
from ltceval.warehouse_build import FIRST_SELECTION, SECOND_SELECTION, TARGETS  # noqa: E402

DBT_ENV = tasks.dbt_environment()
ENGINE = engine()  # LTCEVAL_ENGINE (`ltceval run --engine`): which dbt target, and Spark's extra task
PRODUCTION_EXCLUDES = ("resource_type:unit_test",)
DBT_BEFORE_MATCHING = "dbt_before_matching"  # the task groups (and cosmos' dbt ls cache keys)
DBT_AFTER_MATCHING = "dbt_after_matching"


def _sensors_after_the_producer(group: DbtTaskGroup):
    """Wire the node sensors to start only when the producer's `dbt build` has ended; returns
    the producer's gate task (cosmos' `dbt_producer_watcher_done`).

    cosmos starts a DbtTaskGroup's root sensors alongside the producer. Here that cannot work:
    `dag.test()` runs one task at a time and a deferred sensor's trigger inline, so a sensor
    started first would wait for ever on a producer that never starts (and under a scheduler
    it would hold the one task slot). After the producer, a sensor's first poke finds its
    node's status. `one_done` on [producer, gate]: they also run when the producer failed
    (each reports its own node: the failed model or test is the red task) or was skipped on a
    cleared run (cosmos then runs each node on its own); when the producer never ran
    (`prepare_warehouse` failed) they are skipped rather than left waiting."""
    producer = group.children[f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}"]
    done = group.children[f"{group.group_id}.{PRODUCER_WATCHER_DONE_TASK_ID}"]
    for sensor in [t for t in group.get_roots() if t not in (producer, done)]:
        [producer, done] >> sensor
        sensor.trigger_rule = TriggerRule.ONE_DONE
    return done


@dag(dag_id=ANALYTICAL_ZONE.dag_id, schedule=[airflow_asset(IDENTIFIABLE_ZONE)], start_date=datetime(2024, 1, 1), catchup=False,
     max_active_runs=1, max_active_tasks=1,  # one DuckDB writer at a time
     tags=["ltceval", "analytical"], doc_md=__doc__)
def analytical_zone():
    @task(**IO_RETRIES)
    def prepare_warehouse() -> dict:
        return tasks.prepare_warehouse()

    def dbt_group(group_id: str, select: list[str], exclude: list[str]) -> DbtTaskGroup:
        return DbtTaskGroup(
            group_id=group_id,
            project_config=ProjectConfig(dbt_project_path=DBT_PROJECT_DIR, env_vars=DBT_ENV, dbt_vars=dbt_vars(),
                                         install_dbt_deps=False),
            profile_config=ProfileConfig(profile_name="ltceval", target_name=TARGETS[ENGINE],
                                         profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml"),
            # one `dbt build` of the group's selection (the producer task), in-process (dbtRunner):
            # a dbt start-up per model cost more than most models take to build. On Spark a dbt
            # child process: dbt-spark's session (its JVM, holding the metastore's lock) must end
            # before the matching step and the next group open the metastore
            execution_config=ExecutionConfig(execution_mode=ExecutionMode.WATCHER, dbt_executable_path=DBT_EXECUTABLE,
                                             invocation_mode=(InvocationMode.SUBPROCESS if ENGINE == "spark"
                                                              else InvocationMode.DBT_RUNNER)),
            render_config=RenderConfig(
                load_method=LoadMode.DBT_LS,
                select=select,
                # dbt's unit tests check the SQL's logic on fixed rows, not the data: they run where
                # the code changes (`make test` builds with them, CI too), not in every production
                # build, as dbt recommends (docs.getdbt.com, unit tests); 10 nodes, about 3 s a run
                exclude=[*PRODUCTION_EXCLUDES, *exclude],
                # watcher mode has no per-node `dbt build` task: a model's data tests are its
                # `<model>.test` task
                test_behavior=TestBehavior.AFTER_EACH,
                # a detached test's task would watch a status the producer never reports (it sums
                # tests up per model): it would pass on the producer's success alone and rerun the
                # test itself after a failure; undetached, a relationships test counts in the test
                # task of each model it reads
                should_detach_multiple_parents_tests=False,
                # the staging tables are no product: only publish_warehouse publishes (an Asset)
                emit_datasets=False,
            ),
            default_args=dict(NO_RETRIES),  # same input, same failure: no retry
        )

    # the matching is no dbt model (dbt-spark runs Python models only on Databricks): dbt builds up
    # to the eligible pool, the matching step writes source `matching`, dbt builds what reads it
    # (ltceval.warehouse_build: the same three steps outside Airflow)
    before_matching = dbt_group(DBT_BEFORE_MATCHING, select=[], exclude=list(FIRST_SELECTION[1:]))
    before_done = _sensors_after_the_producer(before_matching)

    @task(**NO_RETRIES)
    def match_cohort() -> dict:
        return tasks.match_cohort()

    matching = match_cohort()
    after_matching = dbt_group(DBT_AFTER_MATCHING, select=list(SECOND_SELECTION[1:]), exclude=[])
    after_done = _sensors_after_the_producer(after_matching)

    @task(**NO_RETRIES)
    def validate_marts() -> dict:
        return tasks.validate_marts(ENGINE)

    @task(**IO_RETRIES)
    def collect_for_evaluation() -> dict:
        return tasks.collect_for_evaluation()

    @task(outlets=[airflow_asset(ANALYTICAL_ZONE)], **IO_RETRIES)
    def publish_warehouse(gates: dict) -> dict:
        return tasks.publish_warehouse(gates)

    gates = validate_marts()
    if ENGINE == "spark":  # the tables the evaluation reads, from Spark into the staging DuckDB file
        collected = collect_for_evaluation()
        prepare_warehouse() >> before_matching >> matching >> after_matching >> collected >> gates
        after_done >> collected
    else:
        prepare_warehouse() >> before_matching >> matching >> after_matching >> gates
    # a failed producer fails the run even if every sensor passed
    before_done >> matching
    after_done >> gates
    publish_warehouse(gates)


# Airflow's parsing context names the DAG a process parses this folder for (a task's process; each
# DAG's process of `ltceval run`): only this DAG's own processes render the dbt project into
# tasks (cosmos: a `dbt ls`, or its cache, and 100-odd tasks), as Airflow's docs advise for
# DAG files that are slow to build (the dynamic-DAG parsing optimisation)
if get_parsing_context().dag_id in (None, ANALYTICAL_ZONE.dag_id):
    analytical_zone()
