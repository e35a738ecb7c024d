"""Per-file validation results, cached by checksum so a monthly run validates only new files.

An entry lives under ``identifiable/validation_cache/<table>/<key>/`` and is complete or
absent (built in a temporary folder and renamed). Its key is the file's SHA-256 plus a digest
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
import uuid
from pathlib import Path

import pandas as pd

from core.files import read_json, write_json_atomic

# the modules whose code decides a file's validation result
_CODE_FILES = ("validate.py", "normalise.py", "sources.py")
ENTRY_TABLES = ("accepted", "quarantine", "dq_flags", "rowkeys")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _code_digest() -> str:
    import great_expectations

    here = Path(__file__).resolve().parent
    h = hashlib.sha256(great_expectations.__version__.encode())
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def parent_digest(spec, parents: dict, keys: pd.DataFrame | None) -> str | None:
    """What the life rules of a file read from its parents: for each of the file's rows, the
    parent's date (None if the parent row is missing or its id is not unique)."""
    refs = spec.parent_date_refs
    if not refs:
        return None
    parts = []
    for ref in refs:
        parent = parents.get(ref.table)
        if parent is None or keys is None or f"fk__{ref.key}" not in keys.columns:
            parts.append([ref.table, ref.column, "not given"])
            continue
        p = parent[[ref.parent_id, ref.column]].dropna(subset=[ref.parent_id])
        p = p[~p[ref.parent_id].duplicated(keep=False)]
        lookup = dict(zip(p[ref.parent_id].tolist(), p[ref.column].tolist()))
        parts.append([ref.table, ref.column, [lookup.get(k) for k in keys[f"fk__{ref.key}"].tolist()]])
    return digest(parts)


def write_text_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Rows as text (row numbers, line numbers and row hashes stay integers)."""
    frame.astype({c: "string" for c in frame.columns if c not in ("row", "line", "row_hash")}).to_parquet(
        path, index=False)


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

    def get(self, table: str, key: str, latest: str, spec, parents: dict):
        d = self.root / table / key
        meta_path = d / "entry.json"
        if not meta_path.exists():
            return None
        meta = read_json(meta_path)
        if meta["latest"] != latest and meta["max_date"] is not None and \
                meta["max_date"] > min(latest, meta["latest"]):
            return None  # a date in the file is judged differently by date_not_future now
        keys = pd.read_parquet(d / "rowkeys.parquet")
        if parent_digest(spec, parents, keys) != meta.get("parents"):
            return None
        self.used.add(d)
        return {"accepted": pd.read_parquet(d / "accepted.parquet"),
                "quarantine": pd.read_parquet(d / "quarantine.parquet"),
                "dq_flags": pd.read_parquet(d / "dq_flags.parquet"),
                "rowkeys": keys, "summary": meta["summary"]}

    def put(self, table: str, key: str, entry: dict, meta: dict) -> None:
        d = self.root / table / key
        tmp = d.parent / f".{key}.tmp-{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        try:
            for name in ENTRY_TABLES:
                write_text_parquet(entry[name], tmp / f"{name}.parquet")
            write_json_atomic(tmp / "entry.json", meta)
            if d.exists():
                shutil.rmtree(d)
            os.replace(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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
