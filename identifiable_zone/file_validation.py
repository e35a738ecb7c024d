"""One landing file validated into a folder of Parquet tables, in bounded memory.

A CSV file larger than ``core.settings.validation_segment_bytes()`` (64 MiB unless
``LTCEVAL_VALIDATION_SEGMENT_MIB`` says otherwise) is read in segments of whole lines: each
segment is validated on its own (``validate.validate_source``) and written out
(``core.settings.validation_workers()`` segments at once, one process each, in a
``SegmentPool`` that a run keeps for all its files), and the segments are combined on disk
(``cross_file_rules.combine_parts``: exact duplicates and record ids repeated across
segments). A date column's main format is the whole file's, not a segment's: the segments are
validated with their first segment's main formats, each counts its rows per format, and in
the rare file whose main format over all rows is another, every segment is validated again
with it (a first pass over the whole file for the formats took half a minute of GP
appointments at 2,000,000 people). The result is the one validating the whole file in one go
gives; only a segment is held in memory. Smaller files, Parquet files and CSV files that are
not one record a line (a quoted line break) are read whole. With ``LTCEVAL_ENGINE=spark`` the
pool is Spark's (``spark_validation``): the same functions, run in Spark tasks.

The folder (a validation cache entry) holds ``quarantine``, ``dq_flags`` and the folders
``accepted`` (with ``__row``, the row in its segment) and ``rowkeys``, the segments' files moved
there as they were written (``cross_file_rules.PART_TABLES``, ``table_files``).
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import multiprocessing
import pickle
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from core import progress
from core.files import sha256_file
from core.memory import release_memory
from core.settings import VALIDATION_WORKERS_ENV, validation_segment_bytes, validation_workers
from identifiable_zone import normalise as nz
from identifiable_zone.cross_file_rules import ROW, VALID_NHS, Part, combine_parts, text_array, write_text_parquet
from identifiable_zone.sources import (SPINE, CsvSegment, ExtractRead, ExtractUnusable, NotSegmentable,
                                       csv_segment_plan, csv_value_counts, read_csv_segment, read_extract)
from identifiable_zone.validate import (add_format_counts, check_identifier_loss, check_quarantine_threshold,
                                        counted_format_counts, log_findings, main_date_format, validate_source)

log = logging.getLogger(__name__)


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
        "row_hash": row_hashes(df),
        "line": pd.Series(lines, dtype="int64")})
    for ref in spec.parent_date_refs:
        keys[f"fk__{ref.key}"] = df[ref.key].astype(object)
    nhs_col = spec.identifiers.get("nhs_number")
    if spec.table == SPINE and nhs_col:
        keys[VALID_NHS] = nz.valid_nhs_or_none(df[nhs_col])
    return keys


def row_hashes(df: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (DuckDB's ``hash`` of the columns in order; a missing
    value hashes as NULL): exact copies across segments and files are found by it
    (``cross_file_rules``). In DuckDB: pandas' object hashing took a second a segment."""
    import duckdb

    rows = pa.table({f"c{i}": text_array(df[c]) for i, c in enumerate(df.columns)})
    with duckdb.connect(config={"threads": 1}) as con:  # one core: the other runs the other worker
        con.register("input_rows", rows)
        cols = ", ".join(f"c{i}" for i in range(len(df.columns)))
        return con.execute(f"SELECT hash({cols}) AS h FROM input_rows").fetchnumpy()["h"].astype("uint64")


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


def _first_segment_formats(path: Path, spec, segment_bytes: int) -> dict:
    """Each date column's main format in the file's first segment (its date columns' distinct
    values, counted): what the segments are validated with first."""
    if not spec.dates:
        return {}
    counted = csv_value_counts(path, spec, segment_bytes, list(spec.dates), segments=1)
    return {col: main_date_format(counted_format_counts(*counted[col]) if col in counted else {})
            for col in spec.dates}


def _main_formats(counts: list[dict]) -> dict:
    """Each date column's main format over the segments' rows per format."""
    total: dict[str, dict[str, int]] = {}
    for seg in counts:
        for col, c in seg.items():
            total[col] = add_format_counts(total.get(col, {}), c)
    return {col: main_date_format(c) for col, c in total.items()}


WORKERS_FROM_BYTES = 128 << 20  # two default segments or more (about a million GP appointments)


@dataclasses.dataclass(frozen=True)
class _SegmentJob:
    """What every segment of one file is validated with (sent once to each worker process)."""

    path: Path
    spec: object
    header: bytes
    info: dict
    latest: str
    main_formats: dict
    lookups: dict


