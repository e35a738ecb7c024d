"""core.spark's session settings are dbt's Spark target's: the matching step and the identifiable
zone on Spark see the tables dbt builds."""
from pathlib import Path

import pytest
import yaml

from core.settings import DBT_PROJECT_DIR, DEFAULT_SPARK_DRIVER_MEMORY, SPARK_DRIVER_MEMORY_ENV, spark_driver_memory
from core.spark import SPARK_SCHEMA, session_parameters


def test_the_session_settings_are_the_dbt_spark_targets(monkeypatch):
    monkeypatch.delenv(SPARK_DRIVER_MEMORY_ENV, raising=False)
    target = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["ltceval"]["outputs"]["spark"]
    spark_dir = "/some/run/analytical/spark"
    rendered = {k: str(v).replace("{{ env_var('LTCEVAL_SPARK_DIR', 'spark') }}", spark_dir)
                .replace(f"{{{{ env_var('{SPARK_DRIVER_MEMORY_ENV}', '{DEFAULT_SPARK_DRIVER_MEMORY}') }}}}",
                         DEFAULT_SPARK_DRIVER_MEMORY)
                for k, v in target["server_side_parameters"].items()}
    assert rendered == session_parameters(Path(spark_dir))
    monkeypatch.setenv(SPARK_DRIVER_MEMORY_ENV, "12G")
    assert session_parameters(Path(spark_dir))["spark.driver.memory"] == "12g"
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
