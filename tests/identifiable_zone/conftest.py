"""Shared runs of the identifiable zone on synthetic populations (real GX, DuckDB, splink)."""
import pytest

from idz_helpers import RUN_PERSONS, run_zone

@pytest.fixture(scope="session")
def run(tmp_path_factory):
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    out = tmp_path_factory.mktemp("idz")
    generate(SynthParams(persons=RUN_PERSONS, seed=7), out)
    return run_zone(out)
