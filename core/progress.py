"""Progress lines of the long stages (validation, linkage, pseudonymisation; dbt's nodes): one log line per
unit of work done, e.g. ``validate: gp_appointments 3/5 files, 1,200,000 rows``, so that a
20-minute run is never a silent wait.

They go through ``logging`` (logger ``ltceval.progress``), so an Airflow task log shows them
wherever the task runs; ``ltceval run`` relays them from its DAG logs to the terminal
(``progress_message``), and ``benchmarks/scale.py`` from its stage logs. Counts and names of
sources only: never an identifier.
"""
from __future__ import annotations

import logging
import re

LOGGER = "ltceval.progress"
_log = logging.getLogger(LOGGER)

# a line of a task log written by this logger: structlog's console format (Airflow 3 task logs,
# "<time> [info     ] <message> [ltceval.progress] loc=..."), or "<message> [ltceval.progress]"
_TAG = f" [{LOGGER}]"
_STRUCTLOG_HEAD = re.compile(r"^\S+\s+\[\w+\s*\]\s+")


def report(stage: str, message: str, *args) -> None:
    """Log ``<stage>: <message % args>`` as a progress line."""
    _log.info("%s: " + message, stage, *args)


# dbt's own line for each model or seed the analytical DAG's one `dbt build` finishes, as cosmos'
# watcher relays it into the task log ("12 of 166 OK created sql table model main.<name> ...");
# without it the analytical DAG was six silent minutes of `ltceval run` at 2 million people
_DBT_TAG = " [cosmos.operators._watcher.base]"
_DBT_NODE = re.compile(r"\b(\d+) of (\d+) (OK created|OK loaded|ERROR creating|ERROR loading) "
                       r".*?\b(model|seed file) \w+\.(\w+)")


def progress_message(line: str) -> str | None:
    """The message of a progress line as a log shows it (``validate: ...``), else None."""
    line = line.rstrip("\n")
    head, tag, _ = line.partition(_TAG)
    if tag:
        return _STRUCTLOG_HEAD.sub("", head, count=1).strip()
    if _DBT_TAG in line:
        node = _DBT_NODE.search(line)
        if node:
            done, total, outcome, kind, name = node.groups()
            kind = "seed" if kind == "seed file" else kind
            return f"dbt build: {done} of {total} nodes, {kind} {name} " + \
                ("built" if outcome.startswith("OK") else "FAILED")
    return None
