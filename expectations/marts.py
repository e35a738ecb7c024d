"""Great Expectations suites for the analytical-zone marts (data-contracts.md §4).

Two engines, the same suites built by the same code (``engine``):

- ``duckdb``: GX 1.x has no working DuckDB SQL datasource here, so the marts are read into
  pandas through a read-only DuckDB connection (dbt is the only writer) and validated with
  GX's pandas datasource.
- ``spark`` (issue 18): the marts are the tables of dbt's Spark target, named in its metastore
  under ``Paths.spark`` (core/spark.py), validated with GX's Spark datasource (dataframe
  assets) in the pipeline's Spark session, which is stopped afterwards (the Derby metastore
  serves one JVM). The few figures computed outside GX (treated ids, matched share, the
  balance table's rows) are computed by Spark; only the balance table (one row per covariate
  and stage) is brought into pandas.

Either way GX runs in a file-backed context kept in a temporary project folder.

Two outputs, because GX's own results print the marts' exact row counts and quote values
(unexpected values, observed values, value tallies), which would undo the rounding of every
published count (docs/disclosure-policy.md):

- **Full results** (GX stays the system of record): one JSON validation result per suite and
  the GX Data Docs (HTML, ``data_docs/index.html``; each expectation carries a note saying
  whether it is critical and what it means, so a failed run's page says why it stopped) in
  ``results_dir``, a folder of the analytical zone that is never published
  (``<out>/analytical/gx/``, ``core.settings.Paths.gx_results``).
- **Published summary**: ``summary.json`` in ``reports_dir`` (``reports/<period>/gx/``): per
  suite and expectation its type, column, whether it is critical and whether it passed, its
  counts rounded by ``core.disclosure.round_count`` and the unexpected percentage computed from
  the rounded counts; no value GX saw. It is built field by field from the results
  (``published_expectation``), so nothing GX adds to a result can reach it.

A failed *critical* expectation raises :class:`CriticalExpectationError` (which stops the
DAG) after both are written; non-critical ones are reported only. Balance (SMD and variance
ratios after matching) is reported, never critical: its gate is the evaluation's
(``evaluation/diagnostics.py``), where a failure publishes a blinded report (diagnostics, no
estimates) instead of stopping the run. The expectations stay here so that GX remains the
system of record and its Data Docs show the failure; both use the thresholds of
``evaluation.diagnostics.THRESHOLDS``.

Run standalone: ``python -m expectations.marts --warehouse W --reports-dir R --results-dir D
[--engine spark]`` (with ``--engine spark``, W is the Spark folder, ``<out>/analytical/spark``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from core.contract import COUNT_OUTCOMES, PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE
from core.disclosure import round_count, share_of_rounded, significant
from evaluation.diagnostics import THRESHOLDS

MARTS = ("mart_matched_cohort", "mart_evaluation_panel", "mart_balance", "mart_treated_cohort", "mart_attrition")
SMD_THRESHOLD = THRESHOLDS.max_abs_smd
MIN_MATCHED_SHARE = 0.95
BALANCE_CHECK = "reported; the evaluation's diagnostics gate blinds the report when it fails"
DATA_DOCS_SITE = "ltceval_marts"
ENGINES = ("duckdb", "spark")


class CriticalExpectationError(RuntimeError):
    """A critical expectation on the marts failed: the evaluation must not run on them."""


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    failed_critical: list[str]
    failed_other: list[str]
    result_path: Path


def read_marts(warehouse: Path) -> dict[str, pd.DataFrame]:
    """The marts as pandas frames, read through a read-only connection."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {name: con.execute(f"select * from main.{name}").df() for name in MARTS}
    finally:
        con.close()


