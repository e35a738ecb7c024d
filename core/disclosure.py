"""Small-number rules shared by everything published (business case, IG report, GX summary):
counts, and the means, rates and shares derived from them. docs/disclosure-policy.md states them.

- A count of 0 stays 0; 1-7 becomes "*"; any other count is rounded to the nearest 5 (halves
  up). A published count R therefore stands for any count from R-2 to R+2.
- A share is computed from the rounded counts (it then says nothing the counts do not), to
  three significant figures.
- A mean or rate over n people is "*" when n is 1-7. Otherwise it is printed to at most three
  significant figures, and never finer than unit / (R-2), R the published (rounded) n: printed
  that coarsely, the value is consistent with k / n for some whole k at every n from R-2 to
  R+2, so it cannot tell which of them is the true count (a mean of 3/83 printed in full, or
  to three figures as 0.0361, leaves n = 83 as the only count it fits). ``unit`` is the
  smallest step of the total being averaged (1 for counts of people or events, the unit cost
  for a mean cost of contacts).
Estimates keep their full precision inside the pipeline; only what is published is rounded.
"""
from __future__ import annotations

import math

SUPPRESSED = "*"
MAX_SUPPRESSED = 7
ROUNDING_BASE = 5
SIGNIFICANT_FIGURES = 3


def _missing(x) -> bool:
    try:
        return x is None or bool(math.isnan(x))
    except TypeError:  # pd.NA and other markers of a missing value
        return str(x) in ("<NA>", "NaT")


def round_count(n) -> int | str | None:
    """One count, published: 0, "*" for 1-7, else the nearest multiple of 5. None stays None."""
    if _missing(n):
        return None
    if float(n) != int(n) or n < 0:
        raise ValueError(f"not a count: {n!r}")
    n = int(n)
    if n == 0:
        return 0
    if n <= MAX_SUPPRESSED:
        return SUPPRESSED
    return int(ROUNDING_BASE * math.floor(n / ROUNDING_BASE + 0.5))


def possible_counts(published) -> range:
    """Every true count that publishes as ``published`` (a rounded count, 0 or "*")."""
    if published == SUPPRESSED:
        return range(1, MAX_SUPPRESSED + 1)
    r = int(published)
    return range(0, 1) if r == 0 else range(max(r - 2, MAX_SUPPRESSED + 1), r + 3)


def _round_to_exponent(x: float, exponent: int) -> float:
    """``x`` rounded to a multiple of 10**exponent, as the float closest to that decimal (a
    negative value rounded to zero is 0, not -0)."""
    return float(round(x, -exponent)) + 0.0


def _significant_exponent(x: float, digits: int) -> int:
    return math.floor(math.log10(abs(x))) - digits + 1


def significant(x, digits: int = SIGNIFICANT_FIGURES):
    """``x`` to ``digits`` significant figures (a model estimate, a p-value, a cost); missing
    and infinite values, and text such as "*", pass through."""
    if isinstance(x, str) or _missing(x) or math.isinf(x) or x == 0:
        return x
    return _round_to_exponent(float(x), _significant_exponent(x, digits))


def published_mean(value, n_people, unit: float = 1.0):
    """A mean or rate over ``n_people`` people, published (see the module's docstring)."""
    n = round_count(n_people)
    if n == SUPPRESSED:
        return SUPPRESSED
    if isinstance(value, str) or _missing(value) or not n or math.isinf(value):
        return value
    coarsest = math.ceil(math.log10(unit / min(possible_counts(n))))
    if value == 0:
        return 0.0
    return _round_to_exponent(float(value), max(coarsest, _significant_exponent(value, SIGNIFICANT_FIGURES)))


def share_of_rounded(part, whole, scale: float = 100.0):
    """``part`` as a share of ``whole`` (a percentage by default), computed from the rounded
    counts; "*" when either count is 1-7, None when ``whole`` is 0."""
    p, w = round_count(part), round_count(whole)
    if SUPPRESSED in (p, w):
        return SUPPRESSED
    if not w:
        return None
    return significant(scale * p / w)
