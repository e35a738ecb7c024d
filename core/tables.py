"""Tables a user hands to a command (CSV or Parquet), read and checked with one-line errors
that name the file and the column."""
from __future__ import annotations

from pathlib import Path

from core.errors import LtcevalError

TABLE_SUFFIXES = (".csv", ".parquet")


def check_table_path(path: Path, what: str) -> None:
    """The file exists and is CSV or Parquet, else LtcevalError naming it."""
    if not path.is_file():
        raise LtcevalError(f"{what} {path}: no such file")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise LtcevalError(f"{what} {path}: unsupported type {path.suffix or '(none)'}; use .csv or .parquet")


def read_table(path: Path, what: str):
    """A CSV or Parquet table with stripped column names; any problem is one LtcevalError line."""
    import pandas as pd

    check_table_path(path, what)
    try:
        df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise LtcevalError(f"{what} {path}: empty file") from None
    except Exception as e:  # unreadable Parquet, malformed CSV: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise LtcevalError(f"{what} {path}: cannot read ({first})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise LtcevalError(f"{what} {path}: no rows")
    return df


def require_columns(df, needed, where: str) -> None:
    """Every column of ``needed`` is in ``df``, else LtcevalError listing the missing ones and the
    columns there are (``where`` names the file, e.g. "data file x.csv")."""
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise LtcevalError(f"{where}: column(s) not found: {', '.join(missing)} "
                           f"(columns are: {', '.join(map(str, df.columns[:30]))})")
