"""The environment every Airflow process of the stack (api-server, scheduler, dag-processor,
triggerer) runs with."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.settings import DAGS_DIR, KEY_FILE_ENV, OUT_ENV
from ops.local_ports import free_port


def airflow_env(home: Path, out: Path, db_url: str, api_port: int, key_file: Path,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every Airflow process: our own home, Postgres, LocalExecutor, small and fast.

    Inherited AIRFLOW*/LTCEVAL_* variables (e.g. the test suite's SQLite settings) are dropped.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LTCEVAL_"))}
    base_url = f"http://127.0.0.1:{api_port}"
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # one secret set for every component (they share the home, but be explicit)
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # two cores: two task processes at a time
        "AIRFLOW__CORE__PARALLELISM": "2",
        # each DAG file is parsed once at start (and by each task process); no periodic re-parse
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "240",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        # a task's supervisor waits up to this long (seconds) between looks at its process:
        # when the process closes its sockets just before it exits, the exit is seen only after
        # that wait, so about half the analytical DAG's sub-second sensor tasks held their
        # executor slot 5.3 s at the default 5 (Airflow 3.3); at 1, one heartbeat a second
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        # cosmos keeps dbt's partial-parse file in a cache folder, /tmp/cosmos by default: shared
        # with any other cosmos user on the machine, whose profile (warehouse path) differs and
        # forces a full dbt parse on every task; ours is private
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
        # no usage telemetry from cosmos or dbt (and no waiting on blocked networks); Airflow 3
        # collects none (its [usage_data_collection] option went with Airflow 2)
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # the dbt producer task never retries: no Variable write per dbt node (as ltceval.run)
        "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
        # the analytical DAG's `dbt ls` kept in an Airflow Variable: the dag-processor and each
        # of its task processes parse the DAG file without running dbt ls again (as ltceval.run)
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS": "True",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
        # the pipeline
        OUT_ENV: str(out),
        KEY_FILE_ENV: str(key_file),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env
