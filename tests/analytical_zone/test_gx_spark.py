"""The GX gates on the marts on Spark (issue 18): the same suites, run by GX's Spark datasource on
the tables of dbt's Spark target, give the same results and the same published summary as on
DuckDB (GX's pandas datasource) for a broken copy of the marts; for clean marts the Spark run
(tests/operations/test_spark_run.py) publishes the DuckDB run's GX summary.

GX on Spark runs through the module's command line in a child process (``--engine spark``): the
metastore is an embedded Derby database one JVM may hold, and the child's JVM ends with it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import duckdb
import pytest
from spark_tables import export_parquet, load_in_child

from expectations.marts import MARTS, CriticalExpectationError, validate_marts
from required_tools import REPO

SUITES = {"mart_matched_cohort", "mart_evaluation_panel", "mart_balance"}
# where and when a validation ran: the only fields of the summary that differ between the engines
RUN_FIELDS = ("warehouse", "validated_at", "data_docs")


def _validate_on_spark(spark_dir: Path, reports: Path, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "expectations.marts", "--engine", "spark", "--warehouse",
                           str(spark_dir), "--reports-dir", str(reports), "--results-dir", str(results)],
                          capture_output=True, text=True, cwd=REPO)


def _validate_on_duckdb(warehouse: Path, reports: Path, results: Path) -> None:
    with warnings.catch_warnings():  # balance may fail on a population this small: reported, not raised
        warnings.simplefilter("ignore")
        validate_marts(warehouse, reports, results)


def _summary(reports: Path) -> dict:
    summary = json.loads((reports / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in RUN_FIELDS}


def _sorted_values(values: list) -> list:
    return sorted(values, key=lambda v: json.dumps(v, sort_keys=True, default=str))


def _full_results(results: Path) -> dict[str, list[dict]]:
    """Per suite, each expectation's full GX result: type, arguments, success and every count
    and observed value. The sample of unexpected values GX keeps (first 20 in the engine's row
    order) is compared as a set of values; pandas alone gives row indexes."""
    out = {}
    for suite in SUITES:
        raw = json.loads((results / f"{suite}.json").read_text())
        rows = []
        for r in raw["results"]:
            cfg = r["expectation_config"]
            details = {k: v for k, v in (r.get("result") or {}).items() if k != "partial_unexpected_index_list"}
            for k in ("partial_unexpected_list", "partial_unexpected_counts"):
                if k in details:
                    details[k] = _sorted_values(details[k])
            kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
            rows.append({"type": cfg["type"], "kwargs": kwargs, "success": r["success"], "result": details,
                         "raised": (r.get("exception_info") or {}).get("raised_exception")})
        out[suite] = rows
    return out


def _assert_same(duck: tuple[Path, Path], spark: tuple[Path, Path]) -> dict:
    summary = _summary(duck[0])
    assert _summary(spark[0]) == summary
    on_duckdb, on_spark = _full_results(duck[1]), _full_results(spark[1])
    for suite in SUITES:
        assert len(on_spark[suite]) == len(on_duckdb[suite]), suite
        for a, b in zip(on_spark[suite], on_duckdb[suite]):
            assert not a["raised"], (suite, a)  # an expectation GX cannot compute on Spark
            assert a == b, suite
    return summary


@pytest.mark.slow
def test_failures_are_found_and_published_alike_on_spark(built_warehouse, tmp_path):
    """A broken copy of the marts, in DuckDB and loaded into a Spark folder of its own: the same
    critical failures stop both engines, with the same counts and the same published summary."""
    broken = tmp_path / "broken.duckdb"
    shutil.copy(built_warehouse.warehouse, broken)
    c = duckdb.connect(str(broken))
    # one treated person twice (three uniqueness expectations), two scores out of [0, 1], three
    # rows out of the panel's window, one negative count; and balance (reported only)
    c.execute("insert into mart_matched_cohort select * from mart_matched_cohort where is_treated = 1 limit 1")
    c.execute("update mart_matched_cohort set propensity_score = 1.5 where rowid in "
              "(select rowid from mart_matched_cohort where is_treated = 0 limit 2)")
    c.execute("update mart_evaluation_panel set rel_month = -99 where rowid in "
              "(select rowid from mart_evaluation_panel limit 3)")
    c.execute("update mart_evaluation_panel set ae_attendances = -1 where rowid in "
              "(select rowid from mart_evaluation_panel where rel_month >= 0 limit 1)")
    c.execute("update mart_balance set smd = 0.5 where stage = 'after' and covariate = 'age'")
    c.close()
    spark_dir = tmp_path / "analytical" / "spark"
    load_in_child(spark_dir, export_parquet(broken, list(MARTS), tmp_path / "parquet"))

    duck = (tmp_path / "duckdb", tmp_path / "duckdb-full")
    spark = (tmp_path / "spark", tmp_path / "spark-full")
    with pytest.raises(CriticalExpectationError), pytest.warns(UserWarning, match="balance NOT achieved"):
        validate_marts(broken, *duck)
    proc = _validate_on_spark(spark_dir, *spark)
    assert proc.returncode == 1, proc.stderr[-5000:]
    assert "Critical data-quality expectations failed" in proc.stderr
    summary = _assert_same(duck, spark)

    failed = {s: summary["suites"][s]["failed_critical"] for s in SUITES}
    assert any("appears once" in f for f in failed["mart_matched_cohort"]), failed
    assert any("a person is in a matched set once" in f for f in failed["mart_matched_cohort"]), failed
    assert any("probabilities" in f for f in failed["mart_matched_cohort"]), failed
    assert any("rel_month within" in f for f in failed["mart_evaluation_panel"]), failed
    assert any("ae_attendances non-negative" in f for f in failed["mart_evaluation_panel"]), failed
    assert any("age +0.5" in f for f in summary["suites"]["mart_balance"]["failed_other"])
    rows = _full_results(spark[1])["mart_matched_cohort"]

    def unexpected(expectation: str, column: str, is_treated: int | None = None) -> list:
        return [r["result"]["unexpected_count"] for r in rows if r["type"] == expectation
                and r["kwargs"].get("column") == column
                and (r["kwargs"].get("row_condition") or {}).get("parameter") == is_treated]

    assert unexpected("expect_column_values_to_be_between", "propensity_score") == [2]
    # the duplicated person's two rows, counted among the treated rows only
    assert unexpected("expect_column_values_to_be_unique", "person_id", is_treated=1) == [2]
    assert unexpected("expect_column_values_to_be_unique", "person_id", is_treated=0) == [0]


def test_an_unknown_engine_or_a_missing_spark_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="engine 'polars': expected one of duckdb, spark"):
        validate_marts(tmp_path / "warehouse.duckdb", tmp_path / "gx", tmp_path / "gx-full", engine="polars")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'spark'}: no Spark folder"):
        validate_marts(tmp_path / "spark", tmp_path / "gx", tmp_path / "gx-full", engine="spark")