def read_spark_marts(spark, spark_dir: Path) -> dict:
    """The marts as Spark DataFrames: the tables of dbt's Spark target (metastore under ``spark_dir``)."""
    from core.spark import SPARK_SCHEMA

    missing = [name for name in MARTS if not spark.catalog.tableExists(f"{SPARK_SCHEMA}.{name}")]
    if missing:
        raise FileNotFoundError(f"{spark_dir}: the Spark metastore has no table {', '.join(missing)} in schema "
                                f"{SPARK_SCHEMA!r}: build the marts with `dbt build --target spark` first")
    return {name: spark.table(f"{SPARK_SCHEMA}.{name}") for name in MARTS}


@dataclass(frozen=True)
class MartFacts:
    """What the suites and the gates need besides GX's own checks, computed by the engine that
    holds the marts."""
    treated_ids: list
    n_eligible_treated: int
    n_matched_treated: int
    balance: pd.DataFrame  # mart_balance: one row per covariate and stage, small on any engine


def _pandas_facts(marts: dict[str, pd.DataFrame]) -> MartFacts:
    tc = marts["mart_treated_cohort"]
    return MartFacts(
        treated_ids=sorted(tc["person_id"].dropna().unique().tolist()),
        n_eligible_treated=int(tc["eligible_for_matching"].fillna(False).astype(bool).sum()),
        n_matched_treated=int((marts["mart_matched_cohort"]["is_treated"] == 1).sum()),
        balance=marts["mart_balance"])


def _spark_facts(marts: dict) -> MartFacts:
    from pyspark.sql import functions as F

    tc = marts["mart_treated_cohort"]
    ids = tc.where(F.col("person_id").isNotNull()).select("person_id").distinct().collect()
    return MartFacts(
        treated_ids=sorted(row["person_id"] for row in ids),
        # a null eligibility is not eligible, as fillna(False) on the pandas side
        n_eligible_treated=tc.where(F.col("eligible_for_matching").cast("boolean")).count(),
        n_matched_treated=marts["mart_matched_cohort"].where(F.col("is_treated") == 1).count(),
        balance=marts["mart_balance"].toPandas())


