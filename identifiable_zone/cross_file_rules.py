"""Rules that span the parts of one source, applied after each part was validated on its own.

A part is a segment of a large file (``identifiable_zone.file_validation``) or one file of a
source delivered as one file a month. Each part's results sit on disk (``PART_TABLES``);
combining renumbers their rows as if stacked and then applies what only the stack shows: the
copies after the first of an exact duplicate row and every row of a record id repeated among
first copies are quarantined, and on the spine a valid NHS number on several records is
reported (``nhs_number_unique``). The result equals validating the stacked parts in one go.

Memory stays bounded: the stacked row keys are read by DuckDB (which spills past its memory
limit) and accepted rows are copied part by part, one Parquet row group at a time. A file's
segments are not copied at all: their accepted rows and row keys are moved into the file's
cache entry as they were written (``table_files``), and the copy into the identifiable zone's
accepted table, which leaves out every quarantined row, is the only one.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from identifiable_zone.blocking import connection
from identifiable_zone.sources import SPINE

# accepted: the part's accepted rows and ``__row`` (their row in the part); quarantine and
# dq_flags: record_id, rule, field, row, file, line; rowkeys: one row per input row (row,
# record_id, row_hash, line, the parent keys ``fk__<column>`` and on the spine ``nhs__valid``).
# accepted and rowkeys are one file (``<name>.parquet``) or a folder of files (``table_files``);
# accepted may hold rows the part's quarantine lists (a copy found across its segments).
PART_TABLES = ("accepted", "quarantine", "dq_flags", "rowkeys")
ROW = "__row"
VALID_NHS = "nhs__valid"
_COLUMNS = ["record_id", "rule", "field", "row", "file", "line"]


@dataclass(frozen=True)
class Part:
    dir: Path
    rows: int
    summary: dict
    file: str  # the file its rows come from (a segment: its file)


def table_files(folder: Path, name: str) -> list[tuple[Path, int]]:
    """The files of table ``name`` (accepted or rowkeys) of a part folder, each with the row of
    the part its first row is: ``<name>.parquet`` (row 0), or each file of the folder
    ``<name>/``, named by that row (a file's segments, moved there as they were written)."""
    single = folder / f"{name}.parquet"
    if single.exists():
        return [(single, 0)]
    return sorted(((f, int(f.stem)) for f in (folder / name).glob("*.parquet")), key=lambda x: x[1])


def read_part_table(part: Part, name: str, offset: int = 0) -> pd.DataFrame:
    t = pd.read_parquet(part.dir / f"{name}.parquet")
    t = t.astype(object).where(t.notna(), None)
    t["row"] = t["row"].astype("int64") + offset
    t["line"] = t["line"].astype("int64")
    return t


def _cross_part_rows(spec, parts: list[Part], offsets: list[int], spill: str) -> pd.DataFrame:
    """Rows that only the stack of the parts shows: ``dup`` (a copy after the first of an exact
    duplicate row), ``repeated`` (a first copy whose record id is on another first copy) and,
    on the spine, ``nhs_repeated`` (a valid NHS number on another first copy)."""
    spine = spec.table == SPINE and "nhs_number" in spec.identifiers
    with connection(Path(spill)) as con:
        selects, params = [], []
        for part, off in zip(parts, offsets):
            nhs = f", {VALID_NHS}" if spine else ""
            for path, start in table_files(part.dir, "rowkeys"):
                selects.append(f"SELECT row + {int(off + start)} AS row, record_id, row_hash, line, ? AS file{nhs} "
                               "FROM read_parquet(?)")
                params += [part.file, str(path)]
        nhs_cte = (f", nhs AS (SELECT {VALID_NHS} FROM d WHERE NOT dup AND {VALID_NHS} IS NOT NULL "
                   f"GROUP BY {VALID_NHS} HAVING count(*) > 1)") if spine else ""
        nhs_col = (f", d.{VALID_NHS} IN (SELECT {VALID_NHS} FROM nhs) AND NOT dup AS nhs_repeated"
                   if spine else ", false AS nhs_repeated")
        sql = f"""
            WITH k AS ({' UNION ALL '.join(selects)}),
            -- a copy after the first: a later row of a hash seen more than once (a grouping, not a
            -- window over every row: that sorted 43.7 million GP appointments at 2 million people)
            first_copy AS (SELECT row_hash, min(row) AS first_row FROM k GROUP BY row_hash HAVING count(*) > 1),
            d AS (SELECT k.*, coalesce(k.row > f.first_row, false) AS dup
                  FROM k LEFT JOIN first_copy f ON f.row_hash = k.row_hash),
            -- record ids on more than one first copy: grouped on a 64-bit hash first, then only
            -- the ids of a repeated hash exactly (43.7 million GP appointments: 17.6 s to 14.0 s)
            rid_hash AS (SELECT hash(record_id) AS h FROM d WHERE NOT dup AND record_id IS NOT NULL
                         GROUP BY h HAVING count(*) > 1),
            rid AS (SELECT record_id FROM d WHERE NOT dup AND record_id IS NOT NULL
                      AND hash(record_id) IN (SELECT h FROM rid_hash)
                    GROUP BY record_id HAVING count(*) > 1){nhs_cte},
            flagged AS (SELECT d.row, d.record_id, d.file, d.line, d.dup,
                               (d.record_id IN (SELECT record_id FROM rid) AND NOT d.dup) AS repeated{nhs_col}
                        FROM d)
            SELECT * FROM flagged WHERE dup OR repeated OR nhs_repeated ORDER BY row"""
        out = con.execute(sql, params).df()
    for c in ("dup", "repeated", "nhs_repeated"):
        out[c] = out[c].fillna(False).astype(bool)
    out["row"] = out["row"].astype("int64")
    out["line"] = out["line"].astype("int64")
    return out


def _copy_accepted(parts: list[Part], offsets: list[int], drop_rows: np.ndarray, out: Path) -> int:
    """Stack the parts' accepted rows into ``out`` without ``drop_rows`` (stacked row numbers;
    the quarantined rows) and without ``__row``. Returns the rows written."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    drop = np.unique(np.asarray(drop_rows, dtype="int64"))
    writer, n = None, 0
    try:
        for part, off in zip(parts, offsets):
            for path, start in table_files(part.dir, "accepted"):
                for batch in pq.ParquetFile(path).iter_batches(batch_size=256_000):
                    cols = [c for c in batch.schema.names if c != ROW]
                    table = pa.Table.from_arrays([batch.column(c).cast(pa.string()) for c in cols], names=cols)
                    if len(drop):
                        rows = batch.column(ROW).to_numpy().astype("int64") + (off + start)
                        at = np.searchsorted(drop, rows)
                        table = table.filter(pa.array(drop[np.minimum(at, len(drop) - 1)] != rows))
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    n += table.num_rows
        if writer is None:  # no part had a row group: an empty table of the first part's columns
            schema = pq.read_schema(table_files(parts[0].dir, "accepted")[0][0])
            names = [c for c in schema.names if c != ROW]
            writer = pq.ParquetWriter(tmp, pa.schema([(c, pa.string()) for c in names]))
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return n


def _move_pieces(parts: list[Part], offsets: list[int], into: Path) -> None:
    """The parts' accepted rows and row keys moved, not copied, into ``into/accepted/`` and
    ``into/rowkeys/`` (``table_files``)."""
    for name in ("accepted", "rowkeys"):
        (into / name).mkdir(parents=True)
        for part, off in zip(parts, offsets):
            for path, start in table_files(part.dir, name):
                os.replace(path, into / name / f"{off + start:012d}.parquet")


def combine_parts(spec, parts: list[Part], out: dict[str, Path], files: list[dict] | None = None,
                  pieces_into: Path | None = None) -> tuple[dict, pd.DataFrame]:
    """The parts of one source (or file) as one, written to ``out`` (table -> Parquet path:
    quarantine, dq_flags, and accepted unless ``pieces_into``): rows renumbered as if stacked,
    the cross-part rules applied (module docstring). ``files``: the summary's file list (the
    parts' files when None). ``pieces_into`` (a file's cache entry): the parts' accepted rows
    and row keys are moved there as they are (``_move_pieces``); the accepted rows then still
    hold the copies found across parts, which the quarantine lists. Returns the summary and the
    quarantine table (for the threshold check)."""
    offsets = list(np.cumsum([0] + [p.rows for p in parts[:-1]]).astype(int))
    quarantine = pd.concat([read_part_table(p, "quarantine", o) for p, o in zip(parts, offsets)],
                           ignore_index=True)
    flags = pd.concat([read_part_table(p, "dq_flags", o) for p, o in zip(parts, offsets)], ignore_index=True)
    nhs_rows = None
    if len(parts) > 1:
        spill_in = (pieces_into or out["accepted"]).parent
        with tempfile.TemporaryDirectory(prefix="ltceval-combine-", dir=spill_in) as spill:
            cross = _cross_part_rows(spec, parts, offsets, spill)
        have = set(zip(quarantine["row"].tolist(), quarantine["rule"].tolist()))
        add = []
        for flag, rule, fld in (("dup", "exact_duplicate_row", "(whole row)"),
                                ("repeated", "record_id_unique", spec.record_id)):
            sel = cross[cross[flag].to_numpy()]
            sel = sel[[(r, rule) not in have for r in sel["row"].tolist()]]
            if len(sel):
                add.append(pd.DataFrame({"record_id": sel["record_id"].to_numpy(dtype=object), "rule": rule,
                                         "field": fld, "row": sel["row"].to_numpy(dtype="int64"),
                                         "file": sel["file"].to_numpy(dtype=object),
                                         "line": sel["line"].to_numpy(dtype="int64")}))
        if add:
            quarantine = pd.concat([quarantine, *add], ignore_index=True)
        if spec.table == SPINE and "nhs_number" in spec.identifiers:
            nhs_rows = cross[cross["nhs_repeated"].to_numpy()]
    quarantine = quarantine[_COLUMNS].sort_values(["row", "rule", "field"], kind="stable").reset_index(drop=True)
    flags = flags[_COLUMNS].sort_values(["row", "rule", "field"], kind="stable").reset_index(drop=True)
    rows_in = sum(int(p.summary["rows_in"]) for p in parts)
    if pieces_into is not None:
        _move_pieces(parts, offsets, pieces_into)
        n_accepted = rows_in - int(quarantine["row"].nunique())
    else:  # every quarantined row left out: the parts' own are not in their accepted rows already
        n_accepted = _copy_accepted(parts, offsets, quarantine["row"].to_numpy(dtype="int64"), out["accepted"])
    for name, frame in (("quarantine", quarantine), ("dq_flags", flags)):
        write_text_parquet(frame, out[name])
    summary = combine_summaries([p.summary for p in parts], n_accepted, quarantine, flags)
    if files is not None:
        summary["files"] = files
    if nhs_rows is not None:
        _set_reported(summary, "nhs_number_unique", spec.identifiers["nhs_number"], nhs_rows)
    assert summary["rows_in"] == n_accepted + summary["rows_quarantined"], \
        f"{spec.table}: rows in != accepted + quarantined"
    return summary, quarantine


def write_text_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Rows as text (row numbers, line numbers, row hashes and ``__row`` stay integers),
    written to a temporary file and renamed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.astype({c: "string" for c in frame.columns if c not in ("row", "line", "row_hash", ROW)}).to_parquet(
        tmp, index=False)
    os.replace(tmp, path)


def read_text_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A text Parquet (``write_text_parquet``) as object columns holding str, with None for
    missing: the form validation and linkage work on."""
    return text_frame(pd.read_parquet(path, columns=columns))


