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


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory):
    """Landing extracts of a small population; copy before use (copy_landing)."""
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    import pandas as pd

    out = tmp_path_factory.mktemp("small")
    generate(SynthParams(persons=700, seed=5), out)
    # a site column outside the contract: must be reported, never published
    ecds = pd.read_csv(out / "landing" / "ecds.csv", dtype=str, keep_default_na=False)
    ecds["LocalTriageNotes"] = "note"
    ecds.to_csv(out / "landing" / "ecds.csv", index=False)
    return out