def _validate_segment(job: _SegmentJob, segment: CsvSegment, folder: Path) -> tuple[Part, dict]:
    """The segment's part, and its rows per date format of each date column."""
    seg = dataclasses.replace(read_csv_segment(job.path, job.spec, job.header, segment), files=[job.info])
    res = validate_source(seg, job.spec, None, latest_date=job.latest, main_formats=job.main_formats,
                          parent_lookups=job.lookups)
    return _write_part(folder, seg, res, job.spec, seg.row_line), res.date_format_counts


_WORKER_JOB: tuple[Path, _SegmentJob] | None = None  # in a worker process: the job file it read last


def _segment_in_worker(job_file: Path, segment: CsvSegment, folder: Path) -> tuple[Part, dict]:
    global _WORKER_JOB
    try:
        if _WORKER_JOB is None or _WORKER_JOB[0] != job_file:  # read once per file, not per segment
            _WORKER_JOB = None
            _WORKER_JOB = (job_file, pickle.loads(job_file.read_bytes()))
        return _validate_segment(_WORKER_JOB[1], segment, folder)
    finally:
        release_memory()


class SegmentPool:
    """Worker processes that validate segments, started when a file needs them and stopped
    (``close``) before that file's parts are combined: kept for the next file, the idle
    workers held 2.4 GiB beside the combining DuckDB at 2 million people, for the 5 s that
    starting them again costs (each imports GX). Processes, not threads: the rules are Python
    and pandas, which hold the GIL. Spawned, so that no lock or open handle of the parent (an
    Airflow task) is copied into them. A context manager: any workers stop at its end.

    The Spark pool (``spark_validation.SparkSegmentPool``) has the same methods; it validates
    every file (``every_file``: whole files too, and a file of one segment), this one only the
    segments of a file validated by more than one worker."""

    every_file = False

    def __init__(self, workers: int):
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"))
        return self._executor

    def run_segments(self, job: _SegmentJob, job_file: Path, segments: list[CsvSegment],
                     folders: list[Path]) -> Iterator[tuple[Part, dict]]:
        """Each segment's ``_segment_in_worker`` result, in file order (the first failure raised)."""
        futures = []
        try:
            executor = self.executor()
            futures = [executor.submit(_segment_in_worker, job_file, s, f) for s, f in zip(segments, folders)]
            for fut in futures:
                yield fut.result()
        except BrokenProcessPool:
            self.close()
            raise ExtractUnusable(f"{job.spec.table} ({job.info['file']}): a validation worker process stopped "
                                  f"before its segment was done (killed, or out of memory?); run again, or set "
                                  f"{VALIDATION_WORKERS_ENV}=1 to validate one segment at a time") from None
        finally:
            for fut in futures:  # a segment failed: the rest are not wanted (the pool serves the next file)
                fut.cancel()
            for fut in futures:
                if not fut.cancelled():
                    try:
                        fut.exception()
                    except BaseException:  # noqa: BLE001  # waiting only: the first failure is raised above
                        pass

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "SegmentPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _validate_segments(job: _SegmentJob, segments: list[CsvSegment], parts_dir: Path, pool: SegmentPool | None,
                       segment_bytes: int) -> tuple[list[Part], list[dict]]:
    """Each segment validated and written to its own part, in ``pool`` (one at a time in this
    process when None; segments are independent once the main formats and parent dates are
    known); the parts in file order, and each one's rows per date format."""
    spec, size = job.spec, job.info["bytes"]
    done: list[Part] = []

    def report(part: Part) -> None:
        done.append(part)
        # a file of gigabytes takes minutes: a line per segment, not one silent wait
        progress.report("validate", "%s (%s) segment %d of about %d, %s rows, %.0f of %.0f MiB",
                        spec.table, job.info["file"], len(done), -(-size // segment_bytes),
                        f"{sum(p.rows for p in done):,}", min(len(done) * segment_bytes, size) / 2**20, size / 2**20)

    folders = [parts_dir / f"{s.index:05d}" for s in segments]
    counts: list[dict] = []
    if pool is None or not pool.every_file and (pool.workers <= 1 or len(segments) <= 1):
        for segment, folder in zip(segments, folders):
            part, c = _validate_segment(job, segment, folder)
            counts.append(c)
            report(part)
            release_memory()
        return done, counts
    parts_dir.mkdir(parents=True, exist_ok=True)
    # the workers read it once (the parents' dates are megabytes); a new name for each job, so that
    # no worker takes it for the one it read last
    job_file = parts_dir / f"job-{uuid.uuid4().hex}.pickle"
    job_file.write_bytes(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    for part, c in pool.run_segments(job, job_file, segments, folders):
        counts.append(c)
        report(part)
    return done, counts


def validate_whole_file(landing: Path, spec, rel: str, sha: str, latest: str, lookups: dict, threshold: float,
                        folder: Path) -> tuple[Part, dict]:
    """A file read whole (not segmented) validated into the part ``folder``; the part and the
    file's info (file, sha256, rows, bytes)."""
    read = read_extract(landing, dataclasses.replace(spec, file=glob.escape(rel)))
    if [f["file"] for f in read.files] != [rel] or read.files[0]["sha256"] != sha:
        raise ExtractUnusable(f"{spec.table} ({rel}): the file changed while it was read; run again")
    res = validate_source(read, spec, threshold, latest_date=latest, parent_lookups=lookups)
    lines = read.row_line if read.row_line is not None else range(2, len(read.frame) + 2)
    return _write_part(folder, read, res, spec, lines), read.files[0]


def validate_file(landing: Path, spec, rel: str, latest: str, lookups: dict, threshold: float,
                  out: Path, segment_bytes: int | None = None, workers: int | None = None,
                  sha256: str | None = None, pool: SegmentPool | None = None) -> dict:
    """Validate ``landing/rel`` (a file of source ``spec``) into the folder ``out`` (module
    docstring), its life rules reading the parents' dates ``lookups`` (``validate.parent_dates``);
    returns its metadata: file, sha256, latest, max_date, summary. Raises
    ExtractUnusable as ``validate_source`` does, and when the file changed while it was read.
    ``workers``: segments validated at once (default ``core.settings.validation_workers()`` for a
    file of ``WORKERS_FROM_BYTES`` or more, else 1). ``pool``: the run's worker processes, used
    for a file that is validated by more than one (else a pool is started for the file and
    stopped after it); a pool with ``every_file`` (Spark's) validates every file, whatever
    ``workers``, the whole file too when it is not segmented. ``sha256``: the file's checksum when the caller has just taken it
    (reading a large file again costs seconds), else taken here."""
    path = landing / rel
    segment_bytes = segment_bytes or validation_segment_bytes()
    if workers is None:  # a worker starts in seconds (it imports GX): worth it for a large file only
        workers = (pool.workers if pool is not None else validation_workers()) \
            if path.stat().st_size >= WORKERS_FROM_BYTES else 1
    sha = sha256 or sha256_file(path)
    info = {"file": rel, "sha256": sha, "rows": 0, "bytes": path.stat().st_size}
    parts_dir = out / "parts"
    parts: list[Part] = []
    plan = csv_segment_plan(path, segment_bytes)
    segmented = plan is not None
    if segmented:
        try:
            header, segments = plan
            job = _SegmentJob(path, spec, header, info, latest, _first_segment_formats(path, spec, segment_bytes),
                              lookups)
            # the run's pool when it has the workers wanted; else one for this file (one worker: none started)
            segment_pool = pool if pool is not None and (pool.every_file or pool.workers == workers) \
                else SegmentPool(workers)
            try:
                parts, counts = _validate_segments(job, segments, parts_dir, segment_pool, segment_bytes)
                main = _main_formats(counts)
                if main != job.main_formats:  # rare: most rows of the file are in another format
                    log.info("%s (%s): a date column's main format over the whole file is not its first "
                             "segment's: validating the segments again with it", spec.table, rel)
                    shutil.rmtree(parts_dir)
                    parts, _ = _validate_segments(dataclasses.replace(job, main_formats=main), segments, parts_dir,
                                                  segment_pool, segment_bytes)
            finally:
                # the workers stop before the parts are combined, even the run's (the next large
                # file starts them again, a few seconds): idle, they held 2.4 GiB beside the
                # combining DuckDB (GP appointments at 2 million people: validation's peak, 7.2 GiB)
                segment_pool.close()
        except NotSegmentable:  # read whole: the careful reader names what is wrong, if anything is
            shutil.rmtree(parts_dir, ignore_errors=True)
            parts, segmented = [], False
    if not segmented:
        whole = (landing, spec, rel, sha, latest, lookups, threshold, parts_dir / "00000")
        part, info = pool.run_whole_file(*whole) if pool is not None and pool.every_file \
            else validate_whole_file(*whole)
        parts.append(part)
    else:
        if sha256_file(path) != sha:
            raise ExtractUnusable(f"{spec.table} ({rel}): the file changed while it was read; run again")
        info = dict(info, rows=sum(p.rows for p in parts))
    summary, quarantine = combine_parts(spec, parts, {t: out / f"{t}.parquet" for t in ("quarantine", "dq_flags")},
                                        files=[info], pieces_into=out)
    max_dates = [p.summary["max_date"] for p in parts if p.summary.get("max_date")]
    summary.pop("max_date", None)
    shutil.rmtree(parts_dir)
    if segmented:
        log_findings(spec.table, rel, summary)
        check_quarantine_threshold(spec.table, rel, summary["rows_in"], quarantine, threshold)
        check_identifier_loss(spec, rel, summary["rows_in"], pd.read_parquet(out / "dq_flags.parquet"))
    return {"file": rel, "sha256": sha, "latest": latest, "max_date": max(max_dates) if max_dates else None,
            "summary": summary}
