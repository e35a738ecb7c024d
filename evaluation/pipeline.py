"""What the `evaluation` DAG's tasks call. Each function takes `core.settings.Paths`, reads
the warehouse read-only, and returns a small JSON-able summary for XCom.

Intermediate results (fitted estimates, with set-level influence values needed for joint
intervals) are pickled under `<out>/analytical/evaluation/`: analytical zone, not published.
Only `<out>/reports/` is published, and only aggregate, suppressed figures go there. The
report opens with the diagnostics (`evaluation.diagnostics`): while a gate fails it is blinded
(no estimate, saving or costing in it or beside it) unless LTCEVAL_UNBLIND_REASON says why not.
"""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pandas as pd

from evaluation.bootstrap import cluster_bootstrap
from evaluation.costing import (CostingConfig, estimate_costs, load_price_index,
                                prepare_unit_costs, unit_costs_by_outcome)
from evaluation.diagnostics import Diagnostics, build_diagnostics, unblind_reason
from evaluation.did import OutcomeEstimates, estimate_linear_did, estimate_outcome
from evaluation.methods.common import json_safe
from evaluation.power import mdrr_column
from evaluation.robustness import outcome_robustness, robustness_json
from core.contract import COUNT_OUTCOMES, NEGATIVE_CONTROLS
from core.disclosure import published_mean
from evaluation.panel import (PanelCodes, add_cost_column, cohort_counts, connect,
                              data_period, load_design, load_panel, load_raw_panel, load_treated_panel, read_table,
                              table_names)
from evaluation.sensitivity import (default_annual_caseload, iapt_outcomes, run_sensitivity,
                                    subgroup_savings)
from core.settings import Paths

OUTCOMES = COUNT_OUTCOMES
XCOM_DIGITS = 4  # floats in the XCom summaries are rounded to this many decimals


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