def _expectations(treated_ids: list) -> dict[str, list[tuple[object, bool, str]]]:
    """Per mart: (expectation, critical, plain-English meaning); the same on every engine."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    after_matched_on = (Column("stage") == "after") & (Column("matched_on") == True)  # noqa: E712
    treated = Column("is_treated") == 1
    control = Column("is_treated") == 0
    return {
        "mart_matched_cohort": [
            (e.ExpectColumnValuesToBeUnique(column="person_id", row_condition=treated), True,
             "every treated person appears once in the matched cohort"),
            (e.ExpectColumnValuesToBeUnique(column="matched_set_id", row_condition=treated), True,
             "each matched set has exactly one treated person"),
            (e.ExpectColumnValuesToBeUnique(column="person_id", row_condition=control), True,
             "no control is used twice (matching without replacement)"),
            (e.ExpectCompoundColumnsToBeUnique(column_list=["matched_set_id", "person_id"]), True,
             "a person is in a matched set once"),
            (e.ExpectColumnValuesToBeInSet(column="person_id", value_set=treated_ids, row_condition=treated), True,
             "treated rows come from the treated cohort"),
            (e.ExpectColumnValuesToNotBeNull(column="matched_set_id"), True, "matched_set_id is present"),
            (e.ExpectColumnValuesToBeBetween(column="propensity_score", min_value=0, max_value=1), True,
             "propensity scores are probabilities"),
            (e.ExpectTableRowCountToBeBetween(min_value=1), True, "the matched cohort is not empty"),
            (e.ExpectColumnDistinctValuesToBeInSet(column="is_treated", value_set=[0, 1]), True, "is_treated is 0/1"),
        ],
        "mart_evaluation_panel": [
            (e.ExpectColumnValuesToBeBetween(column="rel_month", min_value=-PANEL_MONTHS_BEFORE,
                                             max_value=PANEL_MONTHS_AFTER), True,
             f"rel_month within the -{PANEL_MONTHS_BEFORE}..+{PANEL_MONTHS_AFTER} window"),
            (e.ExpectColumnValuesToNotBeNull(column="rel_month"), True, "rel_month present"),
            (e.ExpectColumnValuesToBeBetween(column="exposure_months", min_value=0, max_value=1), True,
             "exposure_months within [0, 1]"),
            (e.ExpectColumnValuesToNotBeNull(column="exposure_months"), True, "exposure_months present"),
            (e.ExpectCompoundColumnsToBeUnique(column_list=["matched_set_id", "person_id", "rel_month"]), True,
             "one row per matched set, person and relative month"),
            *[
                (e.ExpectColumnValuesToBeBetween(column=c, min_value=0), True, f"{c} non-negative")
                for c in COUNT_OUTCOMES
            ],
        ],
        "mart_balance": [
            (e.ExpectColumnValuesToBeBetween(column="smd", min_value=-SMD_THRESHOLD, max_value=SMD_THRESHOLD,
                                             strict_min=True, strict_max=True, row_condition=after_matched_on),
             False,
             f"every standardised mean difference after matching is below {SMD_THRESHOLD} (covariates matched on; "
             "a failure blinds the evaluation report)"),
            (e.ExpectColumnValuesToBeBetween(column="variance_ratio", min_value=THRESHOLDS.variance_ratio_low,
                                             max_value=THRESHOLDS.variance_ratio_high, row_condition=after_matched_on),
             False,
             f"variance ratios after matching within {THRESHOLDS.variance_ratio_low:g}-"
             f"{THRESHOLDS.variance_ratio_high:g} (covariates matched on; a failure blinds the evaluation report)"),
        ],
    }


def validate_marts(warehouse: Path, reports_dir: Path, results_dir: Path, engine: str = "duckdb") -> dict:
    """Validate the marts: the full GX results (one JSON per suite) and Data Docs into
    ``results_dir`` (not published), the published ``summary.json`` into ``reports_dir``;
    raise on a critical failure, else return the summary (suites, matched share, largest SMD
    after). ``results_dir`` must not be inside ``reports_dir``. Balance is reported (with a
    warning when it fails), not raised: the evaluation blinds its report instead.

    ``engine="duckdb"``: ``warehouse`` is the DuckDB file. ``engine="spark"``: ``warehouse`` is
    the Spark folder of dbt's Spark target (``Paths.spark``); the suites run on Spark and the
    session is stopped before returning.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    reports_dir, results_dir = Path(reports_dir).resolve(), Path(results_dir).resolve()
    if results_dir == reports_dir or reports_dir in results_dir.parents:
        raise ValueError(f"the full GX results ({results_dir}) must not go into the published folder {reports_dir}")
    if engine == "duckdb":
        marts = read_marts(Path(warehouse))
        return _validate(marts, _pandas_facts(marts), "pandas", Path(warehouse), reports_dir, results_dir)

    from core.spark import spark_session

    spark_dir = Path(warehouse)
    if not spark_dir.is_dir():
        raise FileNotFoundError(f"{spark_dir}: no Spark folder (dbt's Spark target builds the marts there)")
    spark = spark_session(spark_dir, app_name="ltceval-gx-marts")
    try:
        marts = read_spark_marts(spark, spark_dir)
        return _validate(marts, _spark_facts(marts), "spark", spark_dir, reports_dir, results_dir)
    finally:
        spark.stop()  # the metastore (embedded Derby) serves one JVM: free it for the next user


