# Airflow image with the project's locked dependencies (uv.lock), for docker-compose.yml.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/ltceval-venv \
    AIRFLOW_HOME=/opt/airflow \
    PATH=/opt/ltceval-venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9 && useradd --create-home --uid 50000 airflow
WORKDIR /opt/ltceval
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev && mkdir -p /opt/airflow /data && chown -R airflow /opt/ltceval /opt/airflow /opt/ltceval-venv /data
USER airflow
