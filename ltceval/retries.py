"""Retry settings of the DAG tasks, and how a PublishError becomes an Airflow failure.

A retry helps only where the failure can be transient: file-system hiccups (network storage),
a lock held by another publisher, a secrets backend that is briefly unavailable. It cannot
help a data-quality gate, a failed validation, a statistical model or a dbt model/test (same
input, same result), so those tasks have none; and full disks or permission errors fail at
once (``core.errors.PublishError`` with ``retryable=False``).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from core.errors import PublishError

IO_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": 2.0,
              "max_retry_delay": timedelta(minutes=5)}
NO_RETRIES = {"retries": 0}


@contextmanager
def airflow_retry_policy():
    """In an Airflow task: a PublishError that a retry cannot fix fails the task at once."""
    try:
        yield
    except PublishError as e:
        if e.retryable:
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"PublishError: {e}") from e