def _validate(marts: dict, facts: MartFacts, datasource: str, warehouse: Path, reports_dir: Path,
              results_dir: Path) -> dict:
    import tempfile

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    reports_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    for old in results_dir.glob("*.json"):  # this run's results only, as for the Data Docs
        old.unlink()

    with tempfile.TemporaryDirectory(prefix="ltceval-gx-") as project_dir:
        context = gx.get_context(mode="file", project_root_dir=project_dir)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        docs_dir = results_dir / "data_docs"
        shutil.rmtree(docs_dir, ignore_errors=True)  # this run's pages only
        for name in list(context.get_site_names()):
            context.delete_data_docs_site(name)  # the default site lives in the temporary folder
        context.add_data_docs_site(
            site_name=DATA_DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
        if datasource == "spark":
            # the running session is reused (GX applies no spark_config of its own)
            source = context.data_sources.add_spark(name="ltceval_marts")
        else:
            source = context.data_sources.add_pandas(name="ltceval_marts")
        outcomes, summary = _run_suites(context, source, marts, facts, results_dir, warehouse)
        context.build_data_docs(site_names=[DATA_DOCS_SITE])
    summary["data_docs"] = str(docs_dir / "index.html")
    return _finish(facts, reports_dir, outcomes, summary)


def published_expectation(result, mart: str) -> dict:
    """One expectation's outcome as published: what was checked and whether it passed, with
    GX's row counts rounded (core.disclosure) and the unexpected percentage of the rounded
    counts. Built from named fields only: GX's unexpected and observed values, value tallies
    and exact percentages are left out by construction."""
    cfg = result.expectation_config
    details = result.result or {}
    counts = {k: round_count(details.get(k)) for k in ("element_count", "missing_count", "unexpected_count")}
    unexpected, rows = counts["unexpected_count"], counts["element_count"]
    # None for expectations on the table or its distinct values: GX counts no rows for them
    percent = None if None in (unexpected, rows) else share_of_rounded(details["unexpected_count"],
                                                                       details["element_count"])
    return {"suite": f"{mart}_suite", "expectation_type": cfg.type,
            "column": cfg.kwargs.get("column", cfg.kwargs.get("column_list")),
            "critical": bool((cfg.meta or {}).get("critical", True)), "meaning": (cfg.meta or {}).get("meaning", ""),
            "success": bool(result.success), **counts, "unexpected_percent_total": percent}


def _run_suites(context, source, marts: dict, facts: MartFacts, results_dir: Path, warehouse: Path):
    import great_expectations as gx

    outcomes: list[SuiteOutcome] = []
    summary: dict[str, object] = {"warehouse": str(warehouse), "validated_at": datetime.now(timezone.utc).isoformat(),
                                  "balance_check": BALANCE_CHECK, "suites": {}}

    for mart, items in _expectations(facts.treated_ids).items():
        suite = context.suites.add(gx.ExpectationSuite(name=f"{mart}_suite"))
        meaning: dict[str, tuple[bool, str]] = {}
        for exp, critical, text in items:
            exp.meta = {**(exp.meta or {}), "critical": critical, "meaning": text}
            # Data Docs render the description in place of GX's generated sentence (validation
            # pages) and the notes on the suite pages: a failed run's page says why it stopped
            label = f"{'CRITICAL (stops the run)' if critical else 'reported only'}: {text}"
            exp.description = f"{label} [{exp.expectation_type}]"
            exp.notes = label
            added = suite.add_expectation(exp)
            meaning[str(added.id)] = (critical, text)
        asset = source.add_dataframe_asset(name=mart)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{mart}_whole")
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=f"{mart}_validation", data=batch_def, suite=suite))
        result = vd.run(batch_parameters={"dataframe": marts[mart]}, result_format="SUMMARY")
        failed_critical, failed_other = [], []
        for r in result.results:
            if r.success:
                continue
            cfg = r.expectation_config
            critical = bool((cfg.meta or {}).get("critical", True))
            label = f"{cfg.type}({cfg.kwargs.get('column', cfg.kwargs.get('column_list', ''))}): {(cfg.meta or {}).get('meaning', '')}"
            details = r.result or {}
            if mart == "mart_balance" and cfg.kwargs.get("column") == "smd":
                bal = facts.balance
                over = bal[(bal["stage"] == "after") & bal["matched_on"] & (bal["smd"].abs() >= SMD_THRESHOLD)]
                # statistics published in the balance table, at its precision (three figures)
                label += " [" + ", ".join(f"{c} {significant(v):+}" for c, v in zip(over["covariate"], over["smd"]))
                label += "]"
            elif details.get("unexpected_count") is not None:
                # the count rounded, and no unexpected values: this label is published (and
                # the values are in the full results and Data Docs, for analysts with access)
                label += f" [unexpected rows: {round_count(details['unexpected_count'])}]"
            (failed_critical if critical else failed_other).append(label)
        path = results_dir / f"{mart}.json"
        path.write_text(json.dumps(result.to_json_dict(), indent=2, default=str))
        outcomes.append(SuiteOutcome(mart, result.success, failed_critical, failed_other, path))
        summary["suites"][mart] = {"success": result.success, "failed_critical": failed_critical,
                                   "failed_other": failed_other,
                                   "expectations": [published_expectation(r, mart) for r in result.results]}
    return outcomes, summary


