"""An attacker's reading of a published mean, rate or share: which whole counts of people could
be behind it, at the precision it is printed with. Shared by the disclosure tests.

A mean printed as text t is read as lying within half a unit of t's last non-zero digit
("0.0361" +/- 0.00005, "51.0" +/- 0.5, "1010.0" +/- 5): trailing zeros are not taken as
significant, so a figure is never read as more precise than it was printed (a reading finer
than the true precision could "find" a count the figure does not give). A count n fits the
mean when some whole k >= 0 gives unit * k / n within that interval. The published count R of
those people stands for R-2..R+2 (core.disclosure.possible_counts); a mean that fits only one
of them gives the count away.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from core.disclosure import SUPPRESSED, possible_counts, round_count, significant


def half_width(text: str) -> Decimal:
    """Half a unit of the last non-zero digit of a printed number."""
    d = Decimal(text.replace(",", "").replace("£", "")).normalize()  # normalize drops trailing zeros
    return Decimal(5) * Decimal(10) ** (d.as_tuple().exponent - 1)


def counts_fitting(text: str, candidates, unit: float = 1.0) -> set[int]:
    """The counts n among ``candidates`` for which some k / n (x ``unit``) prints as ``text``."""
    v = Decimal(text.replace(",", "").replace("£", ""))
    hw = half_width(text)
    lo, hi = float(abs(v) - hw), float(abs(v) + hw)
    fits = set()
    for n in candidates:
        k_lo = max(math.ceil(lo * n / unit - 1e-9), 0)
        if k_lo <= math.floor(hi * n / unit + 1e-9):
            fits.add(n)
    return fits


def pinned_count(text: str, published_count, unit: float = 1.0) -> int | None:
    """The one count a printed mean leaves possible among those its published count stands
    for, or None when it leaves more than one (or fits none: then it is not a mean of that
    many people at this step)."""
    if isinstance(text, str) and text.strip() in ("*", ""):
        return None
    text = str(text)
    if Decimal(text.replace(",", "").replace("£", "")) == 0:
        return None  # 0 = 0 / n for every n
    fits = counts_fitting(text, possible_counts(published_count), unit)
    return next(iter(fits)) if len(fits) == 1 else None


class Tables(HTMLParser):
    """Every <table> of a page as (header cells, body rows of cell texts)."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._rows = []
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._rows:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._rows is not None:
            rows = [r for r in self._rows if r]
            if rows:
                self.tables.append((rows[0], rows[1:]))
            self._rows = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, first_header: str) -> tuple[list[str], list[list[str]]]:
        found = [t for t in self.tables if t[0] and t[0][0] == first_header]
        assert found, f"no table headed {first_header!r}"
        return found[0]


# -- great-expectations outputs ------------------------------------------------------------------
# GX result keys that hold counts of rows (published only as core.disclosure.round_count gives them),
# that hold values of the data or exact tallies of them (never published), and percentages
# (published only as shares of the published counts)
GX_COUNT_KEYS = ("element_count", "unexpected_count", "missing_count")
GX_VALUE_KEYS = ("partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
                 "unexpected_list", "unexpected_index_list", "unexpected_index_query", "unexpected_rows",
                 "observed_value", "details")
GX_PERCENT_KEYS = {"unexpected_percent": "unexpected_count", "unexpected_percent_total": "unexpected_count",
                   "unexpected_percent_nonmissing": "unexpected_count", "missing_percent": "missing_count"}
# in a file other than JSON, any of these names is a GX result copied in
GX_TEXT_MARKERS = ("partial_unexpected", "unexpected_list", "unexpected_index", "observed_value")
# every GX Data Docs page carries one of these titles; the pages print exact counts and values
GX_DATA_DOCS_MARKERS = ("created by Great Expectations", "compiled by Great Expectations")


def _is_published_count(v) -> bool:
    return v is None or v == SUPPRESSED or (isinstance(v, int) and not isinstance(v, bool)
                                            and round_count(v) == v)


def _gx_json_problems(where: str, node) -> list[str]:
    problems: list[str] = []
    if isinstance(node, list):
        for i, x in enumerate(node):
            problems += _gx_json_problems(f"{where}[{i}]", x)
    elif isinstance(node, dict):
        for k in GX_COUNT_KEYS:
            if k in node and not _is_published_count(node[k]):
                problems.append(f"{where}.{k} = {node[k]!r} is not a rounded count")
        for k in GX_VALUE_KEYS:
            if node.get(k) not in (None, [], {}, ""):
                problems.append(f"{where}.{k} quotes the data: {str(node[k])[:80]}")
        for k, count_key in GX_PERCENT_KEYS.items():
            if k in node:
                expected = share_of_rounded_published(node.get(count_key, "?"), node.get("element_count", "?"))
                if node[k] != expected:
                    problems.append(f"{where}.{k} = {node[k]!r} is not the share of the published counts")
        for k, v in node.items():
            problems += _gx_json_problems(f"{where}.{k}", v)
    return problems


def share_of_rounded_published(part, whole):
    """A percentage computed from two published counts, as core.disclosure.share_of_rounded
    computes it from the true ones ("?" when a count is not published: then nothing fits)."""
    if "?" in (part, whole):
        return "?"
    if SUPPRESSED in (part, whole):
        return SUPPRESSED
    return None if not whole else significant(100 * part / whole)


def gx_disclosure_problems(root: Path) -> list[str]:
    """Every file under the published folder ``root`` that gives away what GX saw: a row count
    not rounded per core.disclosure, a percentage not computed from the rounded counts, a
    quoted value (unexpected values, observed values, value tallies), or a GX Data Docs page."""
    problems: list[str] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(root))
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # XLSX and images: written by the report code, not by GX
        if any(m in text for m in GX_DATA_DOCS_MARKERS):
            problems.append(f"{rel}: a GX Data Docs page (exact counts and values of the marts)")
        elif p.suffix == ".json":
            problems += _gx_json_problems(rel, json.loads(text))
        elif any(k in text for k in GX_COUNT_KEYS + GX_TEXT_MARKERS):
            problems.append(f"{rel}: holds GX result fields")
    return problems
