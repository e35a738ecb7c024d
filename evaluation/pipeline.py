"""What the `evaluation` DAG's tasks call. Each function takes `ltceval.settings.Paths`, reads
the warehouse read-only, and returns a small JSON-able summary for XCom.

Intermediate results (fitted estimates, with set-level influence values needed for joint
intervals) are pickled under `<out>/analytical/evaluation/`: analytical zone, not published.
Only `<out>/reports/` is published, and only aggregate, suppressed figures go there.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path

import pandas as pd

from evaluation.costing import DEFAULT_COSTED_OUTCOMES, estimate_costs, unit_costs_by_outcome
from evaluation.did import OutcomeEstimates, estimate_linear_did, estimate_outcome
from evaluation.panel import (COUNT_OUTCOMES, add_cost_column, cohort_counts, connect,
                              data_period, load_panel, read_table)
from evaluation.report import ReportInputs, write_report
from ltceval.settings import Paths

OUTCOMES = COUNT_OUTCOMES


def _jsonable(x):
    """Round floats and turn NaN into None so the summary is strict JSON for XCom."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else round(x, 4)
    return x


def work_dir(paths: Paths) -> Path:
    d = paths.out / "analytical" / "evaluation"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _save(paths: Paths, name: str, obj) -> Path:
    path = work_dir(paths) / f"{name}.pkl"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
    tmp.replace(path)
    return path


def _load(paths: Paths, name: str):
    with open(work_dir(paths) / f"{name}.pkl", "rb") as f:
        return pickle.load(f)


def _tables(paths: Paths) -> set[str]:
    con = connect(paths.warehouse)
    try:
        return {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall()}
    finally:
        con.close()


def estimate(paths: Paths, outcome: str) -> dict:
    """Fit NAIVE, Poisson DiD, linear DiD and event study for one outcome; save; summarise."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    panel = load_panel(paths.warehouse)
    est = estimate_outcome(panel, outcome)
    _save(paths, f"outcome_{outcome}", est)
    d, n, es = est.did, est.naive, est.event_study
    return _jsonable({
        "outcome": outcome,
        "rate_ratio": round(d.rate_ratio, 4),
        "rate_ratio_ci": [round(x, 4) for x in d.rate_ratio_ci],
        "abs_change_per_person_year": round(d.abs_change_per_py, 4),
        "abs_change_ci": [round(x, 4) for x in d.abs_change_ci],
        "naive_pct_change": round(n.pct_change, 4),
        "pretrend_p": round(es.pretrend_p, 4),
        "n_matched_sets": d.n_sets,
    })


def cost(paths: Paths, costed_outcomes=DEFAULT_COSTED_OUTCOMES) -> dict:
    """Price the saved DiD results with `unit_costs`; also a linear DiD on costed use."""
    unit_costs = read_table(paths.warehouse, "unit_costs")
    results = {o: _load(paths, f"outcome_{o}").did for o in costed_outcomes}
    costing = estimate_costs(results, unit_costs, costed_outcomes)
    panel = add_cost_column(load_panel(paths.warehouse),
                            unit_costs_by_outcome(unit_costs, costed_outcomes))
    cost_did = estimate_linear_did(panel, "cost_gbp")
    _save(paths, "costing", {"costing": costing, "cost_did": cost_did,
                             "cohort": cohort_counts(panel), "period": data_period(panel)})
    return _jsonable({
        "gross_saving_per_treated_person": round(costing.gross_saving_per_person, 2),
        "net_saving_per_treated_person": round(costing.net_saving_per_person, 2),
        "net_saving_ci": [round(x, 2) for x in costing.net_saving_per_person_ci],
        "therapy_cost_per_person": costing.therapy_cost_per_person,
        "roi": round(costing.roi, 4),
        "roi_ci": [round(x, 4) for x in costing.roi_ci],
        "cost_did_per_person_year": round(cost_did.estimate_per_py, 2),
    })


def report(paths: Paths, outcomes=OUTCOMES) -> dict:
    """Write `<out>/reports/business_case.html` and `<out>/reports/tables/*.csv`."""
    estimates: dict[str, OutcomeEstimates] = {o: _load(paths, f"outcome_{o}") for o in outcomes}
    c = _load(paths, "costing")
    tables = _tables(paths)
    balance = read_table(paths.warehouse, "mart_balance") if "mart_balance" in tables else None
    attrition = (read_table(paths.warehouse, "mart_attrition")
                 if "mart_attrition" in tables else None)
    inputs = ReportInputs(
        estimates=estimates, costing=c["costing"], cost_did=c["cost_did"], cohort=c["cohort"],
        period=c["period"], unit_costs=read_table(paths.warehouse, "unit_costs"),
        balance=balance, attrition=attrition,
    )
    written = write_report(inputs, paths.reports)
    return {"report": written["html"], "tables": sorted(k for k in written if k != "html")}


def run_all(paths: Paths) -> dict:
    """The whole evaluation in one process (CLI and tests); the DAG runs the same steps."""
    out = {"estimates": [estimate(paths, o) for o in OUTCOMES]}
    out["cost"] = cost(paths)
    out["report"] = report(paths)
    return out


def summary_frame(paths: Paths) -> pd.DataFrame:
    """The per-outcome NAIVE vs DiD table from saved results (for notebooks)."""
    return pd.concat([_load(paths, f"outcome_{o}").tidy() for o in OUTCOMES], ignore_index=True)
