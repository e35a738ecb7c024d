"""The business-case report: one self-contained HTML file (inline CSS, inline PNG plots) and
CSV tables, all aggregate and with small counts suppressed. No person or set identifiers.

Diagnostics first (evaluation/diagnostics.py): the report opens with the diagnostics table.
While a gate fails (and no override reason is set) the report is *blinded*: diagnostics,
balance, attrition and design only, in the HTML and in every table written beside it.
Otherwise, for commissioners: a one-paragraph summary with the headline net saving per treated
person and its interval; then per-outcome NAIVE vs matched DiD; event studies; balance;
attrition; design, assumptions, limitations and data period.

The HTML comes from the Jinja2 template `templates/business_case.html.j2`; this module turns
the estimators' results into the template's plain values: published (suppressed) figures from
`evaluation.disclosure`, formatted numbers, figures as data URIs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import matplotlib.pyplot as plt
import pandas as pd

from evaluation.costing import CostingResult
from evaluation.design import StudyDesign
from evaluation.diagnostics import THRESHOLDS, Diagnostics
from evaluation.did import LinearDiDResult, OutcomeEstimates
from core.disclosure import published_mean, significant
from evaluation.disclosure import (MAX_SUPPRESSED, MIN_SUBGROUP_TREATED, published_attrition,
                                   published_balance, published_cost_did,
                                   published_costing_lines, published_costing_table,
                                   published_event_study,
                                   published_iapt_outcomes, published_outcome_table,
                                   published_scenarios, published_subgroups,
                                   rounded_percentage, suppress_count, too_few_to_publish)
from core.contract import OUTCOME_LABELS, outcome_label
from core.spreadsheets import write_csv, write_xlsx
from evaluation.reporting.formatting import fmt_ci, gbp, num, published_num, signed_ci
from evaluation.reporting.plots import (fig_to_data_uri, plot_attrition, plot_event_study,
                                        plot_love, plot_naive_vs_did, plot_tornado,
                                        plot_waterfall)
from evaluation.reporting.calibration import calibrated_cells, calibration_section, published_calibration
from evaluation.reporting.linkage import linkage_section, published_linkage_sensitivity
from evaluation.reporting.robustness import robustness_section
from evaluation.reporting.text import describe

TEMPLATE = "business_case.html.j2"
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("evaluation.reporting", "templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class ReportInputs:
    estimates: dict[str, OutcomeEstimates]
    costing: CostingResult
    cost_did: LinearDiDResult | None
    cohort: dict[str, int]
    period: dict[str, str | None]
    unit_costs: pd.DataFrame
    balance: pd.DataFrame | None = None
    attrition: pd.DataFrame | None = None
    price_index: pd.DataFrame | None = None
    config: object | None = None  # evaluation.costing.CostingConfig
    scenarios: pd.DataFrame | None = None  # evaluation.sensitivity.run_sensitivity
    sensitivity_notes: tuple[str, ...] = ()
    iapt: pd.DataFrame | None = None  # evaluation.sensitivity.iapt_outcomes
    subgroups: pd.DataFrame | None = None  # evaluation.sensitivity.subgroup_savings
    title: str = "IAPT-LTC business case: effect on healthcare use and costs"
    design: StudyDesign = StudyDesign()  # mart_design
    mdrr: pd.DataFrame | None = None  # evaluation.power.mdrr_column: outcome, mdrr, treated_needed_for_target
    robustness: dict | None = None  # outcome -> evaluation.robustness.outcome_robustness
    negative_controls: dict | None = None  # negative control -> evaluation.did.OutcomeEstimates
    calibration: object | None = None  # evaluation.calibration.Calibration
    diagnostics: Diagnostics | None = None  # evaluation.diagnostics.build_diagnostics
    linkage: object | None = None  # evaluation.linkage_sensitivity.LinkageSensitivity

    @property
    def blinded(self) -> bool:
        return self.diagnostics is not None and self.diagnostics.blinded


def _months_text(months: tuple[int, ...], none: str) -> str:
    return f"months {months[0]} to {months[-1]}" if months else none


def _selection_window_text(inp: ReportInputs) -> str:
    return _months_text(inp.design.selection_months, "none in this run (dbt var selection_window_months = 0)")


def _comparison_text(inp: ReportInputs) -> str:
    return _months_text(inp.design.comparison_months, "not available")


def _control_phrase(inp: ReportInputs) -> str:
    if inp.cohort.get("comparison_design") == "not_yet_referred":
        return ("at practices offering the service who had not been referred to it by then "
                "(some were later; see Design)")
    return "who were not seen by the service"


def _comparison_group(inp: ReportInputs) -> dict:
    """The comparison design (its description is in the template) and, for the
    not-yet-referred design, how many matched controls were referred during follow-up."""
    n = inp.cohort.get("controls_referred_in_followup")
    referred = None
    if n is not None and inp.cohort.get("control_persons"):
        referred = {"n": suppress_count(n), "of": suppress_count(inp.cohort["control_persons"])}
    return {"design": inp.cohort.get("comparison_design", ""), "referred_in_followup": referred}


def _figure(draw, figsize) -> str:
    """Draw one figure with `draw(ax)` and return it as a data URI."""
    fig, ax = plt.subplots(figsize=figsize)
    draw(ax)
    return fig_to_data_uri(fig)


def _verdict(lo: float, hi: float) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return ("The saving could not be estimated: too few events in at least one costed "
                "outcome for this cohort (see the outcome table).")
    if lo > 0:
        return ("The whole interval is above zero: on these data the service more than pays "
                "for itself in reduced hospital and GP use within a year.")
    if hi < 0:
        return ("The whole interval is below zero: within a year the reduction in hospital and "
                "GP use does not pay for the therapy (benefits to health and wellbeing are not "
                "counted here).")
    return ("The interval includes zero: the data are consistent with the service "
            "saving money, breaking even, or costing more than it saves within a year.")


def _has_caseload_projection(c: CostingResult) -> bool:
    return bool(c.annual_caseload) and not pd.isna(c.caseload_net_saving)


def _summary(inp: ReportInputs, published_costs: pd.DataFrame) -> dict:
    """The key figures and the headline paragraph."""
    c = inp.costing
    cohort_net = published_costs.loc["cohort_net_saving"]
    lo, hi = c.net_saving_per_person_ci
    cfg = inp.config
    price_text = (f"{cfg.price_year}" if cfg is not None and getattr(cfg, "price_year", None)
                  else "published (mixed-year)")
    key_figures = [
        ("Net saving per treated person", gbp(c.net_saving_per_person),
         f"95% CI {fmt_ci(*c.net_saving_per_person_ci, money=True)}"),
        ("Return per £1 spent on therapy", f"{c.roi:+.2f}", f"95% CI {signed_ci(*c.roi_ci)}"),
        ("Break-even therapy cost per course", gbp(c.break_even_therapy_cost),
         f"current cost {gbp(c.therapy_cost_per_person)}")]
    caseload = _has_caseload_projection(c)
    if caseload:
        key_figures.append((f"Net saving a year, {c.annual_caseload:,} people treated a year",
                            gbp(c.caseload_net_saving),
                            f"95% CI {fmt_ci(*c.caseload_net_saving_ci, money=True)}"))
    naive_bits = [
        f"{OUTCOME_LABELS[o]} {inp.estimates[o].naive.pct_change:+.0%} naive vs rate ratio "
        f"{inp.estimates[o].did.rate_ratio:.2f} ({fmt_ci(*inp.estimates[o].did.rate_ratio_ci)}) matched"
        for o in ("ae_attendances", "emergency_admissions") if o in inp.estimates]
    has_cohort_net = not pd.isna(cohort_net["estimate"])
    return {
        "price_text": price_text,
        "key_figures": key_figures,
        "net": gbp(c.net_saving_per_person),
        "net_ci": fmt_ci(lo, hi, money=True),
        "net_cost": c.net_saving_per_person < 0,
        "gross": gbp(c.gross_saving_per_person),
        "gross_ci": fmt_ci(*c.gross_saving_per_person_ci, money=True),
        "therapy": gbp(c.therapy_cost_per_person),
        "roi": f"{c.roi:+.2f}",
        "roi_ci": signed_ci(*c.roi_ci),
        "cohort_net": gbp(cohort_net["estimate"]) if has_cohort_net else None,
        "cohort_net_ci": (fmt_ci(cohort_net["lo95"], cohort_net["hi95"], money=True)
                          if has_cohort_net else None),
        "caseload": f"{c.annual_caseload:,}" if caseload else None,
        "caseload_net": gbp(c.caseload_net_saving) if caseload else None,
        "caseload_net_ci": fmt_ci(*c.caseload_net_saving_ci, money=True) if caseload else None,
        "verdict": _verdict(lo, hi),
        "n_treated": suppress_count(inp.cohort["treated_persons"]),
        "n_controls": suppress_count(inp.cohort["control_persons"]),
        "control_phrase": _control_phrase(inp),
        "interval_text": ("cluster bootstrap of matched sets" if c.interval_kind == "bootstrap"
                          else "delta method"),
        "naive_bits": naive_bits,
    }


def _costs(inp: ReportInputs, published_costs: pd.DataFrame) -> dict:
    c = inp.costing
    rows = [
        ["Gross saving (costed change in use, 12 months)", gbp(c.gross_saving_per_person),
         fmt_ci(*c.gross_saving_per_person_ci, money=True)],
        ["Therapy cost per course", gbp(c.therapy_cost_per_person), "fixed"],
        ["Net saving", gbp(c.net_saving_per_person), fmt_ci(*c.net_saving_per_person_ci, money=True)],
        ["Return on investment (net per £1)", f"{c.roi:+.2f}", signed_ci(*c.roi_ci)],
        ["Break-even therapy cost per course", gbp(c.break_even_therapy_cost),
         fmt_ci(*c.gross_saving_per_person_ci, money=True)],
    ]
    if not pd.isna(published_costs.loc["cohort_net_saving", "estimate"]):
        r = published_costs.loc["cohort_net_saving"]
        n = int(published_costs.loc["cohort_treated_persons_rounded", "estimate"])
        rows.append([f"Cohort net saving (about {n} treated people)", gbp(r["estimate"]),
                     fmt_ci(r["lo95"], r["hi95"], money=True)])
    if c.annual_caseload:
        rows += [
            [f"Projected gross saving a year, caseload {c.annual_caseload:,} treated people",
             gbp(c.caseload_gross_saving), fmt_ci(*c.caseload_gross_saving_ci, money=True)],
            [f"Projected therapy cost a year, caseload {c.annual_caseload:,}",
             gbp(c.therapy_cost_per_person * c.annual_caseload), "fixed"],
            [f"Projected net saving a year, caseload {c.annual_caseload:,}",
             gbp(c.caseload_net_saving), fmt_ci(*c.caseload_net_saving_ci, money=True)],
        ]
    activity_rows = [
        [outcome_label(r.outcome), gbp(r.unit_cost_gbp), r.price_year,
         num(r.abs_change_per_person_year, 3), fmt_ci(r.abs_change_lo95, r.abs_change_hi95, 3),
         gbp(r.saving_gbp_per_person_year), fmt_ci(r.saving_lo95, r.saving_hi95, money=True)]
        for r in c.lines.itertuples()]
    d = inp.cost_did
    return {
        "rows": rows,
        "bootstrap": c.interval_kind == "bootstrap",
        "interval_method": c.interval_method,
        # person-months over 12 x the treated people: a mean over them, in steps of 1/12
        "mean_followup_years": published_num(published_mean(c.mean_followup_years, c.n_treated, unit=1 / 12)),
        "persistence_years": c.persistence_years,
        "persistence_decay": f"{c.persistence_decay:g}",
        "caseload_basis": c.annual_caseload_basis if c.annual_caseload else None,
        "activity_rows": activity_rows,
        "therapy_cost_source": c.therapy_cost_source,
        "unit_cost_version": c.unit_cost_version,
        # the cross-check is a saving: minus the linear DiD on costed use
        "cross_check": None if d is None else {
            "saving": gbp(-d.estimate_per_py), "ci": fmt_ci(-d.ci[1], -d.ci[0], money=True)},
    }


def _ci_or_star(estimate, lo, hi) -> str:
    """"estimate (lo to hi)", or "*" where disclosure suppressed the interval."""
    return "*" if isinstance(lo, str) else f"{num(estimate)} ({fmt_ci(lo, hi)})"


def _published_ci_or_star(estimate, lo, hi) -> str:
    """As _ci_or_star, for means rounded to their own precision (printed as they are)."""
    if isinstance(lo, str):
        return "*"
    return f"{published_num(estimate)} ({published_num(lo)} to {published_num(hi)})"


def _outcome_rows(published: pd.DataFrame) -> list[list]:
    rows = []
    for r in published.itertuples():
        pct = "*" if isinstance(r.naive_pct_change, str) else f"{r.naive_pct_change:+.0%}"
        rows.append([
            r.label,
            f"{published_num(r.naive_pre_per_person_year)} → {published_num(r.naive_post_per_person_year)} ({pct})",
            _published_ci_or_star(r.naive_change_per_person_year, r.naive_change_lo95, r.naive_change_hi95),
            _ci_or_star(r.did_rate_ratio, r.did_rate_ratio_lo95, r.did_rate_ratio_hi95),
            _ci_or_star(r.did_abs_change_per_person_year, r.did_abs_change_lo95,
                        r.did_abs_change_hi95),
            "n/a" if pd.isna(r.pretrend_p) else f"{r.pretrend_p:.2f}", r.n_treated, r.n_controls,
        ])
    return rows


def mdrr_cells(mdrr: pd.DataFrame | None, outcomes) -> list[str]:
    """The outcome table's column "Minimum detectable rate ratio": per outcome (in ``outcomes``
    order) the MDRR of the matched cohort at 80% power, 5% two-sided (evaluation.power), with
    the treated people needed to detect a 15% reduction; "n/a" where not computed or no
    reduction is detectable with these events."""
    by = {} if mdrr is None else {r.outcome: r for r in mdrr.itertuples()}
    cells = []
    for o in outcomes:
        r = by.get(o)
        if r is None or pd.isna(r.treated_needed_for_target):
            cells.append("n/a")
            continue
        mdrr_text = "none" if pd.isna(r.mdrr) else f"{r.mdrr:.2f}"
        cells.append(f"{mdrr_text} (RR 0.85 needs {significant(r.treated_needed_for_target, 2):,.0f} treated)")
    return cells


def _percent(v) -> str:
    return v if isinstance(v, str) else f"{v:.0f}%"


def _iapt_rows(iapt: pd.DataFrame | None) -> list[list]:
    if iapt is None or not len(iapt):
        return []
    return [[r.measure, suppress_count(r.n),
             "" if r.measure == "Matched treated people"
             else _percent(rounded_percentage(r.n, r.denominator))]
            for r in iapt.itertuples()]


SUBGROUP_NAMES = {"recovered": "Recovery", "ltc_group": "Long-term condition group",
                  "practice_code": "Site (practice of the treated person)"}


def _subgroup_rows(subgroups: pd.DataFrame | None) -> list[list]:
    if subgroups is None or not len(subgroups):
        return []
    rows = []
    for r in published_subgroups(subgroups).itertuples():
        if r.estimated:
            est, ci = gbp(r.net_saving_per_person), fmt_ci(r.lo95, r.hi95, money=True)
        else:
            est, ci = ("not estimated",
                       f"fewer than {MIN_SUBGROUP_TREATED} treated people or too few events")
        rows.append([SUBGROUP_NAMES.get(r.subgroup, r.subgroup), r.value, r.n_treated, est, ci])
    return rows


def _balance(balance: pd.DataFrame | None) -> dict | None:
    if balance is None or not len(balance):
        return None
    matched_on = (balance["matched_on"].astype(bool) if "matched_on" in balance
                  else pd.Series(True, index=balance.index))
    after = balance[(balance["stage"] == "after") & matched_on]
    b = published_balance(balance.assign(matched_on=matched_on))
    return {
        "worst_smd": f"{after['smd'].abs().max():.3f}" if len(after) else None,
        "n_imbalanced": int((after["smd"].abs() >= THRESHOLDS.max_abs_smd).sum()),
        "any_not_matched_on": bool((~matched_on).any()),
        "rows": [[r.covariate + ("" if r.matched_on else " (not matched on)"), r.stage,
                  published_num(r.mean_treated), published_num(r.mean_control), num(r.smd, 3),
                  num(r.variance_ratio, 2)] for r in b.itertuples()],
    }


ATTRITION_COLUMNS = {"step_order": "Step", "cohort": "Cohort", "step": "Description",
                     "n_persons": "People"}


def _attrition(published: pd.DataFrame | None) -> dict | None:
    if published is None:
        return None
    cols = [c for c in ATTRITION_COLUMNS if c in published.columns]
    return {"header": [ATTRITION_COLUMNS[c] for c in cols],
            "rows": published[cols].values.tolist()}


def _panel_rows(cohort: dict) -> list[list]:
    rows = [["Matched sets", suppress_count(cohort["matched_sets"])],
            ["Treated people analysed", suppress_count(cohort["treated_persons"])],
            ["Matched controls analysed", suppress_count(cohort["control_persons"])]]
    if "controls_referred_in_followup" in cohort:
        rows.append(["Of whom referred to talking therapies during follow-up (kept as controls)",
                     suppress_count(cohort["controls_referred_in_followup"])])
    return rows


def _unit_costs(uc: pd.DataFrame) -> dict:
    if "original_unit_cost_gbp" in uc:
        return {"header": ["Activity", "Published cost", "Price year", "Uplift", "Cost used",
                           "Prices of", "Source"],
                "rows": [[r.activity, gbp(r.original_unit_cost_gbp), r.original_price_year,
                          f"{r.uplift_factor:.3f}", gbp(r.unit_cost_gbp), r.price_year, r.source]
                         for r in uc.itertuples()]}
    # costs under £1 are shown unrounded
    return {"header": ["Activity", "Unit cost", "Price year", "Source"],
            "rows": [[r.activity, gbp(r.unit_cost_gbp) if r.unit_cost_gbp >= 1 else r.unit_cost_gbp,
                      r.price_year, r.source] for r in uc.itertuples()]}


def _price_index(pi: pd.DataFrame | None) -> dict | None:
    if pi is None:
        return None
    return {"rows": [[r.financial_year, f"{r.index_value:.2f}"] for r in pi.itertuples()],
            "source": "; ".join(sorted(set(pi["source"].astype(str)))),
            "status": "; ".join(sorted(set(pi["status"].astype(str)))) if "status" in pi else ""}


def _figures(inp: ReportInputs, published_attrition_table: pd.DataFrame | None) -> dict:
    c = inp.costing
    figs = {} if inp.blinded else {
        "waterfall": _figure(lambda ax: plot_waterfall(
            c.lines, c.mean_followup_years, c.therapy_cost_per_person, c.persistence_factor,
            ax=ax), (7.0, 3.6)),
        "naive_vs_did": _figure(lambda ax: plot_naive_vs_did(pd.concat(
            [e.tidy() for e in inp.estimates.values()], ignore_index=True), ax=ax), (7.0, 3.6)),
    }
    if not inp.blinded and inp.scenarios is not None and len(inp.scenarios) > 1:
        figs["tornado"] = _figure(lambda ax: plot_tornado(inp.scenarios, ax=ax),
                                  (7.6, 0.38 * (len(inp.scenarios) - 1) + 1.3))
    if inp.balance is not None and len(inp.balance):
        figs["love"] = _figure(lambda ax: plot_love(inp.balance, ax=ax),
                               (6.4, 0.28 * inp.balance["covariate"].nunique() + 1.2))
    if published_attrition_table is not None:
        figs["attrition"] = _figure(lambda ax: plot_attrition(published_attrition_table, ax=ax),
                                    (7.6, 0.32 * len(published_attrition_table) + 1.0))
    return figs


def _diagnostics(d: Diagnostics | None) -> dict | None:
    """The diagnostics table and, when a gate failed, what the report does about it."""
    if d is None:
        return None
    return {
        "rows": [[r.diagnostic, r.outcome, r.value, r.threshold,
                  r.status.upper() + (" (gate)" if r.gate and r.status != "pass" and r.blocks else ""), r.action]
                 for r in d.rows],
        "blinded": d.blinded,
        "failed": [{"name": r.diagnostic, "value": r.value, "threshold": r.threshold, "action": r.action}
                   for r in d.failed_gates],
        "override_reason": d.unblind_reason if d.overridden else None,
    }


def _common_context(inp: ReportInputs, rules: dict, attrition: pd.DataFrame | None, figures: dict) -> dict:
    """What the blinded and the full report share: no effect estimate in any of it."""
    p = inp.period
    return {
        "title": inp.title,
        "too_few": False,
        "rules": rules,
        "generated": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
        "period": {"reporting": p.get("reporting_period"),
                   "first_index": p.get("first_index_month"),
                   "last_index": p.get("last_index_month"),
                   "first_calendar": p.get("first_calendar_month"),
                   "last_calendar": p.get("last_calendar_month")},
        "diagnostics": _diagnostics(inp.diagnostics),
        "blinded": inp.blinded,
        "balance": _balance(inp.balance),
        "attrition": _attrition(attrition),
        "panel_rows": _panel_rows(inp.cohort),
        "design": {"comparison_group": _comparison_group(inp),
                   "selection_window": _selection_window_text(inp),
                   "comparison_period": _comparison_text(inp)},
        "unit_costs": _unit_costs(inp.unit_costs),
        "price_index": _price_index(inp.price_index),
        "figures": figures,
    }


def report_context(inp: ReportInputs) -> dict:
    """Everything the template shows, as plain values (published, formatted)."""
    rules = {"min_published": MAX_SUPPRESSED + 1, "min_subgroup": MIN_SUBGROUP_TREATED}
    if _too_few(inp):
        return {"title": inp.title, "too_few": True, "rules": rules}
    if inp.blinded:  # nothing derived from an estimate is even computed
        attrition = (published_attrition(inp.attrition)
                     if inp.attrition is not None and len(inp.attrition) else None)
        return _common_context(inp, rules, attrition, _figures(inp, attrition))
    published_costs = published_costing_table(inp.costing).set_index("quantity")
    attrition = (published_attrition(inp.attrition)
                 if inp.attrition is not None and len(inp.attrition) else None)
    # the figures are drawn in the order the old single-pass builder drew them
    figures = _figures(inp, attrition)
    event_figures = [(e.outcome, _figure(lambda ax, e=e: plot_event_study(e.event_study, ax=ax),
                                         (6.4, 3.6))) for e in inp.estimates.values()]
    scenarios = inp.scenarios
    return {
        **_common_context(inp, rules, attrition, figures),
        "summary": _summary(inp, published_costs),
        "costs": _costs(inp, published_costs),
        "outcome_rows": [row + [cell, cal] for row, cell, cal in zip(
            _outcome_rows(published_outcome_table(inp.estimates)), mdrr_cells(inp.mdrr, inp.estimates),
            calibrated_cells(inp.calibration, inp.negative_controls, inp.estimates))],
        "robustness": robustness_section(inp.robustness, inp.estimates),
        "calibration": calibration_section(inp.calibration, inp.negative_controls, inp.estimates),
        "scenario_rows": [] if scenarios is None or len(scenarios) <= 1 else [
            [r.group, r.label, gbp(r.gross_saving_per_person), gbp(r.therapy_cost_per_person),
             gbp(r.net_saving_per_person), fmt_ci(r.lo95, r.hi95, money=True)]
            for r in published_scenarios(scenarios).itertuples()],
        "sensitivity_notes": list(inp.sensitivity_notes),
        "linkage": linkage_section(inp.linkage),
        "iapt_rows": _iapt_rows(inp.iapt),
        "subgroup_rows": _subgroup_rows(inp.subgroups),
        "event_studies": {"summaries": [describe(e.event_study) for e in inp.estimates.values()],
                          "figures": event_figures},
    }


def _too_few(inp: ReportInputs) -> bool:
    return too_few_to_publish(inp.cohort["treated_persons"])


def build_html(inp: ReportInputs) -> str:
    return _ENV.get_template(TEMPLATE).render(report_context(inp))


def write_report(inp: ReportInputs, reports_dir: Path) -> dict[str, str]:
    """Write business_case.html and tables/*.csv under `reports_dir`; return the paths."""
    reports_dir = Path(reports_dir)
    tables = reports_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    frames: dict[str, pd.DataFrame] = {}

    def csv(name: str, df: pd.DataFrame) -> None:
        written[name] = str(write_csv(df, tables / f"{name}.csv"))
        frames[name] = df

    path = reports_dir / "business_case.html"
    path.write_text(build_html(inp), encoding="utf-8")
    written["html"] = str(path)
    if _too_few(inp):
        return written
    if inp.diagnostics is not None:
        diag_json = reports_dir / "diagnostics.json"
        diag_json.write_text(json.dumps(inp.diagnostics.as_json(), indent=2), encoding="utf-8")
        written["diagnostics_json"] = str(diag_json)
        csv("diagnostics", inp.diagnostics.frame())
    if inp.blinded:
        # the blinded report's tables: diagnostics and design only, no estimate (the MDRR is
        # computed without the treated people's use after the index: evaluation.power)
        _design_tables(inp, csv)
        xlsx = write_xlsx(reports_dir / "business_case_tables.xlsx", frames)
        if xlsx is not None:
            written["xlsx"] = str(xlsx)
        return written
    csv("outcomes_naive_vs_did", published_outcome_table(inp.estimates))
    es = pd.concat([e.event_study.tidy() for e in inp.estimates.values()], ignore_index=True)
    csv("event_study", published_event_study(es))
    csv("costing_summary", published_costing_table(inp.costing))
    csv("costing_by_activity", published_costing_lines(inp.costing))
    if inp.cost_did is not None:
        csv("cost_linear_did", published_cost_did(inp.cost_did))
    _design_tables(inp, csv)
    if inp.calibration is not None and inp.negative_controls:
        csv("negative_controls_and_calibration",
            published_calibration(inp.calibration, inp.negative_controls, inp.estimates))
    if inp.scenarios is not None:
        csv("sensitivity", published_scenarios(inp.scenarios))
    if inp.linkage is not None and inp.linkage.estimated:
        csv("linkage_sensitivity", published_linkage_sensitivity(inp.linkage))
    if inp.iapt is not None:
        csv("iapt_outcomes", published_iapt_outcomes(inp.iapt))
    if inp.subgroups is not None:
        csv("savings_by_subgroup", published_subgroups(inp.subgroups))
    csv("business_case_template", business_case_template(inp))
    xlsx = write_xlsx(reports_dir / "business_case_tables.xlsx", frames)
    if xlsx is not None:
        written["xlsx"] = str(xlsx)
    return written


def _design_tables(inp: ReportInputs, csv) -> None:
    """The tables of the design, written blinded or not: no effect estimate in them."""
    if inp.balance is not None:
        csv("balance", published_balance(inp.balance))
    if inp.attrition is not None:
        csv("attrition", published_attrition(inp.attrition))
    if inp.mdrr is not None:
        csv("minimum_detectable_rate_ratio", published_mdrr(inp.mdrr))
    csv("unit_costs", inp.unit_costs)
    if inp.price_index is not None:
        csv("price_index", inp.price_index)


def published_mdrr(mdrr: pd.DataFrame) -> pd.DataFrame:
    """The MDRR table as published: the MDRR to two decimals as in the HTML, the dispersion to
    two significant figures, people needed to two (coarse: the MDRR and the people needed
    together give the cohort's size roughly; finer figures would give it closely)."""
    t = mdrr.copy()
    t.insert(1, "label", [outcome_label(o) for o in t["outcome"]])
    t["mdrr"] = [round(v, 2) for v in t["mdrr"]]
    t["dispersion"] = [significant(v, 2) for v in t["dispersion"]]
    t["treated_needed_for_target"] = [significant(v, 2) for v in t["treated_needed_for_target"]]
    return t.rename(columns={"treated_needed_for_target": "treated_needed_for_rate_ratio_0.85"})


def business_case_template(inp: ReportInputs) -> pd.DataFrame:
    """One flat table of the figures a business-case template asks for (published values)."""
    t = published_costing_table(inp.costing)
    cfg = inp.config
    meta = [
        ("price_year", getattr(cfg, "price_year", None) or "as published"),
        ("interval_method", inp.costing.interval_kind),
        ("unit_cost_version", inp.costing.unit_cost_version),
        ("annual_caseload_basis", inp.costing.annual_caseload_basis),
        ("persistence_years_assumed", inp.costing.persistence_years),
        ("reporting_period", inp.period.get("reporting_period")),
        ("first_index_month", inp.period.get("first_index_month")),
        ("last_index_month", inp.period.get("last_index_month")),
    ]
    meta = [m for m in meta if m[0] != "reporting_period" or m[1] is not None]
    m = pd.DataFrame([{"quantity": k, "estimate": v, "lo95": None, "hi95": None} for k, v in meta])
    return pd.concat([t.drop(columns=["interval_method"], errors="ignore"), m], ignore_index=True)