def estimate(paths: Paths, outcome: str) -> dict:
    """Fit NAIVE, Poisson DiD, linear DiD and event study for one outcome; save; summarise."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    panel = load_panel(paths.warehouse)
    est = estimate_outcome(panel, outcome, load_treated_panel(paths.warehouse))
    _save(paths, f"outcome_{outcome}", est)
    # the minimum detectable rate ratio of this cohort (blind to the treated people's post
    # period; evaluation.power), shown beside the estimate in the report
    _save(paths, f"mdrr_{outcome}", mdrr_column(panel, [outcome]))
    # E-values and parallel-trends sensitivity: saved apart from the estimates, which others read
    rob = outcome_robustness(est)
    _save(paths, f"robustness_{outcome}", rob)
    rob_doc = robustness_json(rob)
    (work_dir(paths) / f"robustness_{outcome}.json").write_text(json.dumps(rob_doc, indent=2), encoding="utf-8")
    d, n, es = est.did, est.naive, est.event_study
    honest_avg = (rob_doc["honest"].get("post_average") or {})
    return json_safe({
        "outcome": outcome,
        "rate_ratio": round(d.rate_ratio, 4),
        "rate_ratio_ci": [round(x, 4) for x in d.rate_ratio_ci],
        "abs_change_per_person_year": round(d.abs_change_per_py, 4),
        "abs_change_ci": [round(x, 4) for x in d.abs_change_ci],
        "naive_pct_change": round(n.pct_change, 4),
        "pretrend_p": round(es.pretrend_p, 4),
        "n_matched_sets": d.n_sets,
        "evalue": rob_doc["evalues"]["evalue_estimate"],
        "evalue_ci": rob_doc["evalues"]["evalue_ci_limit"],
        "honest_breakdown_mbar": honest_avg.get("breakdown_mbar"),
        "honest_breakdown_m": honest_avg.get("breakdown_m"),
    }, digits=XCOM_DIGITS)


def negative_controls(paths: Paths, outcomes=OUTCOMES, controls=NEGATIVE_CONTROLS) -> dict:
    """Estimate every negative-control outcome exactly as the outcomes (`estimate_outcome`), fit
    the empirical null of the design's systematic error from their rate ratios, and calibrate
    each outcome's interval and p-value against it (`evaluation.calibration`). Saved as
    `negative_controls.pkl` (estimates) and `calibration.pkl`; the summary for XCom."""
    from evaluation.calibration import calibrate_outcomes

    panel = load_panel(paths.warehouse)
    treated = load_treated_panel(paths.warehouse)
    estimates = {c: estimate_outcome(panel, c, treated) for c in controls if c in panel.columns}
    _save(paths, "negative_controls", estimates)
    outcome_estimates = {o: _load(paths, f"outcome_{o}") for o in outcomes
                         if (work_dir(paths) / f"outcome_{o}.pkl").exists()}
    events = {c: float(panel[c].sum()) for c in estimates}  # the analysed (at-risk) person-months
    calibration = calibrate_outcomes(estimates, outcome_estimates, events)
    _save(paths, "calibration", calibration)
    return json_safe(calibration.summary(), digits=XCOM_DIGITS)


def _cohort(paths: Paths, panel) -> dict:
    """Counts of the analysed panel, and how many of its controls were referred to IAPT during
    their follow-up (not-yet-referred design: they stay controls, intention to treat)."""
    counts = cohort_counts(panel)
    tables = table_names(paths.warehouse)
    mc = read_table(paths.warehouse, "mart_matched_cohort") if "mart_matched_cohort" in tables else None
    if mc is not None and "referred_in_followup" in mc.columns and len(panel):
        analysed = panel[panel["is_treated"] == 0][["matched_set_id", "person_id"]].drop_duplicates()
        mc = mc.assign(matched_set_id=mc["matched_set_id"].astype(str), person_id=mc["person_id"].astype(str))
        m = analysed.merge(mc[["matched_set_id", "person_id", "referred_in_followup"]],
                           on=["matched_set_id", "person_id"], how="left")
        counts["controls_referred_in_followup"] = int(m["referred_in_followup"].fillna(False).astype(bool).sum())
    design = load_design(paths.warehouse).comparison_design
    if design:
        counts["comparison_design"] = design
    return counts


def cost(paths: Paths, config: CostingConfig | None = None) -> dict:
    """Price the saved DiD results with the prepared unit costs (seed, local tariff, therapy
    cost, re-based to one price year; see `evaluation.costing`); bootstrap or delta intervals;
    projection to the annual caseload; also a linear DiD on costed use as a cross-check."""
    config = config or CostingConfig.from_env()
    co = tuple(config.costed_outcomes)
    seed_costs = read_table(paths.warehouse, "unit_costs")
    price_index = load_price_index()
    unit_costs = prepare_unit_costs(seed_costs, config, price_index)
    results = {o: _load(paths, f"outcome_{o}").did for o in co}
    panel = load_panel(paths.warehouse)
    costing = price_outcomes(panel, results, unit_costs, config)
    cost_did = estimate_linear_did(add_cost_column(panel, unit_costs_by_outcome(unit_costs, co)),
                                   "cost_gbp")
    _save(paths, "costing", {"costing": costing, "cost_did": cost_did, "config": config,
                             "unit_costs": unit_costs, "price_index": price_index,
                             "cohort": _cohort(paths, panel), "period": data_period(panel)})
    return json_safe({
        "gross_saving_per_treated_person": round(costing.gross_saving_per_person, 2),
        "net_saving_per_treated_person": round(costing.net_saving_per_person, 2),
        "net_saving_ci": [round(x, 2) for x in costing.net_saving_per_person_ci],
        "interval_method": costing.interval_kind,
        "therapy_cost_per_person": round(costing.therapy_cost_per_person, 2),
        "roi": round(costing.roi, 4),
        "roi_ci": [round(x, 4) for x in costing.roi_ci],
        "annual_caseload": costing.annual_caseload,
        "caseload_net_saving": costing.caseload_net_saving,
        "unit_cost_version": costing.unit_cost_version,
        "price_year": config.price_year,
        "cost_did_per_person_year": round(cost_did.estimate_per_py, 2),
    }, digits=XCOM_DIGITS)


def price_outcomes(panel, results: dict, unit_costs: pd.DataFrame, config: CostingConfig,
                   bootstrap_reps: int | None = None):
    """The costing of a panel's DiD results (`estimate_costs`): the costed outcomes' bootstrap
    (``bootstrap_reps`` replicates, default the config's) or delta intervals, the caseload
    projection. The main result's costing, and the linkage scenarios' (the same steps)."""
    co = tuple(config.costed_outcomes)
    boot = None
    estimable = all(math.isfinite(results[o].abs_change_per_py) for o in co)
    if config.interval_method == "bootstrap" and estimable:
        boot = cluster_bootstrap(panel, list(co), reps=bootstrap_reps or config.bootstrap_reps,
                                 seed=config.bootstrap_seed)
    caseload, basis = config.annual_caseload, "set for this evaluation"
    if caseload is None and len(panel):
        caseload, basis = default_annual_caseload(panel)
    return estimate_costs({o: results[o] for o in co}, unit_costs, co, bootstrap=boot, annual_caseload=caseload,
                          annual_caseload_basis=basis,
                          persistence_years=config.persistence_years,
                          persistence_decay=config.persistence_decay,
                          discount_rate=config.discount_rate)


def sensitivity(paths: Paths) -> dict:
    """Sensitivity scenarios (tornado), IAPT clinical outcomes and savings by subgroup."""
    c = _load(paths, "costing")
    config: CostingConfig = c["config"]
    tables = table_names(paths.warehouse)
    out = {"scenarios": None, "notes": [], "iapt": None, "subgroups": None}
    if not math.isfinite(c["costing"].net_saving_per_person):
        out["notes"].append("Sensitivity analyses not run: the base case is not estimable.")
        _save(paths, "sensitivity", out)
        return {"scenarios": 0, "notes": out["notes"]}
    raw = load_raw_panel(paths.warehouse)
    window = load_design(paths.warehouse).selection_window_months
    panel = load_panel(paths.warehouse, raw)  # kept from the estimates, or prepared from raw
    # of the unprepared panel the deaths scenario reads who is in it and their index month only:
    # the table goes before the scenarios run (at 2 million people it held 0.6 GB)
    raw = raw[["person_id", "index_month"]].drop_duplicates("person_id")
    results = {o: _load(paths, f"outcome_{o}").did for o in OUTCOMES}
    deaths = (read_table(paths.warehouse, "int_persons_joined_to_imd", ["person_id", "date_of_death"],
                         where="date_of_death is not null")
              if "int_persons_joined_to_imd" in tables else None)
    treated = (read_table(paths.warehouse, "mart_treated_cohort")
               if "mart_treated_cohort" in tables else None)
    contacts = None
    if treated is not None and "n_treatment_contacts" in treated:
        ids = panel.loc[panel["is_treated"] == 1, "person_id"].unique()
        t = treated[treated["person_id"].isin(ids)]
        # the scenario prices therapy at the mean as its label publishes it (rounded so that it
        # does not give away the number of people): a cost from the exact mean would
        contacts = published_mean(float(t["n_treatment_contacts"].mean()), len(t)) if len(t) else None
        contacts = contacts if isinstance(contacts, float) else None
    alt = {t[len("mart_evaluation_panel__"):]: read_table(paths.warehouse, t)
           for t in sorted(tables) if t.startswith("mart_evaluation_panel__")}
    seed_costs = read_table(paths.warehouse, "unit_costs")
    codes = PanelCodes.of(panel)  # the text ids as codes, once for every scenario and subgroup
    scen, notes = run_sensitivity(panel, results, c["costing"], seed_costs, config, raw_panel=raw,
                                  deaths=deaths, mean_treatment_contacts=contacts,
                                  alternative_panels=alt or None, price_index=c["price_index"],
                                  selection_window_months=window, codes=codes)
    out.update(scenarios=scen, notes=notes)
    sub = [subgroup_savings(panel, panel.loc[panel["is_treated"] == 1, ["person_id", by]].drop_duplicates("person_id"),
                            c["unit_costs"], config, by, codes=codes)
           for by in ("ltc_group", "practice_code") if by in panel]
    if treated is not None:
        out["iapt"] = iapt_outcomes(treated, panel)
        rec = treated[["person_id", "recovered"]].copy()
        rec["recovered"] = rec["recovered"].map({True: "recovered", False: "not recovered"})
        sub.insert(0, subgroup_savings(panel, rec, c["unit_costs"], config, "recovered", codes=codes))
    out["subgroups"] = pd.concat(sub, ignore_index=True) if sub else None
    _save(paths, "sensitivity", out)
    return json_safe({"scenarios": int(len(scen)), "notes": notes,
                      "subgroups": 0 if out["subgroups"] is None else int(len(out["subgroups"]))},
                     digits=XCOM_DIGITS)


def linkage_sensitivity(paths: Paths, bootstrap_reps: int | None = None) -> dict:
    """The headline rate ratios and net saving re-estimated with links at the stricter and the
    looser threshold (`evaluation.linkage_sensitivity`), when LTCEVAL_LINKAGE_SENSITIVITY lets
    it run and the warehouse has the scenarios. Saved as `linkage_sensitivity.pkl`; the report
    shows the table, or one line saying why there is none. ``bootstrap_reps``: the scenarios'
    bootstrap replicates (default: the main costing's)."""
    from core.settings import linkage_sensitivity_mode
    from evaluation import linkage_sensitivity as ls

    c = _load(paths, "costing")
    config: CostingConfig = c["config"]
    tables = table_names(paths.warehouse)
    persons = None
    if "int_persons_joined_to_imd" in tables:
        con = connect(paths.warehouse)
        try:
            persons = int(con.execute("select count(*) from main.int_persons_joined_to_imd").fetchone()[0])
        finally:
            con.close()
    run, why_not = ls.should_run(linkage_sensitivity_mode(), persons)
    thresholds = (ls.checked_scenarios(read_table(paths.warehouse, ls.SCENARIOS_TABLE))
                  if ls.SCENARIOS_TABLE in tables and ls.DELTAS_TABLE in tables else None)
    if not run:
        result = ls.LinkageSensitivity("off", why_not)
    elif thresholds is None:
        result = ls.LinkageSensitivity("unavailable", ls.UNAVAILABLE)
    elif not math.isfinite(c["costing"].net_saving_per_person):
        result = ls.LinkageSensitivity("not estimable", "The linkage sensitivity was not run: the main result "
                                                        "is not estimable.")
    else:
        main = {o: _load(paths, f"outcome_{o}").did for o in OUTCOMES}
        reps = bootstrap_reps or config.bootstrap_reps
        result = ls.run_linkage_sensitivity(
            load_panel(paths.warehouse), read_table(paths.warehouse, ls.DELTAS_TABLE), thresholds, main, c["costing"],
            lambda panel, results: price_outcomes(panel, results, c["unit_costs"], config, reps),
            OUTCOMES, bootstrap_reps=reps if config.interval_method == "bootstrap" else None)
    _save(paths, "linkage_sensitivity", result)
    return {"status": result.status, "note": result.note}


def pool_equipoise(paths: Paths, tables: set[str]) -> dict | None:
    """The equipoise counts of the matching pool (int_controls_matched_to_treated carries them
    on every row: evaluation.methods.matching.equipoise), or None for a warehouse without them."""
    if "int_controls_matched_to_treated" not in tables:
        return None
    con = connect(paths.warehouse)
    try:
        cols = {r[0] for r in con.execute("select column_name from information_schema.columns where table_name = "
                                          "'int_controls_matched_to_treated'").fetchall()}
        if not {"pool_rows_scored", "pool_rows_in_equipoise"} <= cols:
            return None
        row = con.execute("select pool_rows_scored, pool_rows_in_equipoise from main.int_controls_matched_to_treated "
                          "limit 1").fetchone()
    finally:
        con.close()
    return None if row is None else {"n_rows": int(row[0]), "n_in_range": int(row[1])}


def saved_ease(paths: Paths) -> tuple[float | None, float | None]:
    """(EASE, standard error of the null's mean) from the negative controls (`negative_controls`
    saves them with the calibration); Nones when they were not estimated or too few were
    estimable, which the diagnostics show as not available (not a gate failure)."""
    if not (work_dir(paths) / "calibration.pkl").exists():
        return None, None
    cal = _load(paths, "calibration")
    if cal.ease is None or cal.null is None:
        return None, None
    return float(cal.ease), float(cal.null.mean_se)


def diagnostics(paths: Paths, estimates: dict[str, OutcomeEstimates], balance: pd.DataFrame | None,
                mdrr: pd.DataFrame | None, tables: set[str]) -> Diagnostics:
    """The diagnostics of this run (evaluation.diagnostics), with the override's reason; a value
    of LTCEVAL_UNBLIND_REASON that is not a reason is refused here, before anything is written."""
    ease, null_mean_se = saved_ease(paths)
    return build_diagnostics(balance, pool_equipoise(paths, tables), mdrr,
                             {o: e.event_study.pretrend_p for o, e in estimates.items()},
                             ease=ease, unblind_reason=unblind_reason(), null_mean_se=null_mean_se)


def report(paths: Paths, outcomes=OUTCOMES, period: str | None = None) -> dict:
    """Write `business_case.html`, `diagnostics.json` and `tables/*.csv` in `paths.reports` (the
    DAG points that at the run's unpublished version folder). ``period``: the run's data period
    (YYYY-MM), shown in the report. A write error names the folder (``core.errors.PublishError``).
    While a diagnostic gate fails (and LTCEVAL_UNBLIND_REASON is unset) the report is blinded."""
    from core.files import output_guard
    # here, not at the top: rendering imports matplotlib and Jinja2, about 1.5 s that each
    # estimate, costing and sensitivity task (each its own process under a scheduler) spent
    from evaluation.reporting.render import ReportInputs, write_report

    estimates: dict[str, OutcomeEstimates] = {o: _load(paths, f"outcome_{o}") for o in outcomes}
    c = _load(paths, "costing")
    sens_path = work_dir(paths) / "sensitivity.pkl"
    sens = _load(paths, "sensitivity") if sens_path.exists() else {}
    tables = table_names(paths.warehouse)
    balance = read_table(paths.warehouse, "mart_balance") if "mart_balance" in tables else None
    attrition = (read_table(paths.warehouse, "mart_attrition")
                 if "mart_attrition" in tables else None)
    mdrr_files = [o for o in outcomes if (work_dir(paths) / f"mdrr_{o}.pkl").exists()]
    mdrr = pd.concat([_load(paths, f"mdrr_{o}") for o in mdrr_files], ignore_index=True) if mdrr_files else None
    robustness = {o: _load(paths, f"robustness_{o}") for o in outcomes
                  if (work_dir(paths) / f"robustness_{o}.pkl").exists()}
    has_controls = (work_dir(paths) / "calibration.pkl").exists()
    linkage = (_load(paths, "linkage_sensitivity") if (work_dir(paths) / "linkage_sensitivity.pkl").exists()
               else None)
    diag = diagnostics(paths, estimates, balance, mdrr, tables)
    inputs = ReportInputs(
        estimates=estimates, costing=c["costing"], cost_did=c["cost_did"], cohort=c["cohort"],
        period={**c["period"], "reporting_period": period},
        unit_costs=c.get("unit_costs", read_table(paths.warehouse, "unit_costs")),
        balance=balance, attrition=attrition, price_index=c.get("price_index"),
        config=c.get("config"), scenarios=sens.get("scenarios"),
        sensitivity_notes=tuple(sens.get("notes", ())), iapt=sens.get("iapt"),
        subgroups=sens.get("subgroups"), design=load_design(paths.warehouse), mdrr=mdrr,
        robustness=robustness or None, diagnostics=diag,
        negative_controls=_load(paths, "negative_controls") if has_controls else None,
        calibration=_load(paths, "calibration") if has_controls else None,
        linkage=linkage,
    )
    with output_guard(paths.reports):
        written = write_report(inputs, paths.reports)
    # no estimate in the summary either: it reaches the run's log
    return {"report": written["html"], "tables": sorted(k for k in written if k not in ("html", "diagnostics_json")),
            "diagnostics": written.get("diagnostics_json"), "blinded": diag.blinded,
            "failed_gates": [r.diagnostic for r in diag.failed_gates]}


def run_all(paths: Paths, config: CostingConfig | None = None) -> dict:
    """The whole evaluation in one process (CLI and tests); the DAG runs the same steps."""
    out = {"estimates": [estimate(paths, o) for o in OUTCOMES]}
    out["negative_controls"] = negative_controls(paths)
    out["cost"] = cost(paths, config)
    out["sensitivity"] = sensitivity(paths)
    out["linkage_sensitivity"] = linkage_sensitivity(paths)
    out["report"] = report(paths)
    return out


def summary_frame(paths: Paths) -> pd.DataFrame:
    """The per-outcome NAIVE vs DiD table from saved results (for notebooks)."""
    return pd.concat([_load(paths, f"outcome_{o}").tidy() for o in OUTCOMES], ignore_index=True)
