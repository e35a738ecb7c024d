"""The matching step of the warehouse build: between dbt's two selections, on DuckDB or Spark.

dbt builds the eligible pool (``int_match_pool_filtered_to_eligible``); this step reads it,
calls the shared ``evaluation.methods.matching`` (match, fit_propensity, balance_table) and
writes two tables beside it, which the dbt project reads as its source ``matching``
(``dbt_project/models/intermediate/matching/_matching__sources.yml``); dbt then builds the marts
on them (``ltceval.warehouse_build``). It is not a dbt Python model because dbt-spark runs those
only on Databricks; the one step serves both engines, and only reading the pool and writing a
table differ between them (``DuckDBWarehouse``, ``SparkWarehouse``).

``int_controls_matched_to_treated``: the matched rows (treated and controls). Design (vars of
dbt_project.yml, the contract's and a caller's over them: ``core.dbt.project_vars``): exact
match on `matching_exact` and the index month (stacked design), propensity score on
`matching_covariates` plus `matching_ps_extra_terms`, greedy 1:`matching_ratio` nearest
neighbour without replacement within a caliper of `matching_caliper_sd` SDs of the logit of the
score; with `matching_refine`, augmenting paths rescue treated people left without a control and
balance swaps (within the strata and the caliper) run until the largest |SMD| <=
`matching_refine_target_smd`.

Only the columns the matching reads leave the warehouse, through Arrow, sorted as `match` sorts
them (so it takes them without a copy; the sort keys are unique, so both engines hand it the same
rows in the same order and it makes the same sets); the other columns of the matched rows are
joined back in SQL. At 2 million people the eligible pool is about 7 million rows: the whole table
read into pandas took 10 GiB before matching began.

``int_covariate_balance_measured``: balance before and after matching, from the persisted matched
cohort, computed by the function `match` uses (``balance_table``). Rows for the matching
covariates and the propensity logit have matched_on = true; rows for `balance_shown_covariates`
(by default the counts of the baseline year, which holds the DiD's comparison period) are shown
with matched_on = false: the design does not match on them, person fixed effects absorb their
level differences.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.memory import duckdb_cache_held_down, release_memory
from evaluation.methods.matching import (LOGIT_COLUMN, as_column_list, balance_table, columns_used,
                                         fit_propensity, match, row_order_columns)

ENGINES = ("duckdb", "spark")
POOL_TABLE = "int_match_pool_filtered_to_eligible"
MATCHED_TABLE = "int_controls_matched_to_treated"
BALANCE_TABLE = "int_covariate_balance_measured"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class MatchingDesign:
    """The matching's design, from the dbt vars (``core.dbt.project_vars``)."""

    covariates: list[str]
    exact: list[str]
    ps_extra_terms: list[str]
    ratio: int
    caliper_sd: float
    seed: int
    refine: bool
    refine_target_smd: float
    distance_covariates: list[str]
    balance_shown_covariates: list[str]
    # not-yet-referred design: people referred later are controls until then (int_match_pool_stacked_by_index_month)
    controls_may_be_treated_later: bool

    @classmethod
    def from_vars(cls, dbt_vars: Mapping) -> "MatchingDesign":
        def columns(name: str) -> list[str]:
            cols = as_column_list(dbt_vars.get(name))
            bad = [c for c in cols if not _IDENTIFIER.fullmatch(c)]
            if bad:  # they are spliced into SQL: plain lower-case column names only
                raise ValueError(f"dbt var {name}: {bad} are not column names of {POOL_TABLE} (dbt_project.yml or --vars)")
            return cols

        def number(name: str, kind):
            try:
                return kind(dbt_vars[name])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"dbt var {name}={dbt_vars.get(name)!r} is not a {kind.__name__} "
                                 "(dbt_project.yml or --vars)") from None

        return cls(covariates=columns("matching_covariates"), exact=columns("matching_exact"),
                   ps_extra_terms=columns("matching_ps_extra_terms"), ratio=number("matching_ratio", int),
                   caliper_sd=number("matching_caliper_sd", float), seed=number("matching_seed", int),
                   refine=str(dbt_vars.get("matching_refine")).strip().lower() in ("true", "1", "yes"),
                   refine_target_smd=number("matching_refine_target_smd", float),
                   distance_covariates=columns("matching_distance_covariates"),
                   balance_shown_covariates=columns("balance_shown_covariates"),
                   controls_may_be_treated_later=dbt_vars.get("comparison_design") == "not_yet_referred")

    def match_settings(self) -> dict:
        return dict(treatment="is_treated", covariates=self.covariates, exact=self.exact, group="index_month",
                    id_col="person_id", ps_covariates=[*self.covariates, *self.ps_extra_terms],
                    distance_covariates=self.distance_covariates or None)


