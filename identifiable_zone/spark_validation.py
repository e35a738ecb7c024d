"""Validation on Spark (issue 18, ``LTCEVAL_ENGINE=spark``): Spark as the segment pool.

The rules are not written again for Spark: each Spark task runs the function the process pool
runs (``file_validation._segment_in_worker``: ``validate.validate_source`` and its GX suite on
the segment's pandas batch, then the part's Parquet files), and the driver combines the parts
with the same ``cross_file_rules.combine_parts``. A file's segments (byte ranges of whole lines,
``sources.csv_segment_plan``) are the rows of a small DataFrame, one partition each, validated
by ``mapInPandas``; a task returns its part (folder, rows, summary) and its rows per date
format, pickled. A file that is not segmented (small, Parquet, a quoted line break) is one
task that validates it whole (``file_validation.validate_whole_file``), so every file of a
Spark run goes through Spark.

Tasks read the landing file and a job file (the parents' dates the life rules read) and write
their parts by path, all inside the identifiable zone: what Spark itself holds (the tasks, their
results) is paths, byte ranges, the source's config and the parts' summaries (counts, rules,
line numbers), never a row or an identifier. On a cluster the landing folder and the run's
output folder must be on storage every executor mounts at the same path (NFS, or DBFS/ABFS
mounted as a file system); in local mode they are the driver's.

An error in a task (``ExtractUnusable`` naming file, line and field; ``NotSegmentable``) is
sent back as the exception and raised on the driver, as a process pool does; a task that dies
(killed, out of memory) is reported as the file's. pyspark is imported only here.
"""
from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from core.memory import release_memory
from core.settings import Paths
from identifiable_zone.cross_file_rules import Part
from identifiable_zone.file_validation import _segment_in_worker, _SegmentJob, validate_whole_file
from identifiable_zone.sources import CsvSegment, ExtractUnusable

log = logging.getLogger(__name__)

_RESULT_SCHEMA = "task long, result binary"


def _run_calls(calls: list[tuple[Callable, tuple]]):
    """The function a Spark task runs on its partition's rows (task numbers): each named
    call's result, or the exception it raised, pickled."""

    def run(batches):
        import pandas as pd

        for batch in batches:
            for task in batch["id"].tolist():  # spark.range's column: the call's number
                fn, args = calls[task]
                try:
                    outcome = ("ok", fn(*args))
                except Exception as exc:  # noqa: BLE001  # raised again on the driver, as a process pool does
                    outcome = ("raised", exc)
                try:
                    blob = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:  # noqa: BLE001  # what cannot be pickled: said in text
                    blob = pickle.dumps(("raised", RuntimeError(f"{type(outcome[1]).__name__} from a Spark task "
                                                                f"could not be sent back: {exc}")))
                yield pd.DataFrame({"task": [task], "result": [blob]})

    return run


def _whole_file_in_worker(job_file: Path) -> tuple[Part, dict]:
    try:
        return validate_whole_file(*pickle.loads(Path(job_file).read_bytes()))
    finally:
        release_memory()


class SparkSegmentPool:
    """``file_validation.SegmentPool``'s methods on a Spark session: every file's segments, or
    the whole file, validated in Spark tasks. The session is the identifiable zone's
    (``spark_engine.zone_session``: Spark's local and temporary files inside the zone, no event
    log), started with the first file validated (a run whose files are all cached starts none)
    and stopped at the end of the ``with`` block: the embedded metastore takes one JVM at a time."""

    every_file = True

    def __init__(self, paths: Paths):
        self.paths = paths
        self._session = None
        self._zone: ExitStack | None = None
        self.files = self.tasks = 0  # validated here (the log line at the end)

    @property
    def workers(self) -> int:
        """Tasks at once: Spark's default parallelism (local mode: the cores)."""
        return self.session().sparkContext.defaultParallelism

    def session(self):
        if self._session is None:
            from identifiable_zone.spark_engine import zone_session

            self._zone = ExitStack()
            # its Python tasks run in this interpreter (zone_session), which has GX and this package
            self._session = self._zone.enter_context(zone_session(self.paths, app_name="ltceval-validation"))
        return self._session

    def _run(self, calls: list[tuple[Callable, tuple]], what: str) -> Iterator:
        """Each call's result in order, one Spark partition per call; the first failure raised."""
        spark = self.session()
        spark.sparkContext.setJobDescription(what)
        tasks = spark.range(0, len(calls), 1, numPartitions=len(calls))
        self.tasks += len(calls)
        try:
            rows = tasks.mapInPandas(_run_calls(calls), _RESULT_SCHEMA).collect()
        except Exception as exc:  # a task that died, not a rule: the rules' errors come back as results
            said = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise ExtractUnusable(f"{what}: a Spark task failed (killed, out of memory, or Spark's own error: "
                                  f"{said[-1] if said else type(exc).__name__}); run again") from exc
        for row in sorted(rows, key=lambda r: r.task):
            status, value = pickle.loads(row.result)
            if status == "raised":
                raise value
            yield value

    def run_segments(self, job: _SegmentJob, job_file: Path, segments: list[CsvSegment],
                     folders: list[Path]) -> Iterator[tuple[Part, dict]]:
        """Each segment's ``_segment_in_worker`` result, in file order (the first failure raised)."""
        calls = [(_segment_in_worker, (job_file, s, f)) for s, f in zip(segments, folders)]
        self.files += 1
        yield from self._run(calls, f"{job.spec.table} ({job.info['file']}): validating {len(calls)} segment(s)")

    def run_whole_file(self, landing: Path, spec, rel: str, sha: str, latest: str, lookups: dict,
                       threshold: float, folder: Path) -> tuple[Part, dict]:
        """``file_validation.validate_whole_file`` in one Spark task."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        job_file = folder.parent / f"whole-{uuid.uuid4().hex}.pickle"
        job_file.write_bytes(pickle.dumps((landing, spec, rel, sha, latest, lookups, threshold, folder),
                                          protocol=pickle.HIGHEST_PROTOCOL))
        self.files += 1
        return next(self._run([(_whole_file_in_worker, (job_file,))], f"{spec.table} ({rel}): validating it whole"))

    def close(self) -> None:
        """Between files: nothing (Spark keeps or stops its Python workers itself)."""

    def stop(self) -> None:
        if self._zone is not None:
            self._zone.close()  # stops the session, removes its files
            self._zone = self._session = None
            log.info("validation on Spark: %d file pass(es) in %d Spark task(s)", self.files, self.tasks)

    def __enter__(self) -> "SparkSegmentPool":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
