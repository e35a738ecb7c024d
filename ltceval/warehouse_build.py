"""The whole warehouse build, on DuckDB or Spark: dbt's first selection, the matching step, dbt's
second selection.

The matching (``evaluation.matching_step``) is not a dbt model (dbt-spark runs Python models only
on Databricks): dbt builds everything up to the eligible pool (``FIRST_SELECTION``), the step
writes the two tables of dbt's source ``matching`` beside it, and dbt builds what reads them
(``SECOND_SELECTION``). The two selections are disjoint and together the whole project
(tests/analytical_zone/test_warehouse_build.py). The analytical DAG runs the same three steps as
three tasks (dags/analytical_zone_dag.py). This lives in ``ltceval`` because ``core`` does not
import ``evaluation``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from core.dbt import run_dbt
from core.settings import Paths

MATCHING_SOURCE = "source:matching+"  # the matching step's tables and everything built on them
FIRST_SELECTION = ("--exclude", MATCHING_SOURCE)
SECOND_SELECTION = ("--select", MATCHING_SOURCE)
TARGETS = {"duckdb": "dev", "spark": "spark"}  # engine -> dbt target of dbt_project/profiles.yml


class DbtBuildError(RuntimeError):
    """A dbt selection of the warehouse build failed."""


def run_dbt_child(paths: Paths, args: Sequence[str], extra_vars: dict | None) -> str:
    """One dbt command in a child process (``core.dbt.run_dbt``): its output; raises with the
    end of it when dbt fails."""
    proc = run_dbt(paths, *args, extra_vars=extra_vars)
    if proc.returncode != 0:
        raise DbtBuildError(f"dbt {' '.join(args)} failed (exit {proc.returncode}) on {paths.warehouse}:\n"
                            f"{proc.stdout[-5000:]}{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def selections(select: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The dbt selection arguments of the two builds; ``select`` (dbt selectors, e.g.
    ``+mart_balance``) narrows both to the nodes it names."""
    from evaluation.matching_step import POOL_TABLE

    if not select:
        return list(FIRST_SELECTION), list(SECOND_SELECTION)
    # dbt: spaces are a union, a comma an intersection. A source has no parents, so `+mart_balance`
    # stops at source `matching`: the first selection adds the pool the matching step reads
    return (["--select", *select, f"+{POOL_TABLE}", *FIRST_SELECTION],
            ["--select", *(f"{s},{MATCHING_SOURCE}" for s in select)])


def build_warehouse(paths: Paths, *dbt_args: str, engine: str = "duckdb", extra_vars: dict | None = None,
                    select: Sequence[str] | None = None,
                    run: Callable[[Paths, Sequence[str], dict | None], str | None] = run_dbt_child) -> dict:
    """``dbt build`` of the whole project (or of the ``select``-ed nodes) on ``engine``
    ('duckdb': ``paths.warehouse``; 'spark': ``paths.spark``), the matching between its two
    selections. ``dbt_args`` go to both dbt commands, ``extra_vars`` to dbt and the matching;
    ``run`` runs one dbt command, returns its output (or None) and raises when it fails
    (default: a dbt child process). Returns the matching step's summary (``matching``) and the
    two dbt commands' output (``dbt_output``)."""
    from evaluation.matching_step import run_matching

    if engine not in TARGETS:
        raise ValueError(f"build_warehouse: engine {engine!r} is not one of {', '.join(TARGETS)}")
    first, second = selections(select)
    target = ["--target", TARGETS[engine]]
    first_output = run(paths, ["build", *first, *target, *dbt_args], extra_vars)
    if engine == "spark":
        matching = match_in_a_child_process(paths, engine, extra_vars)
    else:
        matching = run_matching(paths, engine=engine, extra_vars=extra_vars)
    second_output = run(paths, ["build", *second, *target, *dbt_args], extra_vars)
    return {"matching": matching, "dbt_output": [first_output, second_output]}


def match_in_a_child_process(paths: Paths, engine: str, extra_vars: dict | None) -> dict:
    """The matching step in a process of its own. Spark's local metastore is an embedded Derby
    database that one JVM at a time may open, and a stopped Spark session leaves its JVM (and
    Derby's lock) alive in this process: dbt's next selection then cannot open the metastore
    ("Unable to instantiate SessionHiveMetaStoreClient"). The child's JVM ends with it."""
    import json

    return json_from_child(["-m", "evaluation.matching_step", "--out", str(paths.out), "--warehouse",
                            str(paths.warehouse), "--engine", engine, "--vars", json.dumps(extra_vars or {})],
                           f"the matching step on {engine}")


def json_from_child(args: Sequence[str], what: str):
    """``python <args>`` in a child process (a Spark step: its JVM, and the metastore's lock, end
    with it); the JSON its last line of output prints; raises naming ``what`` when it fails."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ltceval.warehouse_build --out DIR [--engine spark]``: the whole build of a
    run folder's warehouse from its pseudonymised tables (what a bare ``dbt build`` no longer does)."""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m ltceval.warehouse_build", description=main.__doc__)
    ap.add_argument("--out", type=Path, required=True, help="the run's output folder (analytical/ under it)")
    ap.add_argument("--engine", choices=sorted(TARGETS), default="duckdb")
    args = ap.parse_args(argv)
    built = build_warehouse(Paths(args.out.resolve()), engine=args.engine)
    print(f"warehouse built on {args.engine}: {built['matching']['matched_rows']} matched rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