class DuckDBWarehouse:
    """The dbt-duckdb warehouse file, opened for writing once dbt has ended (its only writer),
    with dbt's memory limit (``core.settings.dbt_memory_limit``) and profile settings."""

    def __init__(self, warehouse: Path):
        import duckdb

        from core.settings import dbt_memory_limit

        if not Path(warehouse).is_file():
            raise FileNotFoundError(f"matching: no warehouse at {warehouse}; dbt's first selection builds it")
        # as dbt_project/profiles.yml: what DuckDB frees goes back to the system at once, not
        # when it next allocates (the pool's sorted read held 1.3 GiB at 2 million people)
        self.con = duckdb.connect(str(warehouse), config={
            "memory_limit": dbt_memory_limit(), "threads": 2, "allocator_background_threads": True,
            "allocator_bulk_deallocation_flush_threshold": "0MB"})

    def table(self, name: str) -> str:
        return f"main.{name}"

    def columns(self, name: str) -> list[str]:
        return [r[0] for r in self.con.execute(f"describe {self.table(name)}").fetchall()]

    def frame(self, sql: str) -> pd.DataFrame:
        return (self.con.sql(sql).to_arrow_table()
                .to_pandas(self_destruct=True, split_blocks=True, date_as_object=False))

    def temp_table(self, name: str, sql: str) -> None:
        self.con.execute(f"create or replace temp table {name} as {sql}")

    def temp_frame(self, name: str, df: pd.DataFrame) -> None:
        self.con.register(f"{name}_frame", df)
        self.con.execute(f"create or replace temp table {name} as select * from {name}_frame")
        self.con.unregister(f"{name}_frame")

    def drop_temp(self, name: str) -> None:
        self.con.execute(f"drop table if exists {name}")

    def write_table(self, name: str, sql: str) -> None:
        self.con.execute(f"create or replace table {self.table(name)} as {sql}")

    def write_frame(self, name: str, df: pd.DataFrame) -> None:
        self.con.register("frame_to_write", df)
        self.con.execute(f"create or replace table {self.table(name)} as select * from frame_to_write")
        self.con.unregister("frame_to_write")

    def holding_a_large_frame(self):
        # while the pool is in pandas DuckDB gets a small limit (its cached blocks go), and its
        # usual one back for the join of the sets to the pool
        return duckdb_cache_held_down(self.con)

    def close(self) -> None:
        self.con.close()


