"""Loading the synthetic extracts into a PostgreSQL server a test started (database sources)."""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa


def load_csv_as_text(engine, table: str, csv_path, typed_dates=()) -> None:
    """A landing CSV into a table of text columns (COPY); the ``typed_dates`` columns then DATE."""
    header = pd.read_csv(csv_path, nrows=0).columns
    with engine.begin() as con:
        con.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        con.execute(sa.text(f'CREATE TABLE "{table}" (' + ", ".join(f'"{c}" text' for c in header) + ")"))
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, open(csv_path, encoding="utf-8") as fh:
            cur.copy_expert(f'COPY "{table}" FROM STDIN WITH (FORMAT csv, HEADER true)', fh)
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as con:
        for c in typed_dates:
            con.execute(sa.text(f'ALTER TABLE "{table}" ALTER COLUMN "{c}" TYPE date USING "{c}"::date'))
