"""Data periods: a run is identified by the last month with recorded activity (``YYYY-MM``)."""
from __future__ import annotations

import re
from datetime import date, timedelta

from core.errors import PublishError
from core.settings import PERIOD_ENV, env_value

PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_period(text: str) -> str:
    """``YYYY-MM`` (checked), else PublishError."""
    value = str(text).strip()
    if not PERIOD_PATTERN.match(value):
        raise PublishError(f"data period must be YYYY-MM (e.g. 2024-03), got {text!r}")
    return value


def period_of(iso_date: str) -> str:
    """The period (month) of an ISO date."""
    return parse_period(str(iso_date)[:7])


def period_end(period: str) -> str:
    """Last day of the period, ISO."""
    y, m = (int(x) for x in parse_period(period).split("-"))
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return (nxt - timedelta(days=1)).isoformat()


def requested_period() -> str | None:
    """The period asked for explicitly (env LTCEVAL_PERIOD), or None."""
    value = (env_value(PERIOD_ENV) or "").strip()
    return parse_period(value) if value else None
