"""A small synthetic population built into a warehouse once per test session (real DuckDB): dbt's
first selection, the matching step, dbt's second (ltceval.warehouse_build)."""
from __future__ import annotations

import pytest

from core.dbt import run_dbt
from core.settings import Paths
from ltceval.warehouse_build import build_warehouse

PERSONS = 6000
SEED = 3


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory) -> Paths:
    """Synthetic population -> perfect-linkage pseudonymised tables -> the warehouse build."""
    from synthetic.fixture import write_pseudonymised_fixture
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    paths = Paths(tmp_path_factory.mktemp("analytical"))
    generate(SynthParams(persons=PERSONS, seed=SEED), paths.out, fmt="parquet")
    write_pseudonymised_fixture(paths.out, b"test-key-not-secret")
    build_warehouse(paths)  # raises, with dbt's log, when a selection fails
    return paths


@pytest.fixture(scope="session")
def dbt_cli():
    """run_dbt(paths, *args): dbt in a child process against a run's warehouse."""
    return run_dbt


@pytest.fixture(scope="session")
def spark_build(built_warehouse):
    """The same run's whole warehouse build on Spark (ltceval.warehouse_build, engine spark: dbt's
    Spark target in session mode, tables under Paths.spark, and the matching step between its two
    selections): (paths, names of the tables built, the build's summary). Built once a session
    (a few minutes): test_spark_build and the GX suites on Spark share it."""
    import json
    import shutil

    from evaluation.matching_step import BALANCE_TABLE, MATCHED_TABLE
    from required_tools import require

    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    paths = built_warehouse
    built = build_warehouse(paths, engine="spark")  # raises, with dbt's log, when a step fails
    listed = run_dbt(paths, "ls", "--target", "spark", "--resource-type", "model", "--output", "json",
                     "--output-keys", "name config")
    assert listed.returncode == 0, listed.stdout[-3000:]
    nodes = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    tables = sorted(n["name"] for n in nodes if n["config"]["materialized"] == "table")
    return paths, [*tables, MATCHED_TABLE, BALANCE_TABLE], built
