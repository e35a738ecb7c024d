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
# parsing the analytical DAG runs a `dbt ls` per dbt task group (two) when cosmos has no cache:
# beyond Airflow's 30 s on a busy machine (ltceval run and the ops stack allow 180 s too)
os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "180")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_airflow_home / 'airflow.db'}")
# The tests' Spark sessions (local, small data, a minute or two each) spend most of their JVM's
# CPU compiling: with the quick compiler only, a session of 75 small queries took 37 s of CPU
# instead of 63-75 s (stop 41). Every JVM a test starts, in this process or a child, reads this.
# Runs at scale keep the JVM's default (both compilers), which pays off on long queries.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1")


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


# Test modules that share a session-scoped run go to one pytest-xdist worker together (every
# other module is a group of its own, so its module-scoped fixtures are built once)
SHARED_RUNS = {
    "tests/identifiable_zone/test_end_to_end.py": "identifiable-zone-run",
    "tests/identifiable_zone/test_linkage_quality.py": "identifiable-zone-run",
    "tests/ltceval/test_cli_link.py": "small-landing",
    "tests/ltceval/test_cli_clerical_review.py": "small-landing",
    "tests/identifiable_zone/test_reproducibility.py": "small-landing",
    "tests/identifiable_zone/test_progress_lines.py": "small-landing",
    "tests/analytical_zone/test_dbt_build.py": "analytical-warehouse",
    "tests/analytical_zone/test_dbt_docs.py": "analytical-warehouse",
    "tests/analytical_zone/test_gx_spark.py": "analytical-warehouse",
    # one killed run and its rerun (ltceval_runs.killed_then_rerun); the baseline run these and
    # the other operations modules compare against is shared across workers (ltceval_runs.baseline)
    "tests/operations/test_faults.py": "operations-killed-run",
    "tests/operations/test_reruns.py": "operations-killed-run",
}


def _refuse_missing_modules(name: str, groups) -> None:
    """A module named in ``name`` (SHARED_RUNS, LONGEST_GROUPS) that no longer exists, or a
    group name no module maps to, is a stale entry: say so rather than silently ignore it."""
    missing = sorted(g for g in groups if not (REPO / g).is_file() and g not in SHARED_RUNS.values())
    if missing:
        raise pytest.UsageError(f"tests/conftest.py {name} names missing test modules: {missing}")


def _group(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SHARED_RUNS.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two pytest-xdist workers; a group (above) runs on one of them. Our own
    scheduler, as xdist's loadgroup cannot mark node ids under pytest 9."""
    from xdist.scheduler import LoadScopeScheduling

    _refuse_missing_modules("SHARED_RUNS", SHARED_RUNS)

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    # xdist otherwise re-sorts the groups by their number of tests, which started the few-test
    # but long test_incremental last (stop 39's CI ended on one worker for 4-5 minutes)
    config.option.loadscopereorder = False

    return SharedRunScheduling(config, log)


# Groups that take minutes, longest first, from `--durations` of a full CI run (stop 39: the
# killed-run pair about 550 s, the Spark run 530 s, the end-to-end run 350 s, ...). Started
# first, they leave the short groups to fill both workers at the end.
LONGEST_GROUPS = (
    "operations-killed-run",
    "tests/operations/test_spark_run.py",
    "tests/end_to_end/test_pipeline_end_to_end.py",
    "tests/operations/test_incremental.py",
    "tests/ops/test_scheduler_postgres.py",
    "tests/evaluation/test_synthetic_warehouse.py",
    "tests/end_to_end/test_hostile_extract.py",
    "tests/operations/test_database_run.py",
)


def pytest_collection_modifyitems(config, items):
    """Longest groups first (LONGEST_GROUPS, then other slow groups, then the rest), so that
    the workers do not end with one long group while the other is idle; the order inside a
    group is kept (the sort is stable). The scheduler above keeps this order."""
    _refuse_missing_modules("LONGEST_GROUPS", LONGEST_GROUPS)
    rank = {g: n for n, g in enumerate(LONGEST_GROUPS)}
    slow = {_group(i.nodeid) for i in items if i.get_closest_marker("slow") is not None}

    def order(item) -> tuple[int, int]:
        group = _group(item.nodeid)
        if group in rank:
            return 0, rank[group]
        return (1, 0) if group in slow else (2, 0)

    items.sort(key=order)
