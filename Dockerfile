# Airflow image with the project's locked dependencies (uv.lock), for docker-compose.yml.
# Only the code the DAGs need is copied (never .env, secrets/, ltceval-out/ or .venv/); the
# data zones are volumes mounted at /data/<zone> (created here, owned by the airflow user, so
# new named volumes start with that ownership).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/ltceval-venv \
    UV_LINK_MODE=copy \
    AIRFLOW_HOME=/opt/airflow \
    PATH=/opt/ltceval-venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9 && useradd --create-home --uid 50000 --gid 0 airflow
WORKDIR /opt/ltceval
COPY pyproject.toml uv.lock README.md ./
# bytecode compiled at install: PYTHONDONTWRITEBYTECODE would otherwise make every task
# process compile the stack again (about 9 s of its start)
RUN uv sync --frozen --no-dev --no-install-project --no-cache --compile-bytecode
COPY core ./core
COPY ltceval ./ltceval
COPY synthetic ./synthetic
COPY identifiable_zone ./identifiable_zone
COPY evaluation ./evaluation
COPY expectations ./expectations
COPY dags ./dags
COPY dbt_project ./dbt_project
COPY config ./config
COPY ops ./ops
RUN uv sync --frozen --no-dev --no-cache --compile-bytecode \
    && rm -rf dbt_project/target dbt_project/logs \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth \
       /data/landing /data/identifiable /data/analytical /data/reports \
    && chown -R airflow:0 /opt/ltceval /opt/airflow /data \
    && chmod -R g=u /opt/ltceval /opt/airflow /data \
    && chmod 0750 /data/landing /data/identifiable
USER 50000
