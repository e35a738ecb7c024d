"""Validation on Spark (issue 18, LTCEVAL_ENGINE=spark): every file goes through Spark tasks (a task
a segment, each running validate_source and its GX suite), the repeats planted across segments
are caught by the same rules across parts, and an unusable file is refused with the DuckDB
engine's message. That the tables and summary equal the DuckDB engine's is checked on the whole
run (tests/operations/test_spark_run.py, in segments). Real Spark (local), real GX, real DuckDB."""
import logging
import shutil

import pytest

from core.settings import ENGINE_ENV, VALIDATION_SEGMENT_MIB_ENV, Paths, engine, validation_segment_bytes
from identifiable_zone.sources import ExtractUnusable, csv_segment_plan, load_sources_config, resolve_files
from required_tools import require
from test_file_validation import _table, _validate, landing  # noqa: F401  (landing: a fixture)

# about 51 KiB: GP patients in 2 segments (the planted repeats in the second), GP appointments in
# about 40; smaller segments (test_file_validation's) give no more cases and cost a task each
SEGMENT_MIB = "0.05"


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def zones(landing, tmp_path_factory):
    """The landing files validated by validate_all on Spark, in segments of about 51 KiB; the
    validation's log lines."""
    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    mp = pytest.MonkeyPatch()
    lines = _Lines()
    loggers = [logging.getLogger(f"identifiable_zone.{m}") for m in ("spark_validation", "file_validation")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(lines)
        lg.setLevel(logging.INFO)
    try:
        mp.setenv(ENGINE_ENV, "spark")
        on_spark = _validate(landing[0], tmp_path_factory.mktemp("spark"), mp, SEGMENT_MIB)
    finally:
        mp.undo()
        for lg, level in zip(loggers, levels):
            lg.removeHandler(lines)
            lg.setLevel(level)
    return (on_spark,), lines.lines


@pytest.mark.slow
def test_every_file_is_validated_in_spark_tasks(zones, landing):
    """A task a segment, one a file read whole; no file validated outside Spark."""
    cfg = load_sources_config()
    size = validation_segment_bytes({VALIDATION_SEGMENT_MIB_ENV: SEGMENT_MIB})
    files = [f for t in cfg.sources for f in resolve_files(landing[0], cfg[t])]
    segments = [len(plan[1]) if (plan := csv_segment_plan(f, size)) else 1 for f in files]
    assert sum(n > 1 for n in segments) >= 2  # the GP files: several segments each
    _, lines = zones
    # one pass a file, and a second for a file whose first segment's main date formats were not
    # the whole file's (file_validation says so; on either engine)
    again = {(m.split(" (")[0], m.split(" (")[1].split(")")[0]) for m in lines if "validating the segments again" in m}
    again_tasks = sum(n for f, n in zip(files, segments) if any(f.name == rel for _, rel in again))
    passes = len(files) + len(again)
    assert [m for m in lines if m.startswith("validation on Spark")] == [
        f"validation on Spark: {passes} file pass(es) in {sum(segments) + again_tasks} Spark task(s)"]


@pytest.mark.slow
def test_spark_catches_the_repeats_planted_across_segments(zones, landing):
    (on_spark,), _ = zones
    _, planted_pat, planted_appt = landing
    at = {(int(r.line), r.rule) for r in _table(on_spark, "quarantine", "gp_patients").itertuples()}
    assert (planted_pat, "exact_duplicate_row") in at
    assert (3, "record_id_unique") in at and (planted_pat + 1, "record_id_unique") in at
    at = {(int(r.line), r.rule) for r in _table(on_spark, "quarantine", "gp_appointments").itertuples()}
    assert (planted_appt, "exact_duplicate_row") in at
    assert (6, "record_id_unique") in at and (planted_appt + 1, "record_id_unique") in at


@pytest.mark.slow
def test_an_unusable_file_is_refused_on_spark_as_on_duckdb_naming_file_line_and_rule(landing, tmp_path):
    """The error is raised in a Spark task (the file read whole) and raised again on the driver."""
    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    from identifiable_zone.file_validation import validate_file
    from identifiable_zone.spark_validation import SparkSegmentPool

    spec = load_sources_config()["gp_patients"]
    land = tmp_path / "landing"
    land.mkdir()
    text = (landing[0] / "gp_patients.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    text[6] = text[6].rstrip("\n") + ',"an extra field"\n'  # line 7
    (land / "gp_patients.csv").write_text("".join(text[:40]), encoding="utf-8")
    errors = []
    for pool in (None, SparkSegmentPool(Paths(tmp_path))):
        with pytest.raises(ExtractUnusable, match=r"gp_patients \(gp_patients.csv\): rule csv_shape failed at "
                                                  r"line 7") as raised:
            validate_file(land, spec, "gp_patients.csv", "2026-12-01", {}, 0.2, tmp_path / f"out{len(errors)}",
                          pool=pool)
        errors.append(str(raised.value))
        if pool is not None:
            assert pool.tasks == 1
            pool.stop()
    assert errors[0] == errors[1]


def test_the_engine_is_duckdb_or_spark():
    assert engine({}) == "duckdb"
    assert engine({ENGINE_ENV: "Spark"}) == "spark"
    with pytest.raises(ValueError, match=r"LTCEVAL_ENGINE='polars': expected one of duckdb, spark"):
        engine({ENGINE_ENV: "polars"})
