"""Test-wide settings: an Airflow home of its own (SQLite) before anything imports Airflow."""
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_airflow_home = Path(tempfile.mkdtemp(prefix="ltceval-test-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_airflow_home))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_airflow_home / 'airflow.db'}")
