"""core.spark's session settings are dbt's Spark target's: the matching step and the identifiable
zone on Spark see the tables dbt builds."""
from pathlib import Path

import yaml

from core.settings import DBT_PROJECT_DIR
from core.spark import SPARK_SCHEMA, session_parameters


def test_the_session_settings_are_the_dbt_spark_targets():
    target = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["ltceval"]["outputs"]["spark"]
    spark_dir = "/some/run/analytical/spark"
    rendered = {k: str(v).replace("{{ env_var('LTCEVAL_SPARK_DIR', 'spark') }}", spark_dir)
                for k, v in target["server_side_parameters"].items()}
    assert rendered == session_parameters(Path(spark_dir))
    assert target["schema"] == SPARK_SCHEMA
