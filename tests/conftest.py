"""Test-wide settings: an Airflow home of its own (SQLite) before anything imports Airflow;
fixtures shared by several test folders; how tests are grouped on pytest-xdist workers."""
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_airflow_home = Path(tempfile.mkdtemp(prefix="ltceval-test-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_airflow_home))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_airflow_home / 'airflow.db'}")


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


def pytest_collection_modifyitems(config, items):
    """`make test` runs two pytest-xdist workers with ``--dist loadgroup``: a group runs on one
    worker. Each module is its own group, so its module-scoped fixtures are built once; modules
    that share a session-scoped run say so with ``pytest.mark.xdist_group("<name>")``."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # longest groups first (whole `ltceval run`s, then other slow groups, then the rest), so
    # that the workers do not end with one long group while the other is idle; the order
    # inside a group is kept (the sort is stable)
    slow_groups = {_group(i) for i in items if i.get_closest_marker("slow") is not None}
    whole_runs = {_group(i) for i in items if _group(i) in slow_groups
                  and i.nodeid.startswith(("tests/operations/", "tests/end_to_end/"))}
    items.sort(key=lambda i: 0 if _group(i) in whole_runs else 1 if _group(i) in slow_groups else 2)


def _group(item) -> str:
    return item.get_closest_marker("xdist_group").args[0]
