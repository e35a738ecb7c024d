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
