"""Source configuration (config/sources.yml) and reading of landing extracts.

Extracts are read as text: every column is a string (or missing), so validation sees what the
site sent, not what a parser guessed. CSV bytes that are not UTF-8 are decoded per row as
cp1252 (the usual legacy encoding of NHS extracts) and each such row is reported with its file
and line number, never its content.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ltceval.settings import REPO_ROOT

SOURCES_CONFIG_ENV = "LTCEVAL_SOURCES_CONFIG"
DEFAULT_SOURCES_CONFIG = REPO_ROOT / "config" / "sources.yml"
IDENTIFIER_ROLES = ("nhs_number", "forename", "surname", "dob", "sex", "postcode")
ACTIONS = ("quarantine", "nullify")
# Sources whose records carry person identifiers; gp_patients is the spine.
SPINE = "gp_patients"


class ExtractUnusable(RuntimeError):
    """A whole extract is unusable (missing file or columns, too many failing rows).

    Messages name the file, the rule and counts, never a value from the data."""


@dataclass(frozen=True)
class CodeRule:
    values: tuple[str, ...]
    action: str = "quarantine"


@dataclass(frozen=True)
class SourceSpec:
    table: str
    file: str
    record_id: str
    columns: tuple[str, ...]
    rename: dict = field(default_factory=dict)
    identifiers: dict = field(default_factory=dict)
    dates: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)
    numeric: dict = field(default_factory=dict)
    nhs_number_action: str = "nullify"
    parent: dict = field(default_factory=dict)

    @property
    def has_identifiers(self) -> bool:
        return bool(self.identifiers)


@dataclass(frozen=True)
class SourcesConfig:
    sources: dict[str, SourceSpec]
    quarantine_threshold: float = 0.20
    path: str = ""

    def __getitem__(self, table: str) -> SourceSpec:
        return self.sources[table]

    @property
    def identifier_sources(self) -> list[str]:
        return [t for t, s in self.sources.items() if s.has_identifiers]


def _check_action(table: str, what: str, action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"config: {table}.{what}: action must be one of {ACTIONS}, got {action!r}")
    return action


def load_sources_config(path: str | Path | None = None) -> SourcesConfig:
    """Load the YAML source config (default: $LTCEVAL_SOURCES_CONFIG or config/sources.yml)."""
    path = Path(path or os.environ.get(SOURCES_CONFIG_ENV) or DEFAULT_SOURCES_CONFIG)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    sources = {}
    for table, s in (raw.get("sources") or {}).items():
        columns = tuple(str(c) for c in s["columns"])
        record_id = str(s["record_id"])
        if record_id not in columns:
            raise ValueError(f"config: {table}: record_id {record_id} not in columns")
        identifiers = {str(k): str(v) for k, v in (s.get("identifiers") or {}).items()}
        for role, col in identifiers.items():
            if role not in IDENTIFIER_ROLES:
                raise ValueError(f"config: {table}: unknown identifier role {role!r}")
            if col not in columns:
                raise ValueError(f"config: {table}: identifier column {col} not in columns")
        if identifiers and set(identifiers) != set(IDENTIFIER_ROLES):
            raise ValueError(f"config: {table}: identifiers must name all of {IDENTIFIER_ROLES}")
        dates = {str(c): _check_action(table, f"dates.{c}", a) for c, a in (s.get("dates") or {}).items()}
        numeric = {str(c): _check_action(table, f"numeric.{c}", a)
                   for c, a in (s.get("numeric") or {}).items()}
        codes = {}
        for c, rule in (s.get("codes") or {}).items():
            codes[str(c)] = CodeRule(tuple(str(v) for v in rule["values"]),
                                     _check_action(table, f"codes.{c}", rule.get("action", "quarantine")))
        for c in list(dates) + list(numeric) + list(codes):
            if c not in columns:
                raise ValueError(f"config: {table}: rule column {c} not in columns")
        sources[str(table)] = SourceSpec(
            table=str(table), file=str(s["file"]), record_id=record_id, columns=columns,
            rename={str(k): str(v) for k, v in (s.get("rename") or {}).items()},
            identifiers=identifiers, dates=dates, codes=codes, numeric=numeric,
            nhs_number_action=_check_action(table, "nhs_number_action",
                                            s.get("nhs_number_action", "nullify")),
            parent={str(k): str(v) for k, v in (s.get("parent") or {}).items()},
        )
    if SPINE not in sources:
        raise ValueError(f"config: the spine table {SPINE} must be configured")
    return SourcesConfig(sources=sources,
                         quarantine_threshold=float(raw.get("quarantine_threshold", 0.20)),
                         path=str(path))


@dataclass
class ExtractRead:
    """One source as read from landing: all-string frame plus provenance."""

    table: str
    frame: pd.DataFrame
    files: list[dict]  # {file, sha256, rows, bytes}
    encoding_issues: list[dict]  # {file, line, fallback}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_files(landing: Path, spec: SourceSpec) -> list[Path]:
    pattern = str(landing / spec.file)
    files = sorted(Path(p) for p in glob.glob(pattern)
                   if Path(p).suffix.lower() in (".csv", ".parquet"))
    return files


def _decode_csv(data: bytes, fname: str) -> tuple[str, list[dict]]:
    """Decode CSV bytes as UTF-8; lines that are not UTF-8 fall back to cp1252 (latin-1 if
    even that fails) and are reported by line number."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    issues, lines = [], []
    for lineno, raw_line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw_line.decode("utf-8-sig" if lineno == 1 else "utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(raw_line.decode("cp1252"))
                fallback = "cp1252"
            except UnicodeDecodeError:
                lines.append(raw_line.decode("latin-1"))
                fallback = "latin-1"
            issues.append({"file": fname, "line": lineno, "fallback": fallback})
    return "".join(lines), issues


def _read_one(path: Path) -> tuple[pd.DataFrame, list[dict]]:
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
        for c in df.columns:
            s = df[c]
            if pd.api.types.is_datetime64_any_dtype(s):
                txt = s.dt.strftime("%Y-%m-%d")
            else:
                txt = s.astype(object).map(lambda v: None if v is None or (isinstance(v, float) and v != v)
                                           else str(v))
            df[c] = txt.astype(object).where(s.notna(), None)
        return df, []
    text, issues = _decode_csv(path.read_bytes(), path.name)
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                     quoting=csv.QUOTE_MINIMAL)
    return df, issues


def _blank_to_none(df: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for c in df.columns:
        vals = [None if v is None or (isinstance(v, float) and v != v) or str(v).strip() == ""
                else str(v).strip() for v in df[c].tolist()]
        out[c] = pd.Series(vals, index=df.index, dtype=object)
    return pd.DataFrame(out, index=df.index)


def read_extract(landing: Path, spec: SourceSpec) -> ExtractRead:
    """Read every file of one source, rename site columns to contract names and return an
    all-string frame (missing = None) with a fresh RangeIndex."""
    files = resolve_files(landing, spec)
    if not files:
        raise ExtractUnusable(f"{spec.table}: no file matches landing/{spec.file} (rule: file_present)")
    frames, infos, issues = [], [], []
    for f in files:
        df, enc = _read_one(f)
        df = df.rename(columns=spec.rename)
        df.columns = [str(c).strip() for c in df.columns]
        frames.append(df)
        issues.extend(enc)
        infos.append({"file": str(f.relative_to(landing)), "sha256": sha256_file(f),
                      "rows": int(len(df)), "bytes": f.stat().st_size})
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return ExtractRead(spec.table, _blank_to_none(frame), infos, issues)
