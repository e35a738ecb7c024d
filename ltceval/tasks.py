"""The functions the DAG tasks call: one per task, each returning a small JSON-able summary
(an XCom: counts, the data period, fingerprints; never an identifier).

The DAG files only orchestrate; what a task does, with which paths and which publishing step,
is here, so it can be called and tested without Airflow. Paths come from the environment
(``LTCEVAL_OUT``) when the task runs, never when a DAG file is parsed. Heavy packages are
imported inside each function so that parsing a DAG file stays cheap.
"""
from __future__ import annotations

import functools

from core.files import output_guard
from core.memory import release_memory
from core.settings import Paths
from ltceval import publish
from ltceval.retries import airflow_retry_policy


def _gives_memory_back(task):
    """What a large task freed leaves the process when it ends: under ``dag.test()`` (``ltceval
    run``) a DAG's tasks share one process, and linkage would start on validation's heap."""
    @functools.wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        finally:
            release_memory()
    return run


# -- identifiable zone ------------------------------------------------------------------------

@_gives_memory_back
def validate_extracts(run_id: str) -> dict:
    """Validate every landing extract, derive the data period, open the run's version folder."""
    from identifiable_zone import pipeline

    paths = Paths.from_env()
    summary = pipeline.validate_all(paths, run_id=run_id)
    run = publish.new_run(summary["period"])
    with airflow_retry_policy():
        publish.open_version(paths, run)
    return {**summary, **run.to_json()}


@_gives_memory_back
def link_records() -> dict:
    from identifiable_zone import pipeline

    return pipeline.link_all(Paths.from_env())


@_gives_memory_back
def pseudonymise_tables() -> dict:
    from identifiable_zone import pipeline

    return pipeline.pseudonymise_and_publish(Paths.from_env())


def write_ig_report(validated: dict) -> dict:
    """The IG report into the run's version folder; then hand the run to the next DAGs."""
    from identifiable_zone import pipeline

    paths = Paths.from_env()
    run = publish.Run(validated["period"], validated["run_key"])
    with airflow_retry_policy():
        out = pipeline.write_ig_report(publish.staged(paths, run))
        publish.write_handoff(paths, run)
    return {**out, **run.to_json()}


# -- analytical zone --------------------------------------------------------------------------

def dbt_environment() -> dict[str, str]:
    """What dbt sees: the staging warehouse it builds and the pseudonymised tables it reads."""
    paths = Paths.from_env()
    return {"LTCEVAL_OUT": str(paths.out), **paths.with_warehouse(paths.staging_warehouse).dbt_env()}


def prepare_warehouse() -> dict:
    """Remove any staged warehouse: dbt builds the next one from scratch."""
    from core.dbt import release_in_process_dbt_handle

    release_in_process_dbt_handle()
    with airflow_retry_policy():
        staging = publish.reset_staging_warehouse(Paths.from_env())
    return {"staging_warehouse": str(staging)}


@_gives_memory_back
def match_cohort() -> dict:
    """The matching step between the DAG's two dbt groups: the matched cohort and its balance,
    written into the staging warehouse (evaluation.matching_step) as dbt's source `matching`;
    on Spark into the Spark warehouse, from a child process (its JVM ends with it)."""
    from core.dbt import release_in_process_dbt_handle
    from core.settings import engine
    from evaluation.matching_step import run_matching
    from ltceval.warehouse_build import match_in_a_child_process

    paths = Paths.from_env().with_warehouse(Paths.from_env().staging_warehouse)
    if engine() == "spark":
        return match_in_a_child_process(paths, "spark", None)
    # dbt ran in this process under dag.test(): its handle on the file must go before the step
    # opens it for writing (the one writer)
    release_in_process_dbt_handle()
    return run_matching(paths, engine="duckdb")


def collect_for_evaluation() -> dict:
    """Spark engine: the tables the evaluation reads, from the Spark warehouse into the staging
    DuckDB file the gates seal and publishing swaps in (ltceval.spark_warehouse), in a child
    process (its JVM, holding the metastore's lock, ends with it)."""
    from ltceval.warehouse_build import json_from_child

    paths = Paths.from_env()
    with airflow_retry_policy():
        tables = json_from_child(["-m", "ltceval.spark_warehouse", "--out", str(paths.out), "--warehouse",
                                  str(paths.staging_warehouse)], "collecting the Spark tables for the evaluation")
    return {"tables": tables}


def validate_marts(engine: str = "duckdb") -> dict:
    """GX suites on the staged marts; raises CriticalExpectationError when a critical one fails
    (the staged warehouse is then not published). ``engine="spark"``: the suites run on the
    tables of dbt's Spark target (``Paths.spark``) instead of the staged DuckDB file."""
    from core.dbt import release_in_process_dbt_handle
    from expectations.marts import validate_marts as run_suites

    paths = Paths.from_env()
    run = publish.current_run(paths)
    staged = publish.staged(paths, run).with_warehouse(paths.staging_warehouse)
    release_in_process_dbt_handle()
    with airflow_retry_policy():
        # the file published is the file the gates read (DuckDB) or the one collected from the
        # tables they read (Spark: collect_for_evaluation ran before)
        publish.seal_staging_warehouse(paths)
        marts = paths.spark if engine == "spark" else staged.warehouse
        with output_guard(staged.reports / "gx"), output_guard(paths.gx_results):
            summary = run_suites(marts, staged.reports / "gx", paths.gx_results, engine=engine)
        gates = {"matched_share": summary["matched_share"], "max_abs_smd_after": summary["max_abs_smd_after"]}
        publish.record_gates_passed(paths, gates)
    return {**gates, **run.to_json()}


def publish_warehouse(gates: dict) -> dict:
    """Swap the gated staging warehouse in for the published one (one rename)."""
    with airflow_retry_policy():
        target = publish.publish_warehouse(Paths.from_env())
    return {"warehouse": str(target), "period": gates["period"], "run_key": gates["run_key"]}


# -- evaluation -------------------------------------------------------------------------------

def estimate_outcome(outcome: str) -> dict:
    from evaluation import pipeline

    return pipeline.estimate(Paths.from_env(), outcome)


def calibrate_with_negative_controls() -> dict:
    from evaluation import pipeline

    return pipeline.negative_controls(Paths.from_env())


def cost_outcomes() -> dict:
    from evaluation import pipeline

    return pipeline.cost(Paths.from_env())


def run_sensitivity() -> dict:
    from evaluation import pipeline

    return pipeline.sensitivity(Paths.from_env())


def run_linkage_sensitivity() -> dict:
    from evaluation import pipeline

    return pipeline.linkage_sensitivity(Paths.from_env())


def write_business_case() -> dict:
    """The business case into the run's (unpublished) version folder."""
    from evaluation import pipeline

    paths = Paths.from_env()
    run = publish.current_run(paths)
    with airflow_retry_policy():
        out = pipeline.report(publish.staged(paths, run), period=run.period)
    return {**out, **run.to_json()}


def publish_reports(written: dict) -> dict:
    """Repoint ``reports/<period>`` (and ``latest``) at the run's complete version folder."""
    paths = Paths.from_env()
    run = publish.Run(written["period"], written["run_key"])
    with airflow_retry_policy():
        folder = publish.publish_reports(paths, run)
    return {"published": str(folder), "report": str(folder / "business_case.html"), **run.to_json()}
