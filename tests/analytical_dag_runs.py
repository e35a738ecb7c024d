"""The analytical DAG's dbt nodes and what its runs left in the embedded Airflow's metadata
database (the SQLite file `ltceval run` sets up under `<out>/airflow/`)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from core.settings import DBT_PROJECT_DIR

# the analytical DAG's two dbt task groups, either side of the matching step (dags/analytical_zone_dag.py)
DBT_GROUPS = ("dbt_before_matching", "dbt_after_matching")
PRODUCERS = tuple(f"{g}.dbt_producer_watcher" for g in DBT_GROUPS)  # the tasks that run each group's `dbt build`
MATCHING_TASK = "match_cohort"


def is_dbt_task(task_id: str) -> bool:
    return task_id.startswith(tuple(f"{g}." for g in DBT_GROUPS))


def project_nodes() -> tuple[set[str], set[str]]:
    """The model and seed names, from the dbt project's own files (not from cosmos)."""
    models = {p.stem for p in (DBT_PROJECT_DIR / "models").rglob("*") if p.suffix in (".sql", ".py")}
    seeds = {p.stem for p in (DBT_PROJECT_DIR / "seeds").rglob("*.csv")}
    return models, seeds


def node_task(task_ids, name: str, kind: str) -> str | None:
    """The id of the task of model or seed ``name`` (``kind`` "run" or "seed") in either dbt group:
    `<group>.<name>.<kind>` when the node has tests (a group with its `.test` task),
    `<group>.<name>_<kind>` otherwise."""
    found = set(task_ids) & {f"{g}.{name}{sep}{kind}" for g in DBT_GROUPS for sep in (".", "_")}
    return found.pop() if len(found) == 1 else None


def last_run_task_states(out: Path, dag_id: str) -> dict[str, str]:
    """task_id -> state of the latest run of ``dag_id`` in ``out``'s embedded Airflow."""
    con = sqlite3.connect(f"file:{Path(out) / 'airflow' / 'airflow.db'}?mode=ro", uri=True)
    try:
        (run_id,) = con.execute("select run_id from dag_run where dag_id = ? order by id desc limit 1",
                                (dag_id,)).fetchone()
        return dict(con.execute("select task_id, state from task_instance where dag_id = ? and run_id = ?",
                                (dag_id, run_id)).fetchall())
    finally:
        con.close()
