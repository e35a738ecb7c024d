"""The Spark engine's hand-over to the evaluation (issue 18).

On Spark, dbt builds every table in the Spark warehouse. The evaluation then works on small
tables: the matched panel, the design, balance and attrition. These are the tables of
``evaluation.panel.WAREHOUSE_TABLES``, and they are collected from Spark, through Arrow, into
the staging DuckDB warehouse, the file the DuckDB engine's dbt would have built. The gates
and the publishing swap that file in as on DuckDB, so the evaluation DAG reads the same kind
of warehouse on either engine. The person-month panel of every registered person, and the
staging tables, stay in Spark.
"""
from __future__ import annotations

from pathlib import Path

from core.settings import Paths
from core.spark import SPARK_SCHEMA, spark_session
from evaluation.panel import read_by_evaluation


def collect_for_evaluation(paths: Paths, warehouse: Path) -> dict[str, int]:
    """Copy the Spark tables the evaluation reads into the DuckDB file ``warehouse`` (created,
    or its tables replaced); returns rows per table. The Spark session is stopped afterwards
    (its metastore takes one JVM at a time)."""
    import duckdb

    spark = spark_session(paths.spark, "ltceval-collect-for-evaluation")
    rows = {}
    try:
        spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        names = sorted(r["tableName"] for r in spark.sql(f"SHOW TABLES IN {SPARK_SCHEMA}").collect()
                       if read_by_evaluation(r["tableName"]))
        con = duckdb.connect(str(warehouse))
        try:
            for name in names:
                incoming = spark.table(f"{SPARK_SCHEMA}.{name}").toArrow()
                con.register("incoming", incoming)
                con.execute(f'CREATE OR REPLACE TABLE main."{name}" AS SELECT * FROM incoming')
                con.unregister("incoming")
                rows[name] = incoming.num_rows
            con.execute("CHECKPOINT")
        finally:
            con.close()
    finally:
        spark.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m ltceval.spark_warehouse --out DIR --warehouse FILE``: collect a run's Spark
    tables into the DuckDB file; prints rows per table as JSON (the task runs this in a child
    process, so that the JVM and its lock on the metastore end with it)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m ltceval.spark_warehouse", description=main.__doc__)
    ap.add_argument("--out", type=Path, required=True, help="the run's output folder")
    ap.add_argument("--warehouse", type=Path, required=True, help="the DuckDB file to write")
    args = ap.parse_args(argv)
    print(json.dumps(collect_for_evaluation(Paths(args.out.resolve()), args.warehouse)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
