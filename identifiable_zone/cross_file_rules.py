"""Rules that span the parts of one source, applied after each part was validated on its own.

A part is a segment of a large file (``identifiable_zone.file_validation``) or one file of a
source delivered as one file a month. Each part's results sit on disk (``PART_TABLES``);
combining renumbers their rows as if stacked and then applies what only the stack shows: the
copies after the first of an exact duplicate row and every row of a record id repeated among
first copies are quarantined, and on the spine a valid NHS number on several records is
reported (``nhs_number_unique``). The result equals validating the stacked parts in one go.

Memory stays bounded: the stacked row keys are read by DuckDB (which spills past its memory
limit) and accepted rows are copied part by part, one Parquet row group at a time.
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
# record_id, row_hash, line, the parent keys ``fk__<column>`` and on the spine ``nhs__valid``)
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
            selects.append(f"SELECT row + {int(off)} AS row, record_id, row_hash, line, ? AS file{nhs} "
                           "FROM read_parquet(?)")
            params += [part.file, str(part.dir / "rowkeys.parquet")]
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
            rid AS (SELECT record_id FROM d WHERE NOT dup AND record_id IS NOT NULL
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


def _copy_accepted(parts: list[Part], offsets: list[int], drop_rows: set, out: Path, keep_row: bool) -> int:
    """Stack the parts' accepted rows into ``out`` without ``drop_rows`` (stacked row numbers);
    ``keep_row``: keep the ``__row`` column (stacked). Returns the rows written."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    drop = np.fromiter(drop_rows, dtype="int64") if drop_rows else np.zeros(0, dtype="int64")
    writer, n = None, 0
    try:
        for part, off in zip(parts, offsets):
            pf = pq.ParquetFile(part.dir / "accepted.parquet")
            for batch in pf.iter_batches(batch_size=256_000):
                rows = batch.column(ROW).to_numpy().astype("int64") + off
                keep = ~np.isin(rows, drop) if len(drop) else np.ones(len(rows), dtype=bool)
                cols = [c for c in batch.schema.names if c != ROW]
                arrays = [batch.column(c).cast(pa.string()) for c in cols]
                names = list(cols)
                if keep_row:
                    arrays.append(pa.array(rows, type=pa.int64()))
                    names.append(ROW)
                table = pa.Table.from_arrays(arrays, names=names).filter(pa.array(keep))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                n += table.num_rows
        if writer is None:  # no part had a row group: an empty table of the first part's columns
            schema = pq.read_schema(parts[0].dir / "accepted.parquet")
            names = [c for c in schema.names if c != ROW] + ([ROW] if keep_row else [])
            types = [pa.int64() if c == ROW else pa.string() for c in names]
            writer = pq.ParquetWriter(tmp, pa.schema(list(zip(names, types))))
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return n


def _copy_rowkeys(parts: list[Part], offsets: list[int], out: Path) -> None:
    """The parts' row keys stacked into ``out`` (row numbers stacked)."""
    writer = None
    try:
        for part, off in zip(parts, offsets):
            for batch in pq.ParquetFile(part.dir / "rowkeys.parquet").iter_batches(batch_size=512_000):
                t = pa.Table.from_batches([batch])
                t = t.set_column(t.schema.get_field_index("row"), "row",
                                 pa.array(batch.column("row").to_numpy().astype("int64") + off, type=pa.int64()))
                if writer is None:
                    writer = pq.ParquetWriter(out, t.schema)
                writer.write_table(t.cast(writer.schema))
        if writer is None:
            pq.write_table(pq.read_table(parts[0].dir / "rowkeys.parquet"), out)
    finally:
        if writer is not None:
            writer.close()


def combine_parts(spec, parts: list[Part], out: dict[str, Path], files: list[dict] | None = None,
                  keep_row: bool = False) -> tuple[dict, pd.DataFrame]:
    """The parts of one source (or file) as one, written to ``out`` (table -> Parquet path:
    accepted, quarantine, dq_flags, and rowkeys when wanted): rows renumbered as if stacked,
    the cross-part rules applied (module docstring). ``files``: the summary's file list (the
    parts' files when None). ``keep_row``: accepted keeps ``__row`` (a file's cache entry).
    Returns the summary and the quarantine table (for the threshold check)."""
    offsets = list(np.cumsum([0] + [p.rows for p in parts[:-1]]).astype(int))
    quarantine = pd.concat([read_part_table(p, "quarantine", o) for p, o in zip(parts, offsets)],
                           ignore_index=True)
    flags = pd.concat([read_part_table(p, "dq_flags", o) for p, o in zip(parts, offsets)], ignore_index=True)
    nhs_rows = None
    newly: set = set()
    if len(parts) > 1:
        with tempfile.TemporaryDirectory(prefix="ltceval-combine-", dir=out["accepted"].parent) as spill:
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
            newly = set(pd.concat(add)["row"].tolist())
            quarantine = pd.concat([quarantine, *add], ignore_index=True)
        if spec.table == SPINE and "nhs_number" in spec.identifiers:
            nhs_rows = cross[cross["nhs_repeated"].to_numpy()]
    quarantine = quarantine[_COLUMNS].sort_values(["row", "rule", "field"], kind="stable").reset_index(drop=True)
    flags = flags[_COLUMNS].sort_values(["row", "rule", "field"], kind="stable").reset_index(drop=True)
    n_accepted = _copy_accepted(parts, offsets, newly, out["accepted"], keep_row)
    for name, frame in (("quarantine", quarantine), ("dq_flags", flags)):
        write_text_parquet(frame, out[name])
    if "rowkeys" in out:
        _copy_rowkeys(parts, offsets, out["rowkeys"])
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


def text_array(values) -> pa.Array:
    """Values as an Arrow string array, None wherever one is missing (None, NaN, pd.NA);
    anything not text is written as ``str`` gives it. Arrow-backed text is taken as it is and
    an object array of str is converted in Arrow, not value by value in Python (that loop was
    half of linkage's staging time)."""
    if isinstance(values, pd.Series) and pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return pa.array(values, from_pandas=True).cast(pa.string())
    arr = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values, dtype=object)
    arr = np.where(pd.isna(arr), None, arr)
    try:
        return pa.array(arr, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # a number or another non-text value: as str
        return pa.array([None if v is None else str(v) for v in arr], type=pa.string())


def text_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (read from a text Parquet or a DuckDB query) with object columns holding str,
    None for missing."""
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_string_dtype(s) and s.dtype != object:  # text Parquet: values are str
            df[c] = pd.Series(np.where(s.isna().to_numpy(), None, s.to_numpy(dtype=object, na_value=None)),
                              index=df.index, dtype=object)
        else:
            df[c] = pd.Series([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
                               for v in s.tolist()], index=df.index, dtype=object)
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
