"""How every caller runs the dbt project: its folders, the contract it builds with, its
environment.

dbt_project.yml keeps defaults for every var so that a bare ``dbt build`` works, but the vars of
the evaluation contract (core/contract.py) are passed by every caller (the analytical DAG through
cosmos, test helpers, benchmarks), so that dbt and the evaluation cannot disagree on them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.contract import PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE, SEEDS
from core.settings import DBT_PROJECT_DIR, Paths

DBT_EXECUTABLE = Path(sys.executable).parent / "dbt"


def dbt_vars() -> dict[str, int]:
    """The dbt vars set from the contract (the rest are design choices: dbt_project.yml)."""
    return {"panel_months_before": PANEL_MONTHS_BEFORE, "panel_months_after": PANEL_MONTHS_AFTER,
            "matching_seed": SEEDS.matching}


def project_vars(extra_vars: dict | None = None) -> dict:
    """The vars a dbt run of the project sees: dbt_project.yml's, the contract's
    (``dbt_vars``) and ``extra_vars`` over them, as ``dbt_args`` passes them. The pipeline's
    steps outside dbt (the matching step) read their design from here."""
    import yaml

    _refuse_contract_vars(extra_vars)
    declared = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]
    return {**declared, **dbt_vars(), **(extra_vars or {})}


def _refuse_contract_vars(extra_vars: dict | None) -> None:
    clash = set(extra_vars or ()) & set(dbt_vars())
    if clash:
        raise ValueError(f"dbt vars {sorted(clash)} come from the contract (core/contract.py)")


def matching_defaults() -> dict:
    """The pipeline's matching design (vars of dbt_project.yml): ``ltceval match`` defaults to it."""
    v = project_vars()
    return {"ratio": int(v["matching_ratio"]), "caliper": float(v["matching_caliper_sd"]),
            "refine": str(v["matching_refine"]).strip().lower() in ("true", "1", "yes"),
            "refine_target_smd": float(v["matching_refine_target_smd"])}


def dbt_args(work_dir: Path, extra_vars: dict | None = None) -> list[str]:
    """The project, profile and contract options of a dbt command; dbt's target and logs go
    under ``work_dir``; ``extra_vars`` set further vars of dbt_project.yml (never the contract's)."""
    _refuse_contract_vars(extra_vars)
    return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(Path(work_dir) / "target"), "--log-path", str(Path(work_dir) / "logs"),
            "--vars", json.dumps({**dbt_vars(), **(extra_vars or {})}, sort_keys=True)]


def dbt_process_env(paths: Paths) -> dict[str, str]:
    """The environment of a dbt child process: this one's, the run's warehouse and
    pseudonymised folder (``Paths.dbt_env``), and no usage statistics."""
    return dict(os.environ, **paths.dbt_env(), DBT_SEND_ANONYMOUS_USAGE_STATS="False")


def run_dbt(paths: Paths, *args: str, extra_vars: dict | None = None) -> subprocess.CompletedProcess:
    """``dbt <args>`` in a child process against a run's warehouse (target and logs under
    ``<out>/dbt``); the caller checks the return code."""
    cmd = [str(DBT_EXECUTABLE), *args, *dbt_args(paths.out / "dbt", extra_vars)]
    return subprocess.run(cmd, env=dbt_process_env(paths), capture_output=True, text=True)


def release_in_process_dbt_handle() -> None:
    """Close the DuckDB database that an in-process dbt run (cosmos DBT_RUNNER) left open.

    dbt-duckdb keeps one database handle per process in a class attribute, and DuckDB refuses
    a second, read-only handle on the same file from that process. Nothing to do when dbt has
    not run in this process (its adapter not even imported: a task that only needs to know
    that does not pay for importing dbt).
    """
    import sys

    connections = sys.modules.get("dbt.adapters.duckdb.connections")
    if connections is None:
        return
    manager = connections.DuckDBConnectionManager
    with manager._LOCK:
        if manager._ENV is not None:
            manager._ENV.close()
            manager._ENV = None
