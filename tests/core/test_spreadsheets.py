"""Formula injection: every CSV and XLSX the project writes shows hostile text as text, and
numbers (negative ones too) as numbers."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest
from spreadsheet_checks import HOSTILE, assert_csv_inert, assert_xlsx_inert

from core.spreadsheets import neutralise, write_csv, write_xlsx

REPO = Path(__file__).resolve().parents[2]


def hostile_frame() -> pd.DataFrame:
    n = len(HOSTILE)
    return pd.DataFrame({
        "practice_code": HOSTILE,                                    # object column of text
        "label": pd.Series(HOSTILE[::-1], dtype="string"),           # pandas string column
        "category": pd.Categorical(HOSTILE),                         # category column
        "n_treated": ["*", 10, 0, "*", 15, 20, 25],                  # counts and "*" mixed
        "estimate": [-1.5, -0.25, 3.0, -100.0, 0.5, -7.0, 2.0],      # negative numbers: not text
        "mixed": [-5, "-5x", -2.5, "text", None, "=A1", 7],              # numbers beside text
        "=hostile header": range(n),
    })


def test_hostile_text_is_quoted_and_numbers_stay_numbers(tmp_path):
    df = hostile_frame()
    write_csv(df, tmp_path / "t.csv")
    assert_csv_inert(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert len(rows) == len(df)  # a carriage return in a field did not split its row
    col = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    assert col["practice_code"] == ["'" + v for v in HOSTILE]  # the text kept, only quoted
    assert [float(v) for v in col["estimate"]] == list(df["estimate"])
    assert header[-1] == "'=hostile header"

    name = "a_sheet_name_longer_than_thirty_one_characters"
    write_xlsx(tmp_path / "t.xlsx", {name: df})
    sheet = assert_xlsx_inert(tmp_path / "t.xlsx")[name[:31]]
    header, rows = sheet[0], sheet[1:]
    col = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    assert col["estimate"] == list(df["estimate"])                   # numbers, not text
    assert col["mixed"][0] == -5 and col["mixed"][2] == -2.5 and col["mixed"][6] == 7
    assert col["mixed"][1] == "'-5x" and col["mixed"][5] == "'=A1"
    assert col["n_treated"] == ["*", 10, 0, "*", 15, 20, 25]
    # XML keeps no bare carriage return: the workbook holds it as a line feed
    assert col["practice_code"] == ["'" + v.replace("\r", "\n") for v in HOSTILE]


@pytest.mark.parametrize("value,expected", [
    ("=1", "'=1"), ("+1", "'+1"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("Y10000", "Y10000"), ("'=1", "'=1"), ("", ""), (-3, -3), (-2.5, -2.5), (None, None)])
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def test_no_module_writes_csv_or_xlsx_around_the_helper():
    """The class, not the example: any new writer of CSV or XLSX has to use core.spreadsheets."""
    writer = re.compile(r"\.to_csv\(|\.to_excel\(|ExcelWriter\(|csv\.writer\(|csv\.DictWriter\(|"
                        r"xlsxwriter\.Workbook\(|openpyxl\.Workbook\(|COPY\s.*\bTO\b")
    offenders = []
    for folder in ("core", "evaluation", "identifiable_zone", "ltceval", "dags", "expectations"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "spreadsheets.py" and path.parent.name == "core":
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                # a CSV made in memory to hash a table's content is not a file anybody opens
                if writer.search(line) and "hashlib" not in line and "text = t.to_csv(index=False" not in line:
                    offenders.append(f"{path.relative_to(REPO)}:{i}")
    assert not offenders, f"CSV/XLSX written without core.spreadsheets: {offenders}"
