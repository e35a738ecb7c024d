"""The whole warehouse build on Spark (issue 18): dbt-spark in session mode (a local Spark in dbt's
process) for both dbt selections and the matching step between them on the run's local Spark
session (ltceval.warehouse_build, engine spark), from the population the DuckDB warehouse was
built from. Every table, the matched cohort and its balance included, equals DuckDB's row for row
(numbers within 1e-9 relative): the matching gets the same rows in the same order on both
engines, so it makes the same matched sets."""
from __future__ import annotations

import duckdb
from spark_tables import assert_spark_table_equals_duckdb

from evaluation.matching_step import BALANCE_TABLE, MATCHED_TABLE


def test_every_table_builds_on_spark_as_on_duckdb(spark_build):
    paths, tables, built = spark_build
    assert len(tables) >= 25 and {"mart_matched_cohort", "mart_balance", "mart_evaluation_panel",
                                  "mart_attrition", MATCHED_TABLE, BALANCE_TABLE} <= set(tables), tables
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        assert built["matching"]["matched_rows"] == con.execute(f"select count(*) from {MATCHED_TABLE}").fetchone()[0] > 0
        for name in tables:
            assert_spark_table_equals_duckdb(paths.spark, con, name)
    finally:
        con.close()


def test_the_same_people_are_matched_in_the_same_sets_on_both_engines(spark_build):
    """Set ids, members and weights: the matching itself, not only its marts, is the same."""
    paths, _, _ = spark_build
    columns = "matched_set_id, person_id, is_treated, index_month, match_weight"
    spark_files = paths.spark / "warehouse" / "ltceval.db" / MATCHED_TABLE
    on_spark = duckdb.sql(f"select {columns} from read_parquet('{spark_files}/*.parquet') order by all").fetchall()
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        on_duckdb = con.execute(f"select {columns} from {MATCHED_TABLE} order by all").fetchall()
    assert on_spark == on_duckdb and len({r[0] for r in on_duckdb}) > 50
