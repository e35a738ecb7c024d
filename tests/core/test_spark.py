"""core.spark's session settings are dbt's Spark target's: the matching step and the identifiable
zone on Spark see the tables dbt builds; a Spark master named by LTCEVAL_SPARK_MASTER (a real
standalone cluster, started here) runs them."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from core.settings import (DBT_PROJECT_DIR, DEFAULT_SPARK_DRIVER_MEMORY, DEFAULT_SPARK_MASTER, SPARK_DRIVER_MEMORY_ENV,
                           SPARK_MASTER_ENV, spark_driver_memory, spark_master)
from core.spark import SPARK_SCHEMA, session_parameters, table_path
from ops.local_ports import free_port
from required_tools import REPO, require


def _rendered(value, environ: dict[str, str]) -> str:
    """A profile value as dbt renders it: Jinja with env_var() reading ``environ``."""
    import jinja2

    def env_var(name, default=None):
        if name in environ:
            return environ[name]
        assert default is not None, f"{name} is unset and has no default"
        return default

    return jinja2.Template(str(value)).render(env_var=env_var)


@pytest.mark.parametrize("environ", [{}, {SPARK_DRIVER_MEMORY_ENV: " 12G ", SPARK_MASTER_ENV: " spark://spark-master:7077 "}])
def test_the_session_settings_are_the_dbt_spark_targets(monkeypatch, environ):
    spark_dir = "/some/run/analytical/spark"
    for name in (SPARK_DRIVER_MEMORY_ENV, SPARK_MASTER_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    target = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["ltceval"]["outputs"]["spark"]
    rendered = {k: _rendered(v, {**environ, "LTCEVAL_SPARK_DIR": spark_dir})
                for k, v in target["server_side_parameters"].items()}
    assert rendered == session_parameters(Path(spark_dir))
    if environ:
        assert rendered["spark.driver.memory"] == "12g" and rendered["spark.master"] == "spark://spark-master:7077"
    else:
        assert rendered["spark.driver.memory"] == DEFAULT_SPARK_DRIVER_MEMORY
        assert rendered["spark.master"] == DEFAULT_SPARK_MASTER
    assert target["schema"] == SPARK_SCHEMA


def test_the_cluster_targets_take_every_connection_setting_from_the_environment():
    """spark_thrift and databricks (README "Scaling out"): host, port, user, token and path are
    env_var() lookups that an Airflow Connection fills, never values written in the profile;
    the token's name makes dbt scrub it from logs (DBT_ENV_SECRET_)."""
    import re

    outputs = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["ltceval"]["outputs"]
    lookup = re.compile(r"\{\{ env_var\('([A-Z0-9_]+)'(?:, '[^']*')?\)(?: \| as_number)? \}\}")
    settings = {"spark_thrift": ("host", "port", "user"), "databricks": ("host", "http_path", "token", "catalog")}
    for target, keys in settings.items():
        assert outputs[target]["schema"] == SPARK_SCHEMA, target
        for key in keys:
            assert lookup.fullmatch(str(outputs[target][key])), f"{target}.{key} is not an env_var(): {outputs[target][key]!r}"
        assert not {"password", "token"} & set(outputs[target]) - set(keys), target
    assert outputs["spark_thrift"]["type"] == "spark" and outputs["spark_thrift"]["method"] == "thrift"
    assert outputs["databricks"]["type"] == "databricks"
    assert lookup.fullmatch(outputs["databricks"]["token"]).group(1).startswith("DBT_ENV_SECRET_")


def test_the_driver_memory_is_a_spark_size():
    assert spark_driver_memory({}) == DEFAULT_SPARK_DRIVER_MEMORY
    assert spark_driver_memory({SPARK_DRIVER_MEMORY_ENV: " 8192M "}) == "8192m"
    for bad in ("6", "6 GB", "0g", "lots"):
        with pytest.raises(ValueError, match=f"{SPARK_DRIVER_MEMORY_ENV}=.*expected a size such as 6g"):
            spark_driver_memory({SPARK_DRIVER_MEMORY_ENV: bad})


def test_the_spark_master_is_a_master_url():
    assert spark_master({}) == DEFAULT_SPARK_MASTER == "local[*]"
    for good in ("local", "local[4]", "spark://spark-master:7077", "spark://a:7077,b:7077", "yarn",
                 "k8s://https://k8s.example:443"):
        assert spark_master({SPARK_MASTER_ENV: f" {good} "}) == good
    for bad in ("spark-master:7077", "spark://spark-master", "http://spark-master:8080", "local[0]", "mesos://m:5050"):
        with pytest.raises(ValueError, match=f"{SPARK_MASTER_ENV}=.*expected a Spark master URL"):
            spark_master({SPARK_MASTER_ENV: bad})


def _master_state(web_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/json/", timeout=5) as r:
        return json.load(r)


@pytest.fixture
def standalone_cluster(tmp_path):
    """A real Spark standalone master and one worker (pyspark's own spark-class), on loopback."""
    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port, web, worker_web = free_port(), free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(tmp_path / "logs")}
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("master", "worker")]
    procs = [subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(web)], env=env, stdout=logs[0], stderr=logs[0])]
    try:
        procs.append(subprocess.Popen([str(spark_class), "org.apache.spark.deploy.worker.Worker", url, "--host",
                                       "127.0.0.1", "--cores", "1", "--memory", "1g", "--webui-port", str(worker_web),
                                       "--work-dir", str(tmp_path / "work")], env=env, stdout=logs[1], stderr=logs[1]))
        deadline = time.monotonic() + 120
        while True:
            try:
                if [w for w in _master_state(web)["workers"] if w["state"] == "ALIVE"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                (tmp_path / "master.log").read_text()[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(1)
        yield url, web
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs[::-1]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


_ON_THE_MASTER = """
import json, sys
from pathlib import Path
from core.spark import SPARK_SCHEMA, spark_session
spark = spark_session(Path(sys.argv[1]), app_name="ltceval-on-a-cluster")
try:
    spark.sql(f"create database if not exists {SPARK_SCHEMA}")
    spark.sql(f"create table {SPARK_SCHEMA}.twice using parquet as select id, 2 * id as twice from range(1000)")
    total = spark.sql(f"select sum(twice) from {SPARK_SCHEMA}.twice").first()[0]
    sc = spark.sparkContext
    print(json.dumps({"master": sc.master, "app": sc.applicationId, "total": total,
                      "executors": sc._jsc.sc().getExecutorMemoryStatus().size() - 1}))
finally:
    spark.stop()
"""


def test_the_session_runs_on_the_master_the_setting_names(standalone_cluster, tmp_path):
    """LTCEVAL_SPARK_MASTER reaches a real standalone master: the application registers there,
    an executor on the worker builds the table, and it lands in the run's Spark warehouse."""
    url, web = standalone_cluster
    spark_dir = tmp_path / "spark"
    proc = subprocess.run([sys.executable, "-c", _ON_THE_MASTER, str(spark_dir)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, SPARK_MASTER_ENV: url})
    assert proc.returncode == 0, proc.stderr[-5000:]
    ran = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ran["master"] == url and ran["total"] == 999 * 1000 and ran["executors"] >= 1, ran
    deadline = time.monotonic() + 30
    while ran["app"] not in {a["id"] for a in _master_state(web)["completedapps"]}:
        assert time.monotonic() < deadline, f"{ran['app']} is not among the master's completed applications"
        time.sleep(1)
    assert list(table_path(spark_dir, "twice").glob("*.parquet"))
