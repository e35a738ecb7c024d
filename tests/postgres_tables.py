"""Loading the synthetic extracts into a PostgreSQL server a test started, and the sources
config that reads them from there (database sources)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import yaml

from identifiable_zone.sources import DEFAULT_SOURCES_CONFIG


def database_sources_config(folder: Path, database: dict[str, dict]) -> Path:
    """The default sources config with each source in ``database`` read from a database (its
    `database` entry) instead of its file, written to ``folder``/sources_database.yml."""
    raw = yaml.safe_load(DEFAULT_SOURCES_CONFIG.read_text())
    for table, how in database.items():
        raw["sources"][table].pop("file")
        raw["sources"][table]["database"] = how
    path = Path(folder) / "sources_database.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


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
