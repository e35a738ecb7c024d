"""A small synthetic population run through `dbt build` once per test session (real DuckDB)."""
from __future__ import annotations

import pytest

from core.dbt import run_dbt
from core.settings import Paths

PERSONS = 6000
SEED = 3
# what dbt-spark cannot build yet: the matching (a Python model, which dbt-spark runs only on
# Databricks) and every model built on it
NOT_YET_ON_SPARK = ["int_controls_matched_to_treated+", "int_covariate_balance_measured+"]


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory) -> Paths:
    """Synthetic population -> perfect-linkage pseudonymised tables -> `dbt build`."""
    from synthetic.fixture import write_pseudonymised_fixture
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    paths = Paths(tmp_path_factory.mktemp("analytical"))
    generate(SynthParams(persons=PERSONS, seed=SEED), paths.out, fmt="parquet")
    write_pseudonymised_fixture(paths.out, b"test-key-not-secret")
    proc = run_dbt(paths, "build")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    return paths


@pytest.fixture(scope="session")
def dbt_cli():
    """run_dbt(paths, *args): dbt in a child process against a run's warehouse."""
    return run_dbt


@pytest.fixture(scope="session")
def spark_build(built_warehouse):
    """The same run's models on dbt's Spark target (session mode, tables under Paths.spark),
    every one dbt-spark can build: (paths, names of the tables built). Built once a session
    (about 150 s): test_spark_build and the GX suites on Spark share it."""
    import json
    import shutil

    from required_tools import require

    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    paths = built_warehouse
    seeded = run_dbt(paths, "seed", "--target", "spark")
    assert seeded.returncode == 0, seeded.stdout[-5000:]
    built = run_dbt(paths, "run", "--target", "spark", "--exclude", *NOT_YET_ON_SPARK)
    assert built.returncode == 0, built.stdout[-5000:]
    listed = run_dbt(paths, "ls", "--target", "spark", "--resource-type", "model", "--output", "json",
                     "--output-keys", "name config", "--exclude", *NOT_YET_ON_SPARK)
    assert listed.returncode == 0, listed.stdout[-3000:]
    nodes = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    tables = sorted(n["name"] for n in nodes if n["config"]["materialized"] == "table")
    return paths, tables
