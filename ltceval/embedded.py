"""Run one DAG with `dag.test()` on the embedded Airflow configured by `ltceval.run`.

Started as a child process (`python -m ltceval.embedded DAG_ID`) so that Airflow reads the
environment prepared for it and each DAG run gets a clean interpreter. `python -m ltceval.embedded
--list-dbt-project` only parses the analytical DAG file (cosmos' `dbt ls` into the run's cache).
"""
from __future__ import annotations

import os
import sys

LIST_DBT_PROJECT = "--list-dbt-project"


def _parsing_for(dag_id: str) -> None:
    """Tell the DAG files which DAG this process parses them for (Airflow's parsing context, as a
    task's process has): the analytical DAG file renders its dbt project only for its own DAG."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    os.environ[_AIRFLOW_PARSING_CONTEXT_DAG_ID] = dag_id


def _parsed_dag(dag_id: str, dag_folder: str):
    """``dag_id`` from the DAG files in ``dag_folder`` (a folder or one file), parsed for it;
    RuntimeError naming the files that failed to import, or the missing DAG."""
    from airflow.dag_processing.dagbag import DagBag

    _parsing_for(dag_id)
    bag = DagBag(dag_folder=dag_folder)
    if bag.import_errors:
        files = ", ".join(sorted(bag.import_errors))
        raise RuntimeError(f"DAG files failed to import: {files} (see the log above)")
    dag = bag.dags.get(dag_id)
    if dag is None:
        raise RuntimeError(f"no DAG called {dag_id!r} in {dag_folder}")
    return dag


def list_dbt_project() -> int:
    """Parse the analytical DAG file as its own DAG's process would: cosmos lists the dbt project
    (`dbt ls`) into its cache in the run's metadata DB. `ltceval run` does this beside the
    identifiable-zone DAG, so that the analytical DAG's process finds the list made."""
    from core.assets import ANALYTICAL_ZONE
    from core.settings import DAGS_DIR

    try:
        dag = _parsed_dag(ANALYTICAL_ZONE.dag_id, str(DAGS_DIR / f"{ANALYTICAL_ZONE.dag_id}_dag.py"))
    except RuntimeError as e:
        print(f"the analytical DAG file did not parse: {e}")
        return 1
    print(f"dag {dag.dag_id}: {len(dag.tasks)} tasks from the dbt project")
    return 0


def run_dag(dag_id: str) -> str:
    from airflow.configuration import conf

    dag_run = _parsed_dag(dag_id, conf.get("core", "dags_folder")).test()
    try:  # name the failed tasks on the last line of the log (the runner shows the tail)
        failed = sorted(ti.task_id for ti in dag_run.get_task_instances()
                        if str(getattr(ti.state, "value", ti.state)) in ("failed", "upstream_failed"))
    except Exception:  # reporting only
        failed = []
    if failed:
        print(f"dag {dag_id}: failed or not run: {', '.join(failed)}")
    return str(dag_run.state)


def main(argv: list[str]) -> int:
    if argv == [LIST_DBT_PROJECT]:
        return list_dbt_project()
    state = run_dag(argv[0])
    print(f"dag {argv[0]} finished: {state}")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # the run's state is in the metadata DB and every file is written and closed: skip the
    # interpreter's teardown (1-2 s of freeing the heap and finalising Airflow's and the
    # libraries' objects, per DAG process), once the logs are flushed
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
