"""Log text for failure reports: the end of a process log, Airflow 3's JSON task logs made readable."""
from __future__ import annotations

import json
from pathlib import Path


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file, or why it cannot be read (a report must not fail)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text[-lines:])


def readable_task_log(text: str) -> str:
    """Airflow 3 task logs are JSON lines: show them as `time level event [error]`."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):  # plain text, or JSON that is no log record ("1", "[]")
            out.append(line)
            continue
        msg = f"{rec.get('timestamp', '')[11:19]} {rec.get('level', ''):7} {rec.get('event', '')}"
        for err in rec.get("error_detail") or []:
            msg += f"\n    {err.get('exc_type')}: {err.get('exc_value')}"
        out.append(msg)
    return "\n".join(out)