def _text_or_none(v) -> str | None:
    """A value as ``str`` writes it, None when it is missing (None, NaN, pd.NA)."""
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)


def text_array(values) -> pa.Array:
    """Values as an Arrow string array, None wherever one is missing (None, NaN, pd.NA);
    anything not text is written as ``str`` gives it. Arrow-backed text is taken as it is and
    an object array of str is converted in Arrow, not value by value in Python (that loop was
    half of linkage's staging time)."""
    if isinstance(values, pd.Series) and pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return pa.array(values, from_pandas=True).cast(pa.string())
    arr = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values, dtype=object)
    try:  # from_pandas: None, NaN and pd.NA are all null, found in Arrow (no isna pass first)
        return pa.array(arr, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # a number or another non-text value: as str
        return pa.array([_text_or_none(v) for v in arr], type=pa.string())


def text_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (read from a text Parquet or a DuckDB query) with object columns holding str,
    None for missing."""
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_string_dtype(s) and s.dtype != object:  # text Parquet: values are str
            df[c] = pd.Series(np.where(s.isna().to_numpy(), None, s.to_numpy(dtype=object, na_value=None)),
                              index=df.index, dtype=object)
        else:
            df[c] = pd.Series([_text_or_none(v) for v in s.tolist()], index=df.index, dtype=object)
    return df


def _set_reported(summary: dict, rule: str, fld: str, rows: pd.DataFrame) -> None:
    """The stacked count and first examples of a report-only rule, in place of the parts' own."""
    by_rule = summary.get("reported_by_rule") or []
    at = next((i for i, x in enumerate(by_rule) if (x["rule"], x["field"]) == (rule, fld)), None)
    entry = {"rule": rule, "field": fld, "rows": int(len(rows))}
    if at is None and len(rows):
        by_rule.append(entry)
    elif at is not None:
        by_rule[at:at + 1] = [entry] if len(rows) else []
    summary["reported_by_rule"] = by_rule
    examples = [x for x in summary.get("reported_examples") or [] if (x["rule"], x["field"]) != (rule, fld)]
    examples += [{"file": r.file, "line": int(r.line), "rule": rule, "field": fld} for r in rows.head(3).itertuples()]
    summary["reported_examples"] = examples


def _examples(t: pd.DataFrame) -> list[dict]:
    return [{"file": r.file, "line": int(r.line), "rule": r.rule, "field": r.field}
            for r in t.groupby(["rule", "field"]).head(3).itertuples()]


def _sum_by_rule(lists: list[list[dict]]) -> list[dict]:
    out: dict = {}
    for lst in lists:
        for x in lst or []:
            k = (x["rule"], x["field"])
            out[k] = out.get(k, 0) + int(x["rows"])
    return [{"rule": r, "field": f, "rows": n} for (r, f), n in out.items()]


def combine_summaries(summaries: list[dict], n_accepted: int, quarantine, flags) -> dict:
    first = summaries[0]
    out = dict(first)
    out["files"] = [f for s in summaries for f in s["files"]]
    out["encoding_issues"] = sum(int(s.get("encoding_issues", 0)) for s in summaries)
    out["encoding_issue_lines"] = [x for s in summaries for x in s.get("encoding_issue_lines", [])][:50]
    out["rows_in"] = sum(int(s["rows_in"]) for s in summaries)
    out["rows_accepted"] = int(n_accepted)
    out["rows_quarantined"] = int(quarantine["row"].nunique())
    out["quarantine_by_rule"] = ([{"rule": r, "field": f, "rows": int(n)} for (r, f), n in
                                  quarantine.groupby(["rule", "field"]).size().items()] if len(quarantine) else [])
    out["quarantine_examples"] = _examples(quarantine)
    out["flag_examples"] = _examples(flags)
    for k, v in first.items():  # other per-rule counts and examples: summed / concatenated
        if k in ("files", "encoding_issues", "encoding_issue_lines", "rows_in", "rows_accepted",
                 "rows_quarantined", "quarantine_by_rule", "quarantine_examples", "flag_examples"):
            continue
        if k.endswith("_by_rule"):
            out[k] = _sum_by_rule([s.get(k) for s in summaries])
        elif k.endswith("_examples") and len(summaries) == 1:
            out[k] = list(v)
        elif k.endswith("_examples"):
            seen: dict = {}
            for s in summaries:
                for x in s.get(k) or []:
                    seen.setdefault((x["rule"], x["field"]), []).append(x)
            out[k] = [x for xs in seen.values() for x in xs[:3]]
        elif k == "extra_columns":
            out[k] = list(dict.fromkeys(c for s in summaries for c in s.get(k) or []))
        elif isinstance(v, list):
            merged = []
            for s in summaries:
                for x in s.get(k) or []:
                    if x not in merged:
                        merged.append(x)
            out[k] = merged
    return out
