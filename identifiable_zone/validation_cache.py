"""Per-file validation results, cached by checksum so a monthly run validates only new files.

An entry lives under ``identifiable/validation_cache/<table>/<key>/`` and is complete or
absent (built in a temporary folder and renamed): the file's tables
(``cross_file_rules.PART_TABLES``, written by ``file_validation.validate_file``) and
``entry.json``, its metadata. Its key is the file's SHA-256 plus a digest
of everything else the result depends on: the file's path, the source's config, the
quarantine threshold and the validation code. On reading, an entry is refused when the latest
allowed date now judges one of its dates differently, or when the parent rows its life rules
read have changed. Entries no run has used are pruned at the end of a run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from core.files import read_json

# the modules whose code decides a file's validation result (and the layout of an entry)
_CODE_FILES = ("validate.py", "normalise.py", "sources.py", "file_validation.py", "cross_file_rules.py",
               "validation_cache.py", "mps.py")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _code_digest() -> str:
    import duckdb
    import great_expectations

    here = Path(__file__).resolve().parent
    # the libraries whose results an entry holds: GX's verdicts, DuckDB's row hashes
    h = hashlib.sha256(great_expectations.__version__.encode() + duckdb.__version__.encode())
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def parent_digest(spec, lookups: dict, entry: Path | None) -> str | None:
    """What the life rules of a file read from its parents: for each parent key the file's rows
    hold (its entry's ``rowkeys``), the parent's date as the rules see it (``lookups``, from
    ``validate.parent_dates``: missing if the parent row is missing or its id is not unique),
    hashed in key order. Per distinct key, not per row: a row's verdict depends on its key's
    date only, and GP appointments hold 20 rows a patient."""
    refs = spec.parent_date_refs
    if not refs:
        return None
    import pyarrow.parquet as pq

    from identifiable_zone.blocking import connection
    from identifiable_zone.cross_file_rules import table_files
    from identifiable_zone.validate import look_up

    files = [str(f) for f, _ in table_files(entry, "rowkeys")] if entry is not None else []
    names = set(pq.read_schema(files[0]).names) if files else set()
    h = hashlib.sha256()
    for ref in refs:
        lookup = lookups.get((ref.table, ref.column))
        h.update(json.dumps([ref.table, ref.column]).encode())
        fk = f"fk__{ref.key}"
        if lookup is None or fk not in names:
            h.update(b"not given")
            continue
        # spilling (it never should: a key a patient) stays in the identifiable zone, beside the entry
        with tempfile.TemporaryDirectory(prefix=".digest-", dir=entry.parent) as spill, connection(Path(spill)) as con:
            keys = con.execute(f'SELECT DISTINCT "{fk}" AS k FROM read_parquet(?) ORDER BY k NULLS LAST',
                               [files]).df()["k"].to_numpy(dtype=object)
        found = pd.Series(look_up(lookup, keys), dtype=object)
        for values in (pd.Series(keys, dtype=object), found):
            h.update(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
    return h.hexdigest()


class ValidationCache:
    """Validated files under ``root/<table>/<entry>/`` (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = root
        self.used: set[Path] = set()
        self._code = None

    @property
    def code(self) -> str:
        if self._code is None:
            self._code = _code_digest()
        return self._code

    def key(self, spec, cfg, rel: str, sha: str) -> str:
        spec_json = dataclasses.asdict(spec)
        spec_json.pop("file", None)
        return sha[:24] + "-" + digest([rel, spec_json, cfg.quarantine_threshold, self.code])[:16]

    def entry(self, table: str, key: str) -> Path:
        return self.root / table / key

    def get(self, table: str, key: str, latest: str, spec, lookups: dict) -> tuple[Path, dict] | None:
        """The entry folder and its metadata, or None when there is none or it no longer holds."""
        d = self.entry(table, key)
        meta_path = d / "entry.json"
        if not meta_path.exists():
            return None
        meta = read_json(meta_path)
        if meta["latest"] != latest and meta["max_date"] is not None and \
                meta["max_date"] > min(latest, meta["latest"]):
            return None  # a date in the file is judged differently by date_not_future now
        if parent_digest(spec, lookups, d) != meta.get("parents"):
            return None
        self.used.add(d)
        return d, meta

    @contextmanager
    def new_entry(self, table: str, key: str):
        """A temporary folder to build an entry in; it becomes the entry when the block ends
        without an error (written last, entry.json), and is removed otherwise."""
        d = self.entry(table, key)
        tmp = d.parent / f".{key}.tmp-{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        try:
            yield tmp
            if not (tmp / "entry.json").exists():
                raise RuntimeError(f"validation cache entry {table}/{key}: no entry.json written")
            if d.exists():
                shutil.rmtree(d)
            os.replace(tmp, d)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.used.add(d)

    def prune(self) -> None:
        if not self.root.is_dir():
            return
        for tdir in self.root.iterdir():
            for d in (tdir.iterdir() if tdir.is_dir() else ()):
                if d not in self.used:
                    shutil.rmtree(d, ignore_errors=True)
            if tdir.is_dir() and not any(tdir.iterdir()):
                tdir.rmdir()