def _finish(facts: MartFacts, reports_dir: Path, outcomes, summary) -> dict:
    # matched share of eligible treated people (reported; critical only through balance above)
    n_eligible, n_matched = facts.n_eligible_treated, facts.n_matched_treated
    share = n_matched / n_eligible if n_eligible else 0.0
    # published in gx/summary.json: counts rounded and the share computed from them (the exact
    # pair gave the matched cohort's size away); the gate itself uses the exact share
    summary["matched_share"] = {"n_eligible_treated": round_count(n_eligible), "n_matched_treated": round_count(n_matched),
                                "share": share_of_rounded(n_matched, n_eligible, scale=1.0),
                                "target": MIN_MATCHED_SHARE, "meets_target": share >= MIN_MATCHED_SHARE}
    bal = facts.balance
    after = bal[(bal["stage"] == "after") & bal["matched_on"]]
    summary["max_abs_smd_after"] = significant(float(after["smd"].abs().max())) if len(after) else None
    (reports_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    if not summary["matched_share"]["meets_target"]:
        warnings.warn(
            f"only {n_matched} of {n_eligible} eligible treated people were matched ({share:.0%}; target "
            f"{MIN_MATCHED_SHARE:.0%}): check overlap with the comparison pool (mart_attrition)",
            stacklevel=4,
        )
    balance_failures = summary["suites"]["mart_balance"]["failed_other"]
    if balance_failures:
        # the run goes on: the evaluation publishes a blinded report (evaluation/diagnostics.py)
        warnings.warn("balance NOT achieved after matching; the evaluation report will be blinded (diagnostics "
                      "only) unless LTCEVAL_UNBLIND_REASON is set:\n  - " + "\n  - ".join(balance_failures),
                      stacklevel=4)
    critical = [f"{o.suite}: {msg}" for o in outcomes for msg in o.failed_critical]
    if critical:
        raise CriticalExpectationError(
            "Critical data-quality expectations failed on the analytical marts; the evaluation must not "
            f"run on them (summary in {reports_dir}, Data Docs {summary['data_docs']}):\n  - " + "\n  - ".join(critical)
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warehouse", required=True)
    p.add_argument("--reports-dir", required=True, help="the published summary.json goes here")
    p.add_argument("--results-dir", required=True, help="full GX results and Data Docs (not to be published)")
    p.add_argument("--engine", choices=ENGINES, default="duckdb",
                   help="spark: --warehouse is the Spark folder of dbt's Spark target (<out>/analytical/spark)")
    a = p.parse_args(argv)
    try:
        summary = validate_marts(Path(a.warehouse), Path(a.reports_dir), Path(a.results_dir), engine=a.engine)
    except CriticalExpectationError as err:
        print(err, file=sys.stderr)
        return 1
    except FileNotFoundError as err:  # marts not built (yet) on the engine asked for
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
