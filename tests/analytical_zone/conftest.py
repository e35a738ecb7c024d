"""A small synthetic population run through `dbt build` once per test session (real DuckDB)."""
from __future__ import annotations

import pytest

from core.dbt import run_dbt
from core.settings import Paths

PERSONS = 6000
SEED = 3


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
