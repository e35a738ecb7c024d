"""Checks shared by the formula-injection tests: hostile text cells, and readers of a written
CSV or XLSX that fail on any cell a spreadsheet would run as a formula."""
from __future__ import annotations

import csv
from pathlib import Path

import openpyxl

from core.spreadsheets import FORMULA_TRIGGERS

HOSTILE = ['=HYPERLINK("http://example.invalid/?x","click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1", "=1+1"]


def assert_csv_inert(path: Path) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) > 1
    for row in rows:
        for cell in row:
            try:
                float(cell)  # a number, negative or not: a spreadsheet reads it as one
                continue
            except ValueError:
                pass
            assert not cell.startswith(FORMULA_TRIGGERS), f"{path.name}: a text cell starts with a formula trigger: {cell[:12]!r}"


def assert_xlsx_inert(path: Path) -> dict[str, list[tuple]]:
    wb = openpyxl.load_workbook(path)
    values = {}
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", f"{ws.title}!{c.coordinate} is a formula"
                if isinstance(c.value, str):
                    assert not c.value.startswith(FORMULA_TRIGGERS), f"{ws.title}!{c.coordinate} starts with a trigger"
        values[ws.title] = [tuple(r) for r in ws.iter_rows(values_only=True)]
    return values
