"""`ltceval run --engine spark` (issue 18): the baseline's population (3,000 people) through every
step on a local Spark (validation in Spark tasks, splink's SparkAPI, the HMAC on Spark, dbt's
Spark target, the matching step and GX on Spark) gives the DuckDB run's pseudonymised tables,
marts row for row and business case (the linkage sensitivity's stricter and looser thresholds
aside: a model trained on Spark has other u probabilities, as splink samples u by a hash that
the engines compute differently; the links are the same); no Spark folder of the identifiable zone is left, and no
identifier reaches the analytical zone's Spark tables."""
from __future__ import annotations

import json
import shutil

import duckdb
import pandas as pd
import pytest
from spark_tables import assert_spark_table_equals_duckdb

from core.settings import DBT_PROJECT_DIR, VALIDATION_SEGMENT_MIB_ENV
from ltceval_runs import (baseline, business_case_apart_from_linkage_thresholds, current_period, key_file, ltceval,
                          run_args, run_env)
from required_tools import require

pytestmark = pytest.mark.slow

# every mart dbt keeps as a table (mart_person_month_panel is a view over its parts)
MARTS = sorted(p.stem for p in (DBT_PROJECT_DIR / "models" / "marts").glob("mart_*.sql")
               if p.stem != "mart_person_month_panel")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    require(shutil.which("java"), "Java 17 (pyspark 4 runs on it)", "openjdk-17-jre-headless")
    out = tmp_path_factory.mktemp("spark_run") / "out"
    # segments of 1 MiB: GP appointments and outpatients in several Spark tasks each (the baseline
    # validates every file whole: 64 MiB segments), the same tables
    env = run_env(key_file(tmp_path_factory), **{VALIDATION_SEGMENT_MIB_ENV: "1"})
    proc = ltceval(*run_args(out, "--engine", "spark"), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # after its own run: the other worker makes the shared baseline meanwhile (no idle wait)
    return baseline(tmp_path_factory), out


def test_the_validated_extracts_and_the_pseudonymised_tables_are_the_duckdb_runs(runs):
    """Validated in Spark tasks, in segments: the accepted, quarantine and flag tables and the
    rows counted are the baseline's (validated whole by the DuckDB engine); then the same
    pseudonymised tables."""
    base, out = runs
    for sub in ("accepted", "quarantine", "dq_flags"):
        names = sorted(p.name for p in (base / "identifiable" / sub).glob("*.parquet"))
        assert names and names == sorted(p.name for p in (out / "identifiable" / sub).glob("*.parquet")), sub
        for name in names:
            pd.testing.assert_frame_equal(pd.read_parquet(out / "identifiable" / sub / name),
                                          pd.read_parquet(base / "identifiable" / sub / name), obj=f"{sub}/{name}")
    counts = [{t: (s["rows_in"], s["rows_accepted"], s["rows_quarantined"]) for t, s in
               json.loads((o / "identifiable" / "validation_summary.json").read_text())["tables"].items()}
              for o in (base, out)]
    assert counts[0] == counts[1]
    tables = sorted(p.name for p in (base / "analytical" / "pseudonymised").glob("*.parquet"))
    assert len(tables) >= 10
    for name in tables:
        a = pd.read_parquet(base / "analytical" / "pseudonymised" / name)
        b = pd.read_parquet(out / "analytical" / "pseudonymised" / name)
        if name == "linkage_scenarios.parquet":  # the thresholds the model's probabilities give (module doc)
            a, b = (t.drop(columns=["threshold", "expected_precision"]) for t in (a, b))
        key = list(a.columns)
        pd.testing.assert_frame_equal(b.sort_values(key).reset_index(drop=True),
                                      a.sort_values(key).reset_index(drop=True), obj=name)


def test_the_marts_on_spark_are_the_duckdb_runs_row_for_row(runs):
    base, out = runs
    with duckdb.connect(str(base / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        for name in MARTS:
            leave_out = ("threshold", "expected_precision") if name == "mart_linkage_scenarios" else ()
            assert_spark_table_equals_duckdb(out / "analytical" / "spark", con, name, leave_out)
    assert len(MARTS) >= 10


def test_the_business_case_is_the_duckdb_runs(runs):
    base, out = runs
    period = current_period(base)
    assert current_period(out) == period
    got = business_case_apart_from_linkage_thresholds(out, period)
    want = business_case_apart_from_linkage_thresholds(base, period)
    assert set(got[0]) | set(got[1]) == set(want[0]) | set(want[1])
    assert {k for k in want[0] if got[0].get(k) != want[0][k]} <= {"tables/balance.csv"}  # float noise
    assert got[1] == want[1]
    pd.testing.assert_frame_equal(got[2], want[2])  # every estimate of the linkage sensitivity
    assert got[3] == want[3]  # the report, its linkage table aside
    # the GX gates on the marts (GX's Spark datasource there, pandas here): the same published summary
    gx = [json.loads((o / "reports" / period / "gx" / "summary.json").read_text()) for o in (base, out)]
    run_fields = ("warehouse", "validated_at", "data_docs")
    assert {k: v for k, v in gx[1].items() if k not in run_fields} == {k: v for k, v in gx[0].items() if k not in run_fields}


def test_the_identifiable_zones_spark_files_are_gone_and_no_identifier_is_in_the_spark_tables(runs):
    """Spark's local and temporary files of the identifiable zone are removed after each step;
    the analytical zone's Spark tables hold none of the extracts' NHS numbers, names, postcodes
    or record ids (the values of the landing files, searched in every Parquet file)."""
    _, out = runs
    assert not (out / "identifiable" / "spark").exists()
    gp = pd.read_csv(out / "landing" / "gp_patients.csv", dtype=str, keep_default_na=False)
    values = {v for col in ("NHSNumber", "Surname", "Postcode", "PatientRecordId") for v in gp[col] if len(v) >= 5}
    assert len(values) > 1000
    spark_files = sorted((out / "analytical" / "spark").rglob("*.parquet"))
    assert spark_files
    found = set()
    for f in spark_files:
        t = pd.read_parquet(f)
        for c in t.columns:
            if t[c].dtype == object:
                found |= values & set(t[c].dropna().astype(str))
    assert not found, sorted(found)[:5]


def test_the_person_month_panel_built_in_parts_on_spark_is_the_duckdb_runs(runs):
    """The dense panel in parts (its post-hook's INSERTs, each a statement of its own) on dbt's
    Spark target: 3,000 people in parts of 1,000 give the DuckDB run's one-part table row for
    row. A run makes a second part only above var('panel_chunk_persons') = 250,000 people; one
    hook of several statements failed there on Spark (Spark SQL takes one statement a call).
    Last in the module: it builds the table of the Spark run again."""
    from core.dbt import run_dbt
    from core.settings import Paths

    base, out = runs
    table = "int_activity_aggregated_to_person_months"
    proc = run_dbt(Paths(out), "run", "--target", "spark", "--select", table,
                   extra_vars={"panel_chunk_persons": 1000})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "1 of 1 OK" in proc.stdout
    with duckdb.connect(str(base / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        persons = con.execute(f"select count(distinct person_id) from {table}").fetchone()[0]
        assert persons > 2 * 1000  # really three parts
        assert_spark_table_equals_duckdb(out / "analytical" / "spark", con, table, ())
