"""The business-case report: one self-contained HTML file (inline CSS, inline PNG plots) and
CSV tables, all aggregate and with small counts suppressed. No person or set identifiers.

Commissioners first: a one-paragraph summary with the headline net saving per treated person
and its interval; then per-outcome NAIVE vs matched DiD; event studies; balance; attrition;
design, assumptions, limitations and data period.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from evaluation.costing import CostingResult
from evaluation.did import LinearDiDResult, OutcomeEstimates
from evaluation.panel import OUTCOME_LABELS
from evaluation.plots import (fig_to_data_uri, plot_attrition, plot_event_study, plot_love,
                              plot_naive_vs_did, plot_tornado, plot_waterfall)
from evaluation.disclosure import MIN_SUBGROUP_TREATED as MIN_SUBGROUP
from evaluation.disclosure import (published_attrition, published_balance, published_cost_did,
                                   published_costing_table, published_iapt_outcomes,
                                   published_outcome_table, published_subgroups,
                                   rounded_percentage, suppress_count, too_few_to_publish)

CSS = """
body{font-family:Arial,Helvetica,sans-serif;max-width:1000px;margin:2em auto;color:#212b32;
line-height:1.45;padding:0 1em}
h1{color:#005eb8;font-size:1.7em}h2{color:#005eb8;border-bottom:2px solid #005eb8;
padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
.headline{background:#e8f1fa;border-left:6px solid #005eb8;padding:1em 1.2em;font-size:1.05em}
table{border-collapse:collapse;margin:.8em 0;font-size:.86em}
th,td{border:1px solid #c8ccd0;padding:.3em .55em;text-align:right}
th{background:#f0f4f5}td:first-child,th:first-child{text-align:left}
.naive{color:#8a6d00}.note{font-size:.85em;color:#4c6272}
.figs{display:flex;flex-wrap:wrap;gap:.5em}.figs img{max-width:49%;border:1px solid #e8edee}
img{max-width:100%}
.kfs{display:flex;gap:.6em;margin:1em 0}.kf{flex:1;border:1px solid #c8ccd0;border-top:5px solid #005eb8;
padding:.5em .7em;background:#fff}.kfl{font-size:.8em;color:#4c6272}.kfv{font-size:1.6em;font-weight:bold;
color:#212b32}.kfc{font-size:.78em;color:#4c6272}
"""


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


def _window(inp: ReportInputs, period: str) -> tuple[int, int] | None:
    """First and last relative month of a period, from the event studies' bins."""
    for e in inp.estimates.values():
        c = e.event_study.coefs
        c = c[c["period"] == period]
        if len(c):
            return int(c["first_month"].min()), int(c["last_month"].max())
    return None


def _selection_window_text(inp: ReportInputs) -> str:
    w = _window(inp, "selection")
    return f"months {w[0]} to {w[1]}" if w else "none in this run (dbt var selection_window_months = 0)"


def _comparison_text(inp: ReportInputs) -> str:
    w = _window(inp, "pre")
    return f"months {w[0]} to {w[1]}" if w else "not available"


def _gbp(x: float) -> str:
    if x is None or pd.isna(x):
        return "not estimable"
    return f"-£{abs(x):,.0f}" if x < 0 else f"£{x:,.0f}"


def _num(x, d=2) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return f"{x:,.{d}f}"


def _ci(lo, hi, d=2, money=False) -> str:
    f = _gbp if money else (lambda v: _num(v, d))
    return f"{f(lo)} to {f(hi)}"


def _html_table(rows: list[list], header: list[str], cls: str = "") -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


COMPARISON_GROUPS = {
    "not_yet_referred": (
        "Controls are people with a long-term condition at practices where the pathway was live "
        "by the index month who had not been referred to talking therapies by then: they faced the "
        "same referral pressure in the months before the index, so their earlier use carries the "
        "same selection as the treated people's (who were, likewise, not referred earlier). "
        "Controls referred later stay controls (intention to treat: the estimate is of referral "
        "now against usual care, which can include later referral; this makes it conservative "
        "if therapy works){followup}."),
    "non_ltc_practices": (
        "Controls are people with a long-term condition at practices without the pathway, never "
        "treated in IAPT before the index month."),
    "untreated_any_practice": (
        "Controls are people with a long-term condition at any practice, never on the pathway "
        "(this conditions on their future and is a sensitivity design only)."),
}


def _control_phrase(inp: ReportInputs) -> str:
    if inp.cohort.get("comparison_design") == "not_yet_referred":
        return ("at practices offering the service who had not been referred to it by then "
                "(some were later; see Design)")
    return "who were not seen by the service"


def _comparison_group_text(inp: ReportInputs) -> str:
    text = COMPARISON_GROUPS.get(inp.cohort.get("comparison_design", ""), "")
    n = inp.cohort.get("controls_referred_in_followup")
    followup = ""
    if n is not None and inp.cohort.get("control_persons"):
        shown = suppress_count(n)
        followup = (f"; {shown} of {suppress_count(inp.cohort['control_persons'])} matched controls "
                    f"were referred during their follow-up")
    return text.replace("{followup}", followup)


def _summary_paragraph(inp: ReportInputs) -> str:
    c = inp.costing
    pub = published_costing_table(c).set_index("quantity")
    cohort_net = pub.loc["cohort_net_saving"]
    lo, hi = c.net_saving_per_person_ci
    n_t = suppress_count(inp.cohort["treated_persons"])
    n_c = suppress_count(inp.cohort["control_persons"])
    if pd.isna(lo) or pd.isna(hi):
        verdict = ("The saving could not be estimated: too few events in at least one costed "
                   "outcome for this cohort (see the outcome table).")
    elif lo > 0:
        verdict = ("The whole interval is above zero: on these data the service more than pays "
                   "for itself in reduced hospital and GP use within a year.")
    elif hi < 0:
        verdict = ("The whole interval is below zero: within a year the reduction in hospital and "
                   "GP use does not pay for the therapy (benefits to health and wellbeing are not "
                   "counted here).")
    else:
        verdict = ("The interval includes zero: the data are consistent with the service "
                   "saving money, breaking even, or costing more than it saves within a year.")
    naive_bits = []
    for o in ("ae_attendances", "emergency_admissions"):
        if o in inp.estimates:
            e = inp.estimates[o]
            naive_bits.append(
                f"{OUTCOME_LABELS[o]} {e.naive.pct_change:+.0%} naive vs rate ratio "
                f"{e.did.rate_ratio:.2f} ({_ci(*e.did.rate_ratio_ci)}) matched")
    naive_txt = ""
    if naive_bits:
        naive_txt = (" Simple before/after figures for treated people alone (labelled NAIVE "
                     "below: " + "; ".join(naive_bits) + ") are not estimates of the effect: people "
                     "are referred near a peak of use that tends to fall anyway, which only the "
                     "comparison with matched controls removes.")
    cohort_txt = ""
    if not pd.isna(cohort_net["estimate"]):
        cohort_txt = (f"; for the cohort evaluated, {_gbp(cohort_net['estimate'])} "
                      f"({_ci(cohort_net['lo95'], cohort_net['hi95'], money=True)})")
    caseload_txt = ""
    if c.annual_caseload and not pd.isna(c.caseload_net_saving):
        caseload_txt = (f" For a caseload of {c.annual_caseload:,} treated people a year the "
                        f"projected net saving is <b>{_gbp(c.caseload_net_saving)} a year</b> "
                        f"({_ci(*c.caseload_net_saving_ci, money=True)}).")
    cfg = inp.config
    price_txt = (f"{cfg.price_year}" if cfg is not None and getattr(cfg, "price_year", None)
                 else "published (mixed-year)")
    first, last = inp.period.get("first_index_month"), inp.period.get("last_index_month")
    when = f" with an index date (referral to the service) between {first} and {last}" if first else ""
    return (
        _key_figures(c, price_txt)
        + f"<p class='headline'><b>Summary.</b> The <b>net saving is "
        f"{_gbp(c.net_saving_per_person)} per treated person (95% CI {_ci(lo, hi, money=True)})"
        f"</b>{' - that is, a net cost' if c.net_saving_per_person < 0 else ''}: the value of "
        f"the change in A&amp;E, emergency admission, outpatient and GP use attributable to the "
        f"service over the 12 months after the index date "
        f"({_gbp(c.gross_saving_per_person)} per person, 95% CI "
        f"{_ci(*c.gross_saving_per_person_ci, money=True)}) minus the therapy cost of "
        f"{_gbp(c.therapy_cost_per_person)} per course. That is a return of {c.roi:+.2f} per £1 "
        f"spent ({c.roi_ci[0]:+.2f} to {c.roi_ci[1]:+.2f}){cohort_txt}.{caseload_txt} {verdict} "
        f"The evidence: about {n_t} people{when} compared with about {n_c} matched people "
        f"with similar health, history of healthcare use and characteristics "
        f"{_control_phrase(inp)} (matched difference-in-differences). "
        f"<span class='note'>Intervals: {'cluster bootstrap of matched sets' if c.interval_kind == 'bootstrap' else 'delta method'}"
        f"; costs in {html.escape(price_txt)} prices.</span>"
        f"{html.escape(naive_txt)}</p>"
    )


def _key_figures(c: CostingResult, price_txt: str) -> str:
    """Three key figures for the first screen."""
    boxes = [("Net saving per treated person", _gbp(c.net_saving_per_person),
              f"95% CI {_ci(*c.net_saving_per_person_ci, money=True)}"),
             ("Return per £1 spent on therapy", f"{c.roi:+.2f}",
              f"95% CI {c.roi_ci[0]:+.2f} to {c.roi_ci[1]:+.2f}"),
             ("Break-even therapy cost per course", _gbp(c.break_even_therapy_cost),
              f"current cost {_gbp(c.therapy_cost_per_person)}")]
    if c.annual_caseload and not pd.isna(c.caseload_net_saving):
        boxes.append((f"Net saving a year, {c.annual_caseload:,} people treated a year",
                      _gbp(c.caseload_net_saving),
                      f"95% CI {_ci(*c.caseload_net_saving_ci, money=True)}"))
    cells = "".join(
        f"<div class='kf'><div class='kfl'>{html.escape(a)}</div><div class='kfv'>{html.escape(b)}"
        f"</div><div class='kfc'>{html.escape(d)}</div></div>" for a, b, d in boxes)
    return f"<div class='kfs' role='group' aria-label='Key figures ({html.escape(price_txt)} prices)'>{cells}</div>"


def _period_note(inp: ReportInputs) -> str:
    """The run's data period, first line under the title."""
    rp = inp.period.get("reporting_period")
    return f"Data period: extracts up to the end of <b>{html.escape(str(rp))}</b>. " if rp else ""


def _too_few(inp: ReportInputs) -> bool:
    return too_few_to_publish(inp.cohort["treated_persons"])


def build_html(inp: ReportInputs) -> str:
    if _too_few(inp):
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                f"<title>{html.escape(inp.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{html.escape(inp.title)}</h1><p class='headline'>Fewer than 8 treated people "
                f"were matched: under the disclosure rules no rates, means or savings are "
                f"published for a cohort this small.</p></body></html>")
    c = inp.costing
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(inp.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(inp.title)}</h1>",
             f"<p class='note'>{_period_note(inp)}Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"Counts are rounded to the nearest 5 and counts of 1-7 shown as *.</p>",
             _summary_paragraph(inp)]

    # costing
    parts.append("<h2 id='costs'>Costs and savings per treated person</h2>")
    rows = [
        ["Gross saving (costed change in use, 12 months)", _gbp(c.gross_saving_per_person),
         _ci(*c.gross_saving_per_person_ci, money=True)],
        ["Therapy cost per course", _gbp(c.therapy_cost_per_person), "fixed"],
        ["Net saving", _gbp(c.net_saving_per_person), _ci(*c.net_saving_per_person_ci, money=True)],
        ["Return on investment (net per £1)", f"{c.roi:+.2f}", f"{c.roi_ci[0]:+.2f} to {c.roi_ci[1]:+.2f}"],
        ["Break-even therapy cost per course", _gbp(c.break_even_therapy_cost),
         _ci(*c.gross_saving_per_person_ci, money=True)],
    ]
    pub = published_costing_table(c).set_index("quantity")
    if not pd.isna(pub.loc["cohort_net_saving", "estimate"]):
        r = pub.loc["cohort_net_saving"]
        rows.append([f"Cohort net saving (about {int(pub.loc['cohort_treated_persons_rounded', 'estimate'])}"
                     " treated people)", _gbp(r["estimate"]), _ci(r["lo95"], r["hi95"], money=True)])
    if c.annual_caseload:
        rows += [
            [f"Projected gross saving a year, caseload {c.annual_caseload:,} treated people",
             _gbp(c.caseload_gross_saving), _ci(*c.caseload_gross_saving_ci, money=True)],
            [f"Projected therapy cost a year, caseload {c.annual_caseload:,}",
             _gbp(c.therapy_cost_per_person * c.annual_caseload), "fixed"],
            [f"Projected net saving a year, caseload {c.annual_caseload:,}",
             _gbp(c.caseload_net_saving), _ci(*c.caseload_net_saving_ci, money=True)],
        ]
    parts.append(_html_table(rows, ["Quantity", "Estimate", "95% interval"]))
    interval_txt = ("Intervals: <b>cluster bootstrap</b> (matched sets resampled)."
                    if c.interval_kind == "bootstrap" else "Intervals: <b>delta method</b>.")
    parts.append(
        f"<p class='note'>{interval_txt} {html.escape(c.interval_method)} Per treated person = "
        f"the first year after the index month (mean observed follow-up "
        f"{c.mean_followup_years:.2f} years"
        + (f", plus {c.persistence_years} further year(s) of effect assumed, halving "
           f"{c.persistence_decay:g} a year, discounted" if c.persistence_years else
           "; no effect is assumed beyond the observed 12 months")
        + "). Break-even therapy cost = the gross saving per person: the most a course could "
        "cost for the service to pay for itself."
        + (f" Caseload: {html.escape(c.annual_caseload_basis)}; treated as fixed."
           if c.annual_caseload else "") + "</p>")
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    plot_waterfall(c.lines, c.mean_followup_years, c.therapy_cost_per_person,
                   c.persistence_factor, ax=ax)
    parts.append(f"<img alt='Savings waterfall' src='{fig_to_data_uri(fig)}'>")
    lines = [[OUTCOME_LABELS.get(r.outcome, r.outcome), _gbp(r.unit_cost_gbp), r.price_year,
              _num(r.abs_change_per_person_year, 3),
              _ci(r.abs_change_lo95, r.abs_change_hi95, 3), _gbp(r.saving_gbp_per_person_year),
              _ci(r.saving_lo95, r.saving_hi95, money=True)] for r in c.lines.itertuples()]
    parts.append("<h3>By activity (per treated person-year)</h3>")
    parts.append(_html_table(lines, ["Activity", "Unit cost", "Price year", "Change in use",
                                     "95% CI", "Saving", "95% CI"]))
    parts.append(
        f"<p class='note'>Saving = minus (matched DiD absolute change x unit cost); activity "
        f"intervals are delta-method. Emergency "
        f"admissions are priced at the non-elective tariff, which covers the stay, so bed days are "
        f"reported but not costed (no double counting). Therapy cost: "
        f"{html.escape(c.therapy_cost_source)}. Unit-cost table version "
        f"{html.escape(c.unit_cost_version)}.</p>")
    if inp.cost_did is not None:
        d = inp.cost_did
        parts.append(
            f"<p class='note'>Cross-check: a linear matched DiD on each person's costed use gives "
            f"{_gbp(-d.estimate_per_py)} saving per treated person-year (95% CI "
            f"{_ci(-d.ci[1], -d.ci[0], money=True)}).</p>")

    # outcomes
    parts.append("<h2 id='outcomes'>Effect on each outcome: NAIVE before/after vs matched DiD</h2>")
    t = published_outcome_table(inp.estimates)
    rows = []
    for r in t.itertuples():
        def f(v, d=2):
            return _num(v, d)
        naive = (f"{f(r.naive_pre_per_person_year)} → {f(r.naive_post_per_person_year)} "
                 f"({'*' if isinstance(r.naive_pct_change, str) else f'{r.naive_pct_change:+.0%}'})")
        rows.append([
            r.label, naive,
            f"{f(r.naive_change_per_person_year)} ({_ci(r.naive_change_lo95, r.naive_change_hi95)})"
            if not isinstance(r.naive_change_lo95, str) else "*",
            f"{f(r.did_rate_ratio)} ({_ci(r.did_rate_ratio_lo95, r.did_rate_ratio_hi95)})"
            if not isinstance(r.did_rate_ratio_lo95, str) else "*",
            f"{f(r.did_abs_change_per_person_year)} ({_ci(r.did_abs_change_lo95, r.did_abs_change_hi95)})"
            if not isinstance(r.did_abs_change_lo95, str) else "*",
            "n/a" if pd.isna(r.pretrend_p) else f"{r.pretrend_p:.2f}", r.n_treated, r.n_controls,
        ])
    parts.append(_html_table(rows, [
        "Outcome", "NAIVE: treated rate per person-year, before → after",
        "NAIVE change (95% CI)", "Matched DiD rate ratio (95% CI)",
        "Matched DiD change per treated person-year (95% CI)", "Pre-trend p", "Treated",
        "Controls"]))
    parts.append(
        "<p class='note'><span class='naive'>NAIVE</span> = treated people only (every eligible "
        "treated person, matched or not, as a site without a comparison group would count them), "
        "12 months after minus 12 months before the index month; no comparison group, so it includes the fall "
        "that follows any peak in use (regression to the mean). Matched DiD = change in treated "
        "people relative to the change in their matched controls (conditional Poisson with person "
        "fixed effects and relative-month effects, exposure offset, standard errors clustered on "
        "the matched set). Rate ratio below 1 = less use than expected without the service.</p>")

    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    plot_naive_vs_did(pd.concat([e.tidy() for e in inp.estimates.values()], ignore_index=True)
                      if not _too_few(inp) else t, ax=ax)
    parts.append(f"<img alt='NAIVE vs matched DiD' src='{fig_to_data_uri(fig)}'>")

    # sensitivity
    parts.append("<h2 id='sensitivity'>Sensitivity analyses</h2>")
    if inp.scenarios is not None and len(inp.scenarios) > 1:
        fig, ax = plt.subplots(figsize=(7.6, 0.38 * (len(inp.scenarios) - 1) + 1.3))
        plot_tornado(inp.scenarios, ax=ax)
        parts.append(f"<img alt='Sensitivity tornado' src='{fig_to_data_uri(fig)}'>")
        parts.append(_html_table(
            [[r.group, r.label, _gbp(r.gross_saving_per_person), _gbp(r.therapy_cost_per_person),
              _gbp(r.net_saving_per_person), _ci(r.lo95, r.hi95, money=True)]
             for r in inp.scenarios.itertuples()],
            ["Choice", "Scenario", "Gross saving", "Therapy cost", "Net saving", "95% CI"]))
        parts.append("<p class='note'>Each scenario changes one choice from the base case. "
                     "Scenario intervals are delta-method (the base case's is as stated above). "
                     "Persistence scenarios are assumptions, not estimates: the data cover 12 "
                     "months after the index month.</p>")
    else:
        parts.append("<p>Sensitivity analyses not available.</p>")
    if inp.sensitivity_notes:
        parts.append("<ul class='note'>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in inp.sensitivity_notes) + "</ul>")

    # secondary analyses
    parts.append("<h2 id='secondary'>Secondary analyses</h2>")
    if inp.iapt is not None and len(inp.iapt):
        parts.append("<h3>Talking-therapy outcomes of the matched treated people</h3>")
        parts.append(_html_table(
            [[r.measure, suppress_count(r.n),
              "" if r.measure == "Matched treated people" else
              (lambda v: v if isinstance(v, str) else f"{v:.0f}%")(
                  rounded_percentage(r.n, r.denominator))]
             for r in inp.iapt.itertuples()], ["Measure", "People", "Per cent"]))
        parts.append("<p class='note'>Recovery among people above the clinical threshold at the "
                     "start; percentages from rounded counts.</p>")
    if inp.subgroups is not None and len(inp.subgroups):
        parts.append("<h3>Net saving per treated person by subgroup</h3>")
        names = {"recovered": "Recovery", "ltc_group": "Long-term condition group",
                 "practice_code": "Site (practice of the treated person)"}
        rows = []
        for r in inp.subgroups.itertuples():
            if r.estimated:
                est, ci = _gbp(r.net_saving_per_person), _ci(r.lo95, r.hi95, money=True)
            else:
                est, ci = "not estimated", f"fewer than {MIN_SUBGROUP} treated people or too few events"
            rows.append([names.get(r.subgroup, r.subgroup), r.value, suppress_count(r.n_treated),
                         est, ci])
        parts.append(_html_table(rows, ["Split by", "Subgroup", "Treated people", "Net saving",
                                        "95% CI"]))
        parts.append("<p class='note'>Each subgroup's treated people with their own matched "
                     "controls, analysed as the main analysis (delta-method intervals). "
                     "Subgroups are small: intervals are wide and differences between them are "
                     "not tested. Recovery is an outcome of therapy, so the split by recovery is "
                     "descriptive, not causal.</p>")

    # event studies
    parts.append("<h2 id='event'>Event studies (trends before and after the index month)</h2>")
    parts.append("<p class='note'>Rate ratio of treated vs matched controls in each month "
                 "(or 3-month bin for outcomes too rare for monthly estimates), relative to the "
                 "month (bin) just before the index month. Before the index month the points "
                 "should sit near 1 (parallel trends); the joint test is in each title. Months "
                 "with no events in one group cannot be estimated and are left out.</p>")
    parts.append("<ul class='note'>" + "".join(
        f"<li>{html.escape(e.event_study.summary())}</li>" for e in inp.estimates.values())
        + "</ul>")
    imgs = []
    for e in inp.estimates.values():
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        plot_event_study(e.event_study, ax=ax)
        imgs.append(f"<img alt='event study {html.escape(e.outcome)}' src='{fig_to_data_uri(fig)}'>")
    parts.append("<div class='figs'>" + "".join(imgs) + "</div>")

    # balance
    parts.append("<h2 id='balance'>Balance of the matched groups</h2>")
    if inp.balance is not None and len(inp.balance):
        fig, ax = plt.subplots(figsize=(6.4, 0.28 * inp.balance["covariate"].nunique() + 1.2))
        plot_love(inp.balance, ax=ax)
        parts.append(f"<img alt='Love plot' src='{fig_to_data_uri(fig)}'>")
        matched_on = (inp.balance["matched_on"].astype(bool) if "matched_on" in inp.balance
                      else pd.Series(True, index=inp.balance.index))
        after = inp.balance[(inp.balance["stage"] == "after") & matched_on]
        if len(after):
            worst = after["smd"].abs().max()
            n_bad = int((after["smd"].abs() >= 0.1).sum())
            parts.append(f"<p>After matching the largest absolute standardised mean difference of "
                         f"the covariates matched on is {worst:.3f}; {n_bad} covariate(s) at or above 0.1.")
            if (~matched_on).any():
                parts.append(" Covariates marked <i>not matched on</i> (open markers) are shown for "
                             "reference: the baseline year's counts include the comparison period, "
                             "whose level differences person fixed effects remove (see Design).")
            parts.append("</p>")
        b = inp.balance.assign(matched_on=matched_on)
        parts.append(_html_table(
            [[r.covariate + ("" if r.matched_on else " (not matched on)"), r.stage,
              _num(r.mean_treated, 3), _num(r.mean_control, 3),
              _num(r.smd, 3), _num(r.variance_ratio, 2)] for r in b.itertuples()],
            ["Covariate", "Stage", "Mean treated", "Mean control", "SMD", "Variance ratio"]))
    else:
        parts.append("<p>Balance table not available.</p>")

    # attrition
    parts.append("<h2 id='attrition'>Attrition: from referrals to the matched cohort</h2>")
    if inp.attrition is not None and len(inp.attrition):
        a = published_attrition(inp.attrition)
        cols = [c for c in ("step_order", "cohort", "step", "n_persons") if c in a.columns]
        names = {"step_order": "Step", "cohort": "Cohort", "step": "Description",
                 "n_persons": "People"}
        fig, ax = plt.subplots(figsize=(7.6, 0.32 * len(a) + 1.0))
        plot_attrition(a, ax=ax)
        parts.append(f"<img alt='Attrition flow' src='{fig_to_data_uri(fig)}'>")
        parts.append(_html_table(a[cols].values.tolist(), [names[c] for c in cols]))
    else:
        parts.append("<p>Attrition table not available.</p>")
    coh = inp.cohort
    parts.append(_html_table(
        [["Matched sets", suppress_count(coh["matched_sets"])],
         ["Treated people analysed", suppress_count(coh["treated_persons"])],
         ["Matched controls analysed", suppress_count(coh["control_persons"])],
         *([["Of whom referred to talking therapies during follow-up (kept as controls)",
             suppress_count(coh["controls_referred_in_followup"])]]
           if "controls_referred_in_followup" in coh else [])],
        ["Analysis panel", "Count"]))

    # design
    p = inp.period
    uc_rows = [[r.activity, _gbp(r.unit_cost_gbp) if r.unit_cost_gbp >= 1 else r.unit_cost_gbp,
                r.price_year, r.source] for r in inp.unit_costs.itertuples()]
    parts.append("<h2 id='design'>Design, assumptions and limitations</h2>")
    parts.append(f"""
<ul>
<li><b>Data period.</b> {f"Extracts up to the end of {p.get('reporting_period')}. " if p.get('reporting_period') else ""}Index months {p.get('first_index_month')} to {p.get('last_index_month')};
calendar months covered {p.get('first_calendar_month')} to {p.get('last_calendar_month')}.</li>
<li><b>Design.</b> Stacked matched difference-in-differences: each treated person and their matched
controls share an index month (referral to the service by default; dbt var index_date_rule).
{_comparison_group_text(inp)}
People are referred after a spell of high use, so the months just before the index (the selection
window: {_selection_window_text(inp)}) hold a peak. Controls are matched on their use in the selection window, and the
difference-in-differences compares the months before it (the comparison period: {_comparison_text(inp)}) with
months 1-12 after the index; the selection window and the index month are shown in the event studies but
left out of the contrast. Matching on the same noisy counts the contrast starts from would make the controls
regress to the mean more than the treated people and bias the estimate; level differences that remain in
the comparison period are removed by person fixed effects (baseline-year counts are shown in the balance
table as not matched on). Controls in sets with fewer controls carry
more weight so each treated person has one comparator's worth of controls.</li>
<li><b>Counts.</b> Conditional (fixed-effects) Poisson with relative-month effects and an exposure
offset; rate ratio = exp(treated x post). Consistent if the mean model is right, whatever the
over-dispersion; standard errors clustered on the matched set (sets that share a person, a control
referred later who is also treated, form one cluster). Absolute changes = treated post rate x
(1 - 1/rate ratio), delta-method intervals.</li>
<li><b>Key assumption.</b> Without the service, treated people's use would have changed as their
matched controls' did (parallel trends), from the comparison period to the post period, once the
selection-window peak has passed. The event studies and pre-trend tests check this within the comparison
period; they cannot check it after the index. If the peak that leads to referral lasts longer than the
selection window, part of its fall is counted as a saving (a longer window is a sensitivity check:
dbt var selection_window_months).</li>
<li><b>Limitations.</b> Matching is on recorded characteristics only: unrecorded differences
(motivation, severity not captured in records) can bias the estimate. Follow-up is 12 months; longer
effects are not counted unless a persistence assumption is stated (sensitivity analyses). Costs are
national unit costs (or a site's local tariff where supplied) re-based to one price year with the NHS cost
inflation index below; emergency admissions use the short-stay tariff (long stays cost more,
so savings on long stays are understated). Prescribing, social care and benefits to health and
wellbeing are not included. Intervals treat unit costs as fixed. Deaths and deregistrations reduce
exposure; people are not followed beyond it.</li>
</ul>""")
    parts.append("<p class='note'>Small numbers: counts are rounded to the nearest 5 and counts "
                 "of 1-7 shown as *; rates, means and savings of groups of 1-7 people are not "
                 "published; subgroups of fewer than " + str(MIN_SUBGROUP) + " treated people are "
                 "not estimated. No person or matched-set identifiers are published.</p>")
    parts.append("<h3>Unit costs used</h3>")
    uc = inp.unit_costs
    if "original_unit_cost_gbp" in uc:
        uc_rows = [[r.activity, _gbp(r.original_unit_cost_gbp), r.original_price_year,
                    f"{r.uplift_factor:.3f}", _gbp(r.unit_cost_gbp), r.price_year, r.source]
                   for r in uc.itertuples()]
        parts.append(_html_table(uc_rows, ["Activity", "Published cost", "Price year", "Uplift",
                                           "Cost used", "Prices of", "Source"]))
    else:
        parts.append(_html_table(uc_rows, ["Activity", "Unit cost", "Price year", "Source"]))
    if inp.price_index is not None:
        pi = inp.price_index
        parts.append("<h3>Price index used for re-basing</h3>")
        parts.append(_html_table(
            [[r.financial_year, f"{r.index_value:.2f}"] for r in pi.itertuples()],
            ["Financial year", "Index"]))
        src = "; ".join(sorted(set(pi["source"].astype(str))))
        status = "; ".join(sorted(set(pi["status"].astype(str)))) if "status" in pi else ""
        parts.append(f"<p class='note'>Source: {html.escape(src)}. {html.escape(status)}. "
                     f"Versioned file: evaluation/data/nhs_cost_inflation_index.csv. A bare year "
                     f"(\"2017\") is read as the financial year starting that April.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(inp: ReportInputs, reports_dir: Path) -> dict[str, str]:
    """Write business_case.html and tables/*.csv under `reports_dir`; return the paths."""
    reports_dir = Path(reports_dir)
    tables = reports_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def csv(name: str, df: pd.DataFrame) -> None:
        path = tables / f"{name}.csv"
        df.to_csv(path, index=False)
        written[name] = str(path)

    path = reports_dir / "business_case.html"
    path.write_text(build_html(inp), encoding="utf-8")
    written["html"] = str(path)
    if _too_few(inp):
        return written
    csv("outcomes_naive_vs_did", published_outcome_table(inp.estimates))
    es = pd.concat([e.event_study.tidy() for e in inp.estimates.values()], ignore_index=True)
    csv("event_study", es)
    csv("costing_summary", published_costing_table(inp.costing))
    csv("costing_by_activity", inp.costing.lines)
    if inp.cost_did is not None:
        csv("cost_linear_did", published_cost_did(inp.cost_did))
    if inp.balance is not None:
        csv("balance", published_balance(inp.balance))
    if inp.attrition is not None:
        csv("attrition", published_attrition(inp.attrition))
    csv("unit_costs", inp.unit_costs)
    if inp.price_index is not None:
        csv("price_index", inp.price_index)
    if inp.scenarios is not None:
        csv("sensitivity", inp.scenarios)
    if inp.iapt is not None:
        csv("iapt_outcomes", published_iapt_outcomes(inp.iapt))
    if inp.subgroups is not None:
        csv("savings_by_subgroup", published_subgroups(inp.subgroups))
    csv("business_case_template", business_case_template(inp))
    written.update(write_xlsx(reports_dir, {k: v for k, v in written.items() if k != "html"}))
    return written


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


def write_xlsx(reports_dir: Path, csv_paths: dict[str, str]) -> dict[str, str]:
    """All tables in one workbook, if openpyxl or xlsxwriter is installed (else nothing)."""
    import importlib.util

    engine = next((e for e in ("openpyxl", "xlsxwriter") if importlib.util.find_spec(e)), None)
    if engine is None:
        return {}
    path = Path(reports_dir) / "business_case_tables.xlsx"
    with pd.ExcelWriter(path, engine=engine) as xw:
        for name, p in csv_paths.items():
            pd.read_csv(p).to_excel(xw, sheet_name=name[:31], index=False)
    return {"xlsx": str(path)}
