"""ops.log_files on real files: the tail of a log, and Airflow 3 task logs made readable (the
start of a real task log of the stack, data/task_log_validate.log, and a failure record whose
error_detail structlog's own transformer writes, as Airflow's task logger does)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from structlog.tracebacks import ExceptionDictTransformer

from ops.log_files import readable_task_log, tail

TASK_LOG = Path(__file__).parent / "data" / "task_log_validate.log"


def test_tail_gives_the_last_lines_or_why_it_cannot(tmp_path):
    log = tmp_path / "proc-scheduler.log"
    log.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    assert tail(log, 3) == "line 98\nline 99\nline 100"
    assert tail(log, 500) == log.read_text().rstrip("\n")
    assert tail(tmp_path / "never-written.log").startswith(f"(cannot read {tmp_path / 'never-written.log'}: ")


def test_a_real_task_log_reads_as_time_level_event():
    lines = readable_task_log(TASK_LOG.read_text()).splitlines()
    assert lines[0] == "21:29:34 info    ::group::Pre Execute"
    assert ("21:29:39 warning gp_patients: 3 row(s) fail rule nhs_number_modulus11 on NHSNumber "
            "(first at gp_patients.csv line 37): kept, reported only") in lines
    assert not any(line.lstrip().startswith("{") for line in lines)  # no raw JSON left


def _failure_record() -> str:
    try:
        try:
            raise FileNotFoundError("landing/gp_patients.csv")
        except FileNotFoundError as exc:
            raise ValueError("the extract is missing") from exc
    except ValueError:
        detail = ExceptionDictTransformer(show_locals=False)(sys.exc_info())
    return json.dumps({"timestamp": "2026-12-01T21:30:01.250000Z", "level": "error",
                       "event": "Task failed with exception", "error_detail": detail, "logger": "task"})


def test_a_failure_shows_each_exception_and_other_lines_stay_as_they_are():
    text = "\n".join([_failure_record(), "Traceback (most recent call last):", "[]"])
    assert readable_task_log(text).splitlines() == [
        "21:30:01 error   Task failed with exception",
        "    ValueError: the extract is missing",
        "    FileNotFoundError: landing/gp_patients.csv",
        "Traceback (most recent call last):",
        "[]",
    ]