class SparkWarehouse:
    """dbt-spark's tables (schema ``core.spark.SPARK_SCHEMA``) through the run's local Spark
    session (``core.spark.spark_session``); frames go to and from pandas through Arrow."""

    def __init__(self, spark_dir: Path):
        from core.spark import SPARK_SCHEMA, spark_session

        self.schema = SPARK_SCHEMA
        self.spark = spark_session(spark_dir, app_name="ltceval-matching")
        self.spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        self.spark.conf.set("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        if not self.spark.catalog.tableExists(f"{self.schema}.{POOL_TABLE}"):
            self.spark.stop()
            raise FileNotFoundError(f"matching: no table {self.schema}.{POOL_TABLE} in the Spark warehouse at "
                                    f"{spark_dir}; dbt's first selection (--target spark) builds it")

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}"

    def columns(self, name: str) -> list[str]:
        return list(self.spark.table(self.table(name)).columns)

    def frame(self, sql: str) -> pd.DataFrame:
        from pyspark.sql.types import DateType

        selected = self.spark.sql(sql)
        df = selected.toPandas()
        # dates as DuckDB's Arrow read gives them (datetime64), so that `match` sees the same frame
        for field in selected.schema.fields:
            if isinstance(field.dataType, DateType):
                df[field.name] = pd.to_datetime(df[field.name]).astype("datetime64[ms]")
        return df

    def temp_table(self, name: str, sql: str) -> None:
        self.spark.sql(sql).cache().createOrReplaceTempView(name)

    def temp_frame(self, name: str, df: pd.DataFrame) -> None:
        self.spark.createDataFrame(df).cache().createOrReplaceTempView(name)

    def drop_temp(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def write_table(self, name: str, sql: str) -> None:
        # a managed Parquet table, as dbt-spark's tables (+file_format: parquet)
        self.spark.sql(sql).write.mode("overwrite").format("parquet").saveAsTable(self.table(name))

    def write_frame(self, name: str, df: pd.DataFrame) -> None:
        self.spark.createDataFrame(df).write.mode("overwrite").format("parquet").saveAsTable(self.table(name))

    def holding_a_large_frame(self):
        return nullcontext()

    def close(self) -> None:
        # the Derby metastore allows one JVM at a time: the next dbt selection needs it
        self.spark.stop()


@contextmanager
def open_warehouse(paths, engine: str) -> Iterator[DuckDBWarehouse | SparkWarehouse]:
    if engine not in ENGINES:
        raise ValueError(f"matching: engine {engine!r} is not one of {', '.join(ENGINES)}")
    warehouse = DuckDBWarehouse(paths.warehouse) if engine == "duckdb" else SparkWarehouse(paths.spark)
    try:
        yield warehouse
    finally:
        warehouse.close()


def run_matching(paths, engine: str = "duckdb", extra_vars: dict | None = None) -> dict:
    """Match on the pool and measure balance; write both tables into the engine's warehouse
    (``paths.warehouse`` for DuckDB, ``paths.spark`` for Spark). The design is the dbt run's
    (``extra_vars`` as given to ``core.dbt.run_dbt``). Returns a small summary."""
    from core.dbt import project_vars

    design = MatchingDesign.from_vars(project_vars(extra_vars))
    with open_warehouse(paths, engine) as wh:
        missing = sorted({*columns_used(**design.match_settings()), *design.balance_shown_covariates}
                         - set(wh.columns(POOL_TABLE)))
        if missing:
            raise ValueError(f"matching: {wh.table(POOL_TABLE)} has no column {', '.join(missing)} "
                             "(named by the matching vars of dbt_project.yml or --vars)")
        matched_rows = match_cohort(wh, design)
        balance = measure_balance(wh, design)
    return {"engine": engine, "matched_rows": matched_rows, "balance_rows": len(balance)}


def match_cohort(wh: DuckDBWarehouse | SparkWarehouse, design: MatchingDesign) -> int:
    """``int_controls_matched_to_treated``; returns its number of rows."""
    settings = design.match_settings()
    pool = wh.table(POOL_TABLE)
    order = ", ".join(f"{c} nulls last" for c in row_order_columns(settings["treatment"], design.exact,
                                                                     settings["group"], settings["id_col"]))
    # person ids go to pandas as their rank in person_id order (the same sort, the same sets):
    # 7 million 64-character pseudonyms and their hash table in match were gigabytes
    wh.temp_table("match_person_codes", f"""
        select person_id, cast(row_number() over (order by person_id) - 1 as bigint) as person_code
        from (select distinct person_id from {pool}) d""")
    used = ", ".join("c.person_code as person_id" if col == "person_id" else f"p.{col}"
                     for col in columns_used(**settings))
    # sorted outside the join: `person_id` is then the code alone on both engines
    candidates = wh.frame(f"select * from (select {used} from {pool} p join match_person_codes c "
                          f"on c.person_id = p.person_id) candidates order by {order}")
    with wh.holding_a_large_frame():
        result = match(candidates, **settings, ratio=design.ratio, caliper=design.caliper_sd, seed=design.seed,
                       refine=design.refine, refine_target_smd=design.refine_target_smd,
                       controls_may_be_treated_later=design.controls_may_be_treated_later)
        sets = result.matched[["matched_set_id", "person_id", "index_month", LOGIT_COLUMN, "propensity_score",
                               "match_weight"]]
        # equipoise of the whole pool the propensity model scored (CohortMethod computes it before
        # matching; only the matched rows' scores are kept), as two counts on every row like the
        # caliper: the evaluation's diagnostics gate reads them (evaluation/diagnostics.py)
        eq = result.info["equipoise"]
        sets = sets.assign(caliper_width_logit=result.info["caliper_width_logit"], pool_rows_scored=eq["n_rows"],
                           pool_rows_in_equipoise=eq["n_in_range"], row_order=range(len(sets)))
        # the pool and the match's working copies go back to the system before the warehouse
        # joins the sets to the pool (2 million people: 5.9 GiB resident before, 4.2 after)
        del candidates, result
        release_memory()
    wh.temp_frame("matched_sets", sets)
    n_rows = len(sets)
    del sets
    wh.temp_table("matched_set_persons", "select c.person_id, s.matched_set_id, s.index_month, "
                  f"s.{LOGIT_COLUMN}, s.propensity_score, s.match_weight, s.caliper_width_logit, "
                  "s.pool_rows_scored, s.pool_rows_in_equipoise, s.row_order "
                  "from matched_sets s join match_person_codes c on c.person_code = s.person_id")
    wh.drop_temp("matched_sets")
    wh.drop_temp("match_person_codes")
    # the propensity model's extra terms stay in the pool; (person_id, index_month) is unique
    # there (its data test), so each matched row joins one pool row
    extra = {*design.ps_extra_terms, *(c for c in design.distance_covariates if c not in design.covariates)}
    pool_columns = ", ".join(f"p.{c}" for c in wh.columns(POOL_TABLE) if c not in extra)
    wh.write_table(MATCHED_TABLE, f"""
        select s.matched_set_id, {pool_columns},
               s.{LOGIT_COLUMN}, s.propensity_score, s.match_weight, s.caliper_width_logit,
               s.pool_rows_scored, s.pool_rows_in_equipoise
        from matched_set_persons s
        join {pool} p on p.person_id = s.person_id and p.index_month = cast(s.index_month as date)
        order by s.row_order""")
    wh.drop_temp("matched_set_persons")
    return n_rows


def measure_balance(wh: DuckDBWarehouse | SparkWarehouse, design: MatchingDesign) -> pd.DataFrame:
    """``int_covariate_balance_measured``, from the pool and the persisted matched cohort."""
    covariates, ps_extra = design.covariates, design.ps_extra_terms
    shown = [c for c in design.balance_shown_covariates if c not in covariates]
    # a stable row order: a parallel scan returns rows in any order, and floating-point sums
    # (and so the last digits of the balance statistics) depend on it; (person_id,
    # index_month) is unique. Only the columns used leave the warehouse (7 million rows at 2
    # million people); the sort keys stay there: 7 million 64-character person ids were a GiB in pandas
    used = list(dict.fromkeys(["is_treated", *covariates, *ps_extra, *shown]))
    candidates = wh.frame(f"select {', '.join(used)} from {wh.table(POOL_TABLE)} order by person_id, index_month")
    matched = (wh.frame(f"select * from {wh.table(MATCHED_TABLE)}")
               .sort_values(["matched_set_id", "is_treated", "person_id"], kind="stable").reset_index(drop=True))
    # while the candidates are in pandas the warehouse's cache is held down
    with wh.holding_a_large_frame():
        # the "before" sample is every eligible candidate row, with the same propensity model
        logit, _ = fit_propensity(candidates, "is_treated", [*covariates, *ps_extra])
        candidates[LOGIT_COLUMN] = logit
        balance = balance_table(candidates, "is_treated", [*covariates, LOGIT_COLUMN, *shown], matched,
                                weight="match_weight")
    balance["matched_on"] = ~balance["covariate"].isin(shown)
    wh.write_frame(BALANCE_TABLE, balance)
    return balance


def main(argv=None) -> int:
    """``python -m evaluation.matching_step --out DIR [--engine spark] [--vars JSON]``: the step
    in a process of its own (``ltceval.warehouse_build`` runs the Spark step so: see there)."""
    import argparse
    import json

    from core.settings import Paths

    ap = argparse.ArgumentParser(prog="python -m evaluation.matching_step", description=main.__doc__)
    ap.add_argument("--out", type=Path, required=True, help="the run's output folder")
    ap.add_argument("--warehouse", type=Path, help="the DuckDB warehouse (default: the run's published one)")
    ap.add_argument("--engine", choices=ENGINES, default="duckdb")
    ap.add_argument("--vars", default="{}", help="further dbt vars, as given to dbt (JSON)")
    args = ap.parse_args(argv)
    paths = Paths(args.out.resolve())
    if args.warehouse:
        paths = paths.with_warehouse(args.warehouse.resolve())
    print(json.dumps(run_matching(paths, engine=args.engine, extra_vars=json.loads(args.vars) or None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
