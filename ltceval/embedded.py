"""Run one DAG with `dag.test()` on the embedded Airflow configured by `ltceval.run`.

Started as a child process (`python -m ltceval.embedded DAG_ID`) so that Airflow reads the
environment prepared for it and each DAG run gets a clean interpreter.
"""
from __future__ import annotations

import sys


def run_dag(dag_id: str) -> str:
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=conf.get("core", "dags_folder"))
    if bag.import_errors:
        files = ", ".join(sorted(bag.import_errors))
        raise RuntimeError(f"DAG files failed to import: {files} (see the log above)")
    dag = bag.dags.get(dag_id)
    if dag is None:
        raise RuntimeError(f"no DAG called {dag_id!r} in {conf.get('core', 'dags_folder')}")
    dag_run = dag.test()
    try:  # name the failed tasks on the last line of the log (the runner shows the tail)
        failed = sorted(ti.task_id for ti in dag_run.get_task_instances()
                        if str(getattr(ti.state, "value", ti.state)) in ("failed", "upstream_failed"))
    except Exception:  # reporting only
        failed = []
    if failed:
        print(f"dag {dag_id}: failed or not run: {', '.join(failed)}")
    return str(dag_run.state)


def main(argv: list[str]) -> int:
    state = run_dag(argv[0])
    print(f"dag {argv[0]} finished: {state}")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
