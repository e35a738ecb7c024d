"""Tables outside the identifiable zone as the identifier scans read them: every pseudonymised
table and every warehouse table and view, whole, as CSV text. Shared by the end-to-end scan and
the hostile-extract scan, so both read the zone's tables the same way."""
from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb


def tables_as_csv(pseudonymised: Path, warehouse: Path) -> list[str]:
    """DuckDB writes the CSV (pandas' astype(str).to_csv took a quarter of the scan at 20,000
    people), to a folder outside the run's (whose every file the key scan reads)."""
    texts = []
    with tempfile.TemporaryDirectory(prefix="ltceval-scan-") as tmp, \
            duckdb.connect(str(warehouse), read_only=True) as con:
        relations = [f"read_parquet('{p}')" for p in sorted(Path(pseudonymised).glob("*.parquet"))]
        relations += [f'"{t}"' for (t,) in con.execute("select table_name from information_schema.tables").fetchall()]
        assert len(relations) > 20, f"only {len(relations)} tables to scan: was the run's output read?"
        for i, relation in enumerate(relations):
            csv = Path(tmp) / f"{i}.csv"
            con.execute(f"copy (select * from {relation}) to '{csv}' (header)")
            texts.append(csv.read_text(encoding="utf-8", errors="replace"))
    return texts
