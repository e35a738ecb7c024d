"""One landing file validated into a folder of Parquet tables, in bounded memory.

A CSV file larger than ``core.settings.validation_segment_bytes()`` (128 MiB unless
``LTCEVAL_VALIDATION_SEGMENT_MIB`` says otherwise) is read in segments of whole lines: a first
pass counts the date formats of the whole file (a column's main format is the file's, not a
segment's), then each segment is validated on its own (``validate.validate_source``) and
written out, and the segments are combined on disk (``cross_file_rules.combine_parts``: exact
duplicates and record ids repeated across segments). The result is the one validating the
whole file in one go gives; only a segment is held in memory. Smaller files, Parquet files
and CSV files that are not one record a line (a quoted line break) are read whole.

The folder (a validation cache entry) holds ``accepted`` (with ``__row``, the row in the
file), ``quarantine``, ``dq_flags`` and ``rowkeys`` (``cross_file_rules.PART_TABLES``).
"""
from __future__ import annotations

import dataclasses
import glob
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from core import progress
from core.files import sha256_file
from core.settings import validation_segment_bytes
from identifiable_zone import normalise as nz
from identifiable_zone.cross_file_rules import ROW, VALID_NHS, Part, combine_parts, write_text_parquet
from identifiable_zone.sources import (SPINE, ExtractRead, ExtractUnusable, NotSegmentable,
                                       csv_segments, read_extract)
from identifiable_zone.validate import (add_format_counts, check_quarantine_threshold, date_format_counts,
                                        log_findings, main_date_format, parent_dates, validate_source)


def _max_date(frame: pd.DataFrame, spec) -> str | None:
    best = None
    for col in spec.dates:
        if col in frame.columns:
            latest = nz.parse_date(frame[col]).max()  # ISO text of the one latest date, not of every row
            if pd.notna(latest) and (best is None or latest.date().isoformat() > best):
                best = latest.date().isoformat()
    return best


def row_keys(df: pd.DataFrame, spec, lines) -> pd.DataFrame:
    """One row per input row: what the rules across parts and the cache's parent check read."""
    keys = pd.DataFrame({
        "row": pd.Series(range(len(df)), dtype="int64"),
        "record_id": df[spec.record_id].astype(object),
        "row_hash": pd.util.hash_pandas_object(df.astype(object), index=False).astype("uint64"),
        "line": pd.Series(lines, dtype="int64")})
    for ref in spec.parent_date_refs:
        keys[f"fk__{ref.key}"] = df[ref.key].astype(object)
    nhs_col = spec.identifiers.get("nhs_number")
    if spec.table == SPINE and nhs_col:
        keys[VALID_NHS] = nz.valid_nhs_or_none(df[nhs_col])
    return keys


def _write_part(folder: Path, read: ExtractRead, res, spec, lines) -> Part:
    folder.mkdir(parents=True)
    df = read.frame[list(spec.columns)].reset_index(drop=True)
    n = len(df)
    accepted = res.accepted.copy()
    kept = np.ones(n, dtype=bool)  # a mask, not np.setdiff1d: that sorts a million rows per segment
    kept[res.quarantine["row"].to_numpy(dtype="int64")] = False
    accepted[ROW] = np.flatnonzero(kept).astype("int64")
    write_text_parquet(accepted, folder / "accepted.parquet")
    write_text_parquet(res.quarantine, folder / "quarantine.parquet")
    write_text_parquet(res.flags, folder / "dq_flags.parquet")
    write_text_parquet(row_keys(df, spec, lines), folder / "rowkeys.parquet")
    summary = dict(res.summary, max_date=_max_date(df, spec))
    return Part(folder, n, summary, summary["files"][0]["file"])


def _main_formats(path: Path, spec, segment_bytes: int) -> dict:
    """Each date column's main format over the whole file (first pass: date columns only)."""
    counts: dict[str, dict] = {c: {} for c in spec.dates}
    if not spec.dates:
        return {}
    for seg in csv_segments(path, spec, segment_bytes, columns=list(spec.dates)):
        for col in spec.dates:
            if col in seg.frame.columns:
                counts[col] = add_format_counts(counts[col], date_format_counts(seg.frame[col]))
    return {col: main_date_format(c) for col, c in counts.items()}


def validate_file(landing: Path, spec, rel: str, latest: str, parents: dict, threshold: float,
                  out: Path, segment_bytes: int | None = None) -> dict:
    """Validate ``landing/rel`` (a file of source ``spec``) into the folder ``out`` (module
    docstring); returns its metadata: file, sha256, latest, max_date, summary. Raises
    ExtractUnusable as ``validate_source`` does, and when the file changed while it was read."""
    path = landing / rel
    segment_bytes = segment_bytes or validation_segment_bytes()
    kwargs = {"parents": parents} if spec.parent_date_refs else {}
    sha = sha256_file(path)
    info = {"file": rel, "sha256": sha, "rows": 0, "bytes": path.stat().st_size}
    parts_dir = out / "parts"
    parts: list[Part] = []
    segmented = csv_segments(path, spec, segment_bytes) is not None
    if segmented:
        try:
            main = _main_formats(path, spec, segment_bytes)
            lookups = parent_dates(spec, parents)
            for i, seg in enumerate(csv_segments(path, spec, segment_bytes)):
                seg = dataclasses.replace(seg, files=[info])
                res = validate_source(seg, spec, None, latest_date=latest, main_formats=main,
                                      parent_lookups=lookups, **kwargs)
                parts.append(_write_part(parts_dir / f"{i:05d}", seg, res, spec, seg.row_line))
                # a file of gigabytes takes minutes: a line per segment, not one silent wait
                progress.report("validate", "%s (%s) segment %d of about %d, %s rows, %.0f of %.0f MiB",
                                spec.table, rel, i + 1, -(-info["bytes"] // segment_bytes),
                                f"{sum(p.rows for p in parts):,}",
                                min((i + 1) * segment_bytes, info["bytes"]) / 2**20, info["bytes"] / 2**20)
        except NotSegmentable:  # read whole: the careful reader names what is wrong, if anything is
            shutil.rmtree(parts_dir, ignore_errors=True)
            parts, segmented = [], False
    if not segmented:
        read = read_extract(landing, dataclasses.replace(spec, file=glob.escape(rel)))
        if [f["file"] for f in read.files] != [rel] or read.files[0]["sha256"] != sha:
            raise ExtractUnusable(f"{spec.table} ({rel}): the file changed while it was read; run again")
        info = read.files[0]
        res = validate_source(read, spec, threshold, latest_date=latest, **kwargs)
        lines = read.row_line if read.row_line is not None else range(2, len(read.frame) + 2)
        parts.append(_write_part(parts_dir / "00000", read, res, spec, lines))
    else:
        if sha256_file(path) != sha:
            raise ExtractUnusable(f"{spec.table} ({rel}): the file changed while it was read; run again")
        info = dict(info, rows=sum(p.rows for p in parts))
    summary, quarantine = combine_parts(spec, parts, {t: out / f"{t}.parquet" for t in
                                                      ("accepted", "quarantine", "dq_flags", "rowkeys")},
                                        files=[info], keep_row=True)
    max_dates = [p.summary["max_date"] for p in parts if p.summary.get("max_date")]
    summary.pop("max_date", None)
    shutil.rmtree(parts_dir)
    if segmented:
        log_findings(spec.table, rel, summary)
        check_quarantine_threshold(spec.table, rel, summary["rows_in"], quarantine, threshold)
    return {"file": rel, "sha256": sha, "latest": latest, "max_date": max(max_dates) if max_dates else None,
            "summary": summary}
