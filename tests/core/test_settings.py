"""Every LTCEVAL_* variable the code reads is documented in core.settings.ENVIRONMENT."""
import re

import pytest

from core.settings import ENVIRONMENT, PERIOD_ENV, REPO_ROOT, env_value

CODE = ("core", "ltceval", "identifiable_zone", "evaluation", "expectations", "synthetic", "dags", "ops")


def _names_in_code() -> set[str]:
    names = set()
    for d in CODE:
        for f in (REPO_ROOT / d).rglob("*.py"):
            names |= set(re.findall(r"[\"'](LTCEVAL_[A-Z0-9_]+)[\"']", f.read_text()))
    for f in (REPO_ROOT / "dbt_project").glob("*.yml"):  # the dbt profile reads its own
        names |= set(re.findall(r"env_var\('(LTCEVAL_[A-Z0-9_]+)'", f.read_text()))
    from evaluation.costing import CostingConfig

    class Recorder(dict):  # costing options are read as f"LTCEVAL_{name}"
        def get(self, key, default=None):
            names.add(key)
            return default

    CostingConfig.from_env(Recorder())
    return names


def test_every_variable_read_is_documented_and_every_documented_one_is_read():
    read = _names_in_code()
    assert read - set(ENVIRONMENT) == set()
    assert set(ENVIRONMENT) - read == set()
    assert all(len(text) > 20 for text in ENVIRONMENT.values())


def test_env_value_reads_only_documented_variables_and_treats_empty_as_unset():
    assert env_value(PERIOD_ENV, {PERIOD_ENV: "2024-06"}) == "2024-06"
    assert env_value(PERIOD_ENV, {PERIOD_ENV: ""}) is None
    assert env_value(PERIOD_ENV, {}) is None
    with pytest.raises(KeyError, match="LTCEVAL_NOT_A_VARIABLE is not a documented variable"):
        env_value("LTCEVAL_NOT_A_VARIABLE", {"LTCEVAL_NOT_A_VARIABLE": "x"})


def test_modules_read_the_environment_only_through_env_value():
    touching = {str(f.relative_to(REPO_ROOT)) for d in CODE
                for f in (REPO_ROOT / d).rglob("*.py") if re.search(r"os\.environ|getenv\(", f.read_text())}
    assert touching == {
        "core/settings.py",  # env_value
        "ltceval/run.py",  # copies the whole environment for the child processes it starts
        "core/dbt.py",  # likewise for a dbt child process
        "dags/analytical_zone_dag.py",  # sets a cosmos option before cosmos is imported
        "ltceval/embedded.py",  # sets Airflow's parsing context: the DAG its process parses the folder for
        "ops/airflow_environment.py",  # the stack's processes start from this environment
        "ops/postgres_cluster.py",  # PATH for PostgreSQL's own tools
        "ops/airflow_preloaded.py",  # the scheduler's entry point imports nothing of ours before Airflow
    }


def test_engine_is_duckdb_by_default_and_refuses_other_values():
    from core.settings import ENGINE_ENV, engine

    assert engine({}) == "duckdb"
    assert engine({ENGINE_ENV: " Spark "}) == "spark"
    with pytest.raises(ValueError, match="LTCEVAL_ENGINE='polars': expected one of duckdb, spark"):
        engine({ENGINE_ENV: "polars"})
