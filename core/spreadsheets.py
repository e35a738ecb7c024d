"""Every CSV and XLSX file the project writes goes through here, so that no text cell can be
taken for a formula by a spreadsheet (CSV or formula injection, the OWASP rule).

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written
with a single quote in front of it: Excel, LibreOffice and Google Sheets then show it as text
and never evaluate it. Numbers are not text: they are written as numbers, negative ones
included. Column names are cells too and get the same treatment.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralise(value):
    """A text value that a spreadsheet would read as a formula, quoted; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return QUOTE + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text cell and column name neutralised; numeric columns are
    left alone (a text cell can only be in an object, string or category column)."""
    out = df.copy()
    for i, col in enumerate(df.columns):
        s = df.iloc[:, i]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
                or pd.api.types.is_datetime64_any_dtype(s)):
            out.isetitem(i, pd.Series([neutralise(v) for v in s.astype(object)], index=df.index, dtype=object))
    out.columns = [neutralise(c) for c in df.columns]
    return out


def write_csv(df: pd.DataFrame, path: Path, **kwargs) -> Path:
    """``df.to_csv(path, index=False)`` with text cells neutralised. Lines end in CRLF (RFC
    4180, the csv module's default): pandas' default "\n" left a carriage return inside a
    field unquoted, and readers split the row there."""
    neutralise_frame(df).to_csv(path, index=False, **{"lineterminator": "\r\n", **kwargs})
    return Path(path)


def xlsx_engine() -> str | None:
    """The XLSX writer installed (openpyxl or xlsxwriter), or None."""
    import importlib.util

    return next((e for e in ("openpyxl", "xlsxwriter") if importlib.util.find_spec(e)), None)


def write_xlsx(path: Path, sheets: dict[str, pd.DataFrame]) -> Path | None:
    """One workbook, a sheet per frame (names cut to Excel's 31 characters), text cells
    neutralised and numbers kept as numbers; None (nothing written) without an XLSX writer."""
    engine = xlsx_engine()
    if engine is None:
        return None
    # xlsxwriter turns any string starting with "=" into a formula unless told not to; openpyxl
    # does the same (data type "f"): neutralised text never starts with "=", this is a second lock
    kw = {"engine_kwargs": {"options": {"strings_to_formulas": False}}} if engine == "xlsxwriter" else {}
    with pd.ExcelWriter(path, engine=engine, **kw) as xw:
        for name, df in sheets.items():
            neutralise_frame(df).to_excel(xw, sheet_name=name[:31], index=False)
    return Path(path)
