"""ops.airflow_environment.airflow_env: what every process of the stack runs with, checked
against our registry of variables (core.settings.ENVIRONMENT) and against what Airflow and
cosmos themselves read, in a real interpreter started with that environment."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from core.settings import DAGS_DIR, ENVIRONMENT, KEY_ENV, KEY_FILE_ENV, OUT_ENV, PERIOD_ENV
from ops.airflow_environment import airflow_env
from ops.airflow_stack import DEFAULT_EXTRA_ENV

# run with the stack's environment: Airflow's documented options (core and providers), and
# the settings cosmos read
PROBE = """
import json, os
from airflow.configuration import conf
import cosmos.settings
known = {(s, o) for s, d in conf.configuration_description.items() for o in d["options"]}
print(json.dumps({
    "unknown": sorted(n for n in os.environ if n.startswith("AIRFLOW__")
                      and tuple(n.lower().split("__")[1:]) not in known),
    "sql_alchemy_conn": conf.get("database", "sql_alchemy_conn"),
    "dags_folder": conf.get("core", "dags_folder"),
    "cosmos": [str(cosmos.settings.cache_dir), cosmos.settings.enable_telemetry,
               cosmos.settings.enable_watcher_reliable_retry, cosmos.settings.enable_cache_dbt_ls],
}))
"""
# read by cosmos.settings (PROBE checks that it does), not declared in Airflow's configuration
COSMOS_OWN = {"AIRFLOW__COSMOS__CACHE_DIR", "AIRFLOW__COSMOS__ENABLE_TELEMETRY",
              "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY", "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS"}


def _env(tmp_path, extra=None):
    return airflow_env(tmp_path / "home", tmp_path / "out", "postgresql+psycopg2://u:p@127.0.0.1:1/airflow",
                       8793, tmp_path / "out" / "secrets" / "key", extra)


def test_pipeline_variables_are_ours_and_documented(tmp_path, monkeypatch):
    monkeypatch.setenv(PERIOD_ENV, "2024-01")  # e.g. left over in a developer's shell
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "SequentialExecutor")
    monkeypatch.setenv("LTCEVAL_TEST_UNRELATED", "x")
    env = _env(tmp_path, DEFAULT_EXTRA_ENV)
    ours = {k for k in env if k.startswith("LTCEVAL_")}
    assert ours <= set(ENVIRONMENT), ours - set(ENVIRONMENT)
    assert ours == {OUT_ENV, KEY_FILE_ENV, *DEFAULT_EXTRA_ENV}  # nothing inherited
    assert env[OUT_ENV] == str(tmp_path / "out") and env[KEY_FILE_ENV] == str(tmp_path / "out" / "secrets" / "key")
    assert KEY_ENV not in env  # the key travels as a file, never as a value
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment is kept


def test_every_airflow_setting_is_one_airflow_or_cosmos_reads(tmp_path):
    env = _env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(seen["unknown"]) == COSMOS_OWN, "settings Airflow does not know (misspelt or removed)"
    assert seen["sql_alchemy_conn"] == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert seen["dags_folder"] == str(DAGS_DIR)
    assert seen["cosmos"] == [str(tmp_path / "home" / "cosmos-cache"), False, False, True]
