"""Number formatting for the report, the figures and the text summaries (one place)."""
from __future__ import annotations

import pandas as pd

NOT_ESTIMABLE = "not estimable"


def _missing(x) -> bool:
    return x is None or (not isinstance(x, str) and bool(pd.isna(x)))


def gbp(x) -> str:
    """Whole pounds with thousands separators, the minus before the sign: -£1,234."""
    if _missing(x):
        return NOT_ESTIMABLE
    return f"-£{abs(x):,.0f}" if x < 0 else f"£{x:,.0f}"


def num(x, digits: int = 2) -> str:
    """A number with thousands separators; strings (suppressed "*") pass through; NaN -> ""."""
    if isinstance(x, str):
        return x
    if _missing(x):
        return ""
    return f"{x:,.{digits}f}"


def published_num(x) -> str:
    """A published number (already rounded by evaluation.disclosure) at its own precision, no
    more digits than it has: 0.0361, 0.4, 51, 1,020; "*" passes through; NaN -> "". Padding
    0.4 to "0.40" would claim a precision the figure was rounded away from."""
    if isinstance(x, str):
        return x
    if _missing(x):
        return ""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,}"


def fmt_ci(lo, hi, digits: int = 2, money: bool = False) -> str:
    """An interval as "lo to hi", in pounds or as numbers."""
    if money:
        return f"{gbp(lo)} to {gbp(hi)}"
    return f"{num(lo, digits)} to {num(hi, digits)}"


def signed_ci(lo, hi, digits: int = 2) -> str:
    """An interval of signed ratios (returns per £1): "+0.12 to -0.40"."""
    return f"{lo:+.{digits}f} to {hi:+.{digits}f}"
