"""Small-number suppression for published counts (disclosure control below national level).

Rules (methods reference): 0 stays 0; counts 1-7 become "*"; other counts are rounded to the
nearest 5 (halves round up, so 8 -> 10, 12 -> 10, 13 -> 15); rates and means based on 1-7
people are suppressed; percentages are computed from rounded figures.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

SUPPRESSED = "*"
MAX_SUPPRESSED = 7


def suppress_count(n) -> int | str:
    """Apply the rule to one count. Missing values pass through as None."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return None
    if float(n) != int(n) or n < 0:
        raise ValueError(f"not a count: {n!r}")
    n = int(n)
    if n == 0:
        return 0
    if n <= MAX_SUPPRESSED:
        return SUPPRESSED
    return int(5 * math.floor(n / 5 + 0.5))


def suppress_counts(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Return a copy with the given count columns suppressed (object dtype where needed)."""
    out = df.copy()
    for c in columns:
        out[c] = pd.Series([suppress_count(v) for v in df[c]], index=df.index, dtype=object)
    return out


def suppress_statistic(value, n_people):
    """A rate or mean based on 1-7 people is suppressed; otherwise returned unchanged."""
    if n_people is not None and 1 <= int(n_people) <= MAX_SUPPRESSED:
        return SUPPRESSED
    return value


def rounded_percentage(part, whole) -> float | str:
    """Percentage from rounded counts; suppressed if either count is suppressed."""
    p, w = suppress_count(part), suppress_count(whole)
    if SUPPRESSED in (p, w) or not w:
        return SUPPRESSED
    return 100.0 * p / w
