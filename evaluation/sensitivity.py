"""Sensitivity analyses of the net saving per treated person (the report's tornado chart) and
secondary analyses (IAPT clinical outcomes, savings by subgroup).

Each scenario changes one choice and re-estimates the net saving per treated person with its
95% delta-method interval (the bootstrap is kept for the base case: re-running it for every
scenario would multiply the run time without changing the comparison):

- unit costs: the 2016/17 reference-cost set (A&E 148 GBP instead of 280 GBP; outpatients and
  excess bed days as before; other activities keep the base figures), costs as published without
  re-basing to one price year, admissions at the long-stay tariff (upper bound), bed days costed
  at the excess-bed-day cost instead of admissions, therapy priced per contact (care contact
  cost x mean treatment contacts of the treated cohort) instead of per course, national costs
  instead of a local tariff (only when a local tariff is used);
- count model: negative binomial (NB2, statsmodels `NegativeBinomial`) on each person's pre and
  post counts with a log person-time offset, treated, post and treated x post, standard errors
  clustered on the matched set; the absolute change is 12 x r1 x (1 - 1/RR) with r1 the treated
  post rate, its interval from the NB rate ratio's only, outcomes taken as independent (a
  stated approximation for this one scenario);
- outcome window: post period months 1-6 instead of 1-12, the saving per person-year
  annualised over the base follow-up;
- people who died: everyone who died before the end of their 12-month follow-up is left out
  (with their set when they were its treated person or only control). This conditions on
  survival, which therapy might affect: it is a check, not a better estimate;
- effect persistence beyond the observed 12 months: 1 and 2 further years with the effect
  halving each year, discounted at 3.5% a year (stated assumptions; the base counts none);
- matching ratio and caliper: needs the matched panel rebuilt by dbt with other matching
  settings; run only if alternative panels `mart_evaluation_panel__<label>` are in the
  warehouse, otherwise reported as not run.

How it is computed (the figures do not depend on it): every re-estimate fits the costed
outcomes together on the columns the model reads, with the panel's text ids as codes
(`evaluation.panel.PanelCodes`, made once); the 6-month window, the deaths scenario
(`evaluation.panel.drop_persons_coded`: what preparing the table without those people gives)
and each subgroup (its matched sets' rows, found from one sort) are subsets of the prepared
panel, never the table read and prepared again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from evaluation.costing import (DEFAULT_COSTED_OUTCOMES, REFERENCE_2016_17_PATH, THERAPY_ACTIVITY,
                                CostingConfig, CostingResult, estimate_costs, override_unit_costs,
                                prepare_unit_costs)
from evaluation.did import POISSON_DID_COLUMNS, CountDiDResult, estimate_poisson_dids
from evaluation.disclosure import MIN_SUBGROUP_TREATED, suppress_count
from evaluation.methods.common import Z95
from core.contract import POST_MONTHS
from evaluation.panel import PanelCodes, drop_persons_coded, prepare_panel


@dataclass(frozen=True)
class Scenario:
    group: str
    label: str
    net_saving_per_person: float
    lo95: float
    hi95: float
    gross_saving_per_person: float
    therapy_cost_per_person: float
    note: str = ""


def _scenario(group, label, c: CostingResult, note="") -> Scenario:
    return Scenario(group, label, c.net_saving_per_person, *c.net_saving_per_person_ci,
                    c.gross_saving_per_person, c.therapy_cost_per_person, note)


_NB_KEYS = ["matched_set_id", "cluster_id", "unit_id", "person_id", "is_treated", "weight", "period"]


def nb_did(panel: pd.DataFrame, outcome: str) -> CountDiDResult | None:
    """Negative binomial DiD on person pre/post counts (see the module docstring)."""
    return nb_dids(panel, (outcome,))[outcome]


def nb_dids(panel: pd.DataFrame, outcomes, codes: PanelCodes | None = None) -> dict[str, CountDiDResult | None]:
    """`nb_did` of each outcome, the same fits: each person's pre and post counts of every
    outcome summed in one grouping (by seven keys) instead of one each. ``codes``: the panel's
    `PanelCodes` (with persons), when made already: the four text keys are grouped by their
    codes, which sort as the text does (the same groups in the same order)."""
    outcomes = list(dict.fromkeys(outcomes))
    rows = panel["period"].isin(["pre", "post"]).to_numpy()
    values = [*outcomes, "exposure_months"]
    if codes is None:
        df = panel.loc[rows, [*_NB_KEYS, *values]]
    else:
        c = codes.take(rows)
        df = panel.loc[rows, ["is_treated", "weight", "period", *values]].assign(
            matched_set_id=c.sets.codes, cluster_id=c.clusters.codes, unit_id=c.units.codes,
            person_id=c.persons.codes)
    sums = df.groupby(_NB_KEYS, as_index=False)[values].sum()
    return {o: _nb_fit(sums[[*_NB_KEYS, o, "exposure_months"]], o, len(df)) for o in outcomes}


def _nb_fit(agg: pd.DataFrame, outcome: str, n_person_months: int) -> CountDiDResult | None:
    agg = agg[agg["exposure_months"] > 0]
    agg["post"] = (agg["period"] == "post").astype(float)
    agg["treated_post"] = agg["post"] * agg["is_treated"]
    X = sm.add_constant(agg[["is_treated", "post", "treated_post"]].astype(float))
    if agg.loc[agg["treated_post"] == 1, outcome].sum() == 0:
        return None
    groups = pd.factorize(agg["cluster_id"])[0]
    try:
        res = sm.NegativeBinomial(agg[outcome].astype(float), X,
                                  offset=np.log(agg["exposure_months"]), loglike_method="nb2").fit(
            disp=0, maxiter=200, cov_type="cluster", cov_kwds={"groups": groups})
    except Exception:  # noqa: BLE001 - a failed sensitivity fit is reported, not fatal
        return None
    b, se = float(res.params["treated_post"]), float(res.bse["treated_post"])
    tp = agg[(agg["is_treated"] == 1) & (agg["post"] == 1)]
    r1 = float(tp[outcome].sum() / tp["exposure_months"].sum())
    abs_py = 12 * r1 * (1 - np.exp(-b))
    se_abs = 12 * r1 * np.exp(-b) * se
    n_t = int(agg.loc[agg["is_treated"] == 1, "unit_id"].nunique())
    return CountDiDResult(
        outcome=outcome, rate_ratio=float(np.exp(b)),
        rate_ratio_ci=(float(np.exp(b - Z95 * se)), float(np.exp(b + Z95 * se))),
        log_rate_ratio=b, se_log_rate_ratio=se, p_value=float(res.pvalues["treated_post"]),
        abs_change_per_py=float(abs_py),
        abs_change_ci=(float(abs_py - Z95 * se_abs), float(abs_py + Z95 * se_abs)),
        se_abs_change=float(se_abs), treated_post_rate_py=12 * r1,
        counterfactual_post_rate_py=12 * r1 / np.exp(b), n_treated=n_t,
        n_controls=int(agg.loc[agg["is_treated"] == 0, "unit_id"].nunique()),
        n_sets=int(agg["matched_set_id"].nunique()), n_person_months=int(n_person_months),
        treated_post_person_years=float(tp["exposure_months"].sum() / 12),
        method="NB2 on person pre/post counts, offset log person-time, clustered on set",
        # set-level influence of the absolute change is not available here: outcomes are
        # combined as independent (pd.Series of one pseudo-cluster per outcome)
        abs_change_influence=pd.Series({f"nb::{outcome}": float(se_abs)}),
    )


def _deaths_before_end(raw_panel: pd.DataFrame, deaths: pd.DataFrame) -> set[str]:
    d = deaths.dropna(subset=["date_of_death"])
    if d.empty:
        return set()
    idx = raw_panel[["person_id", "index_month"]].drop_duplicates("person_id")
    m = idx.merge(d[["person_id", "date_of_death"]], on="person_id")
    end = pd.to_datetime(m["index_month"]) + pd.DateOffset(months=13)
    return set(m.loc[pd.to_datetime(m["date_of_death"]) < end, "person_id"])


def run_sensitivity(
    panel: pd.DataFrame,
    results: dict[str, CountDiDResult],
    base_costing: CostingResult,
    seed_unit_costs: pd.DataFrame,
    config: CostingConfig,
    raw_panel: pd.DataFrame | None = None,
    deaths: pd.DataFrame | None = None,
    mean_treatment_contacts: float | None = None,
    alternative_panels: dict[str, pd.DataFrame] | None = None,
    price_index: pd.DataFrame | None = None,
    selection_window_months: int = 0,
    codes: PanelCodes | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Return (one row per scenario, notes on scenarios not run). Row 0 is the base case.
    ``raw_panel``: the unprepared panel, or its person_id and index_month columns (all the
    deaths scenario reads of it: who is in it, and their index month). ``alternative_panels``
    are unprepared and prepared for the design's ``selection_window_months`` (mart_design).

    Each scenario that re-estimates fits the costed outcomes together (`estimate_poisson_dids`)
    on the columns the model reads, with the panel's text ids as codes (``codes``, its
    `PanelCodes` with persons, made here if not given); the deaths scenario takes its panel
    from ``panel`` (`drop_persons_coded`: what preparing the unprepared panel without those
    people gives)."""
    co = tuple(config.costed_outcomes)
    codes = codes if codes is not None else PanelCodes.of(panel)
    model = panel[[*POISSON_DID_COLUMNS, *(o for o in co if o not in POISSON_DID_COLUMNS)]]
    base_uc = prepare_unit_costs(seed_unit_costs, config, price_index)
    kw = dict(persistence_years=config.persistence_years,
              persistence_decay=config.persistence_decay, discount_rate=config.discount_rate)
    rows: list[Scenario] = [Scenario("Base case", "Base case", base_costing.net_saving_per_person,
                                     *base_costing.net_saving_per_person_ci,
                                     base_costing.gross_saving_per_person,
                                     base_costing.therapy_cost_per_person,
                                     base_costing.interval_kind)]
    notes: list[str] = []

    def cost(res, uc=base_uc, outcomes=co, **extra):
        return estimate_costs(res, uc, outcomes, **{**kw, **extra})

    # unit costs
    ref = pd.read_csv(REFERENCE_2016_17_PATH, dtype={"price_year": str})
    uc_ref = prepare_unit_costs(override_unit_costs(seed_unit_costs, ref), config, price_index)
    rows.append(_scenario("Unit costs", "2016/17 reference costs (A&E 148 GBP)",
                          cost(results, uc_ref)))
    if config.price_year:
        from dataclasses import replace
        uc_pub = prepare_unit_costs(seed_unit_costs, replace(config, price_year=None), price_index)
        rows.append(_scenario("Unit costs", "Costs as published (not re-based)",
                              cost(results, uc_pub)))
    if config.local_tariff:
        from dataclasses import replace
        uc_nat = prepare_unit_costs(seed_unit_costs, replace(config, local_tariff=None),
                                    price_index)
        rows.append(_scenario("Unit costs", "National costs (no local tariff)",
                              cost(results, uc_nat)))
    acts = set(base_uc["activity"])
    if "emergency_admission_long_stay" in acts and "emergency_admissions" in co:
        long = base_uc[base_uc["activity"] != "emergency_admission_short_stay"].copy()
        long = long[long["activity"] != "emergency_admission"]
        long.loc[long["activity"] == "emergency_admission_long_stay", "activity"] = \
            "emergency_admission"
        rows.append(_scenario("Unit costs", "Admissions at long-stay tariff (upper bound)",
                              cost(results, long)))
    if "emergency_admissions" in co and "bed_days" in results and "excess_bed_day" in acts:
        alt = tuple("bed_days" if o == "emergency_admissions" else o for o in co)
        rows.append(_scenario("Unit costs", "Bed days costed instead of admissions",
                              cost(results, base_uc, alt)))
    if mean_treatment_contacts and "iapt_care_contact" in acts:
        per_contact = float(base_uc.set_index("activity").loc["iapt_care_contact",
                                                               "unit_cost_gbp"])
        uc_t = base_uc.copy()
        uc_t.loc[uc_t["activity"] == THERAPY_ACTIVITY, "unit_cost_gbp"] = \
            per_contact * mean_treatment_contacts
        rows.append(_scenario("Therapy cost",
                              f"Per contact ({mean_treatment_contacts:g} contacts x "
                              f"£{per_contact:,.0f})", cost(results, uc_t)))

    # count model
    nb = nb_dids(panel, co, codes)
    if all(v is not None for v in nb.values()):
        rows.append(_scenario("Count model", "Negative binomial (pre/post, clustered)",
                              cost(nb), "outcomes combined as independent"))
    else:
        notes.append("Negative binomial: not estimable for at least one costed outcome.")

    # outcome window
    first6 = (model["rel_month"] <= 6).to_numpy()
    r6 = estimate_poisson_dids(model[first6], co, codes.take(first6))
    if all(np.isfinite(r.abs_change_per_py) for r in r6.values()):
        rows.append(_scenario("Outcome window", "Post months 1-6 only (annualised)",
                              cost(r6, followup_years=base_costing.mean_followup_years)))
    else:
        notes.append("6-month window: not estimable for at least one costed outcome.")

    # deaths
    if raw_panel is not None and deaths is not None:
        died = _deaths_before_end(raw_panel, deaths)
        if died:
            survivors, survivor_codes = drop_persons_coded(model, codes, died)
            rd = estimate_poisson_dids(survivors, co, survivor_codes)
            del survivors, survivor_codes
            if all(np.isfinite(r.abs_change_per_py) for r in rd.values()):
                rows.append(_scenario("Deaths", f"Excluding people who died "
                                      f"({suppress_count(len(died))} people)", cost(rd)))
        else:
            notes.append("Excluding people who died: nobody in the matched panel died during "
                         "follow-up, so the scenario equals the base case.")
    else:
        notes.append("Excluding people who died: dates of death not available to the "
                     "evaluation; not run.")

    # persistence
    for years in (1, 2):
        c = estimate_costs(results, base_uc, co, bootstrap=None, persistence_years=years,
                           persistence_decay=0.5, discount_rate=config.discount_rate)
        rows.append(_scenario("Persistence", f"Effect lasts {years} more year{'s' * (years > 1)} "
                              f"(halving yearly, 3.5% discount)", c))

    # matching
    if alternative_panels:
        for label, p in alternative_panels.items():
            ra = estimate_poisson_dids(prepare_panel(p, selection_window_months), co)
            if all(np.isfinite(r.abs_change_per_py) for r in ra.values()):
                rows.append(_scenario("Matching", f"Matching: {label}", cost(ra)))
    else:
        notes.append(
            "Matching ratio and caliper: not run. They need the matched cohort rebuilt by dbt "
            "with other matching settings (alternative panels named "
            "mart_evaluation_panel__<label>); none were in the warehouse, and the evaluation "
            "does not rebuild the matched cohort itself (dbt is the warehouse's only writer).")
    return pd.DataFrame([r.__dict__ for r in rows]), notes


# --------------------------------------------------------------------------- secondary


def iapt_outcomes(treated_cohort: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """Clinical outcomes of the matched treated people (counts; suppressed when published).

    Recovery is counted among people at caseness at the start (the national definition);
    reliable improvement among everyone in the matched treated cohort."""
    ids = panel.loc[panel["is_treated"] == 1, "person_id"].astype(str).unique()
    t = treated_cohort[treated_cohort["person_id"].astype(str).isin(ids)]
    b = lambda c: t[c].fillna(False).astype(bool) if c in t else pd.Series(False, index=t.index)  # noqa: E731
    caseness = b("at_caseness_start")
    rows = [
        ("Matched treated people", len(t), len(t)),
        ("Finished a course of treatment", int(b("finished_course").sum()), len(t)),
        ("At caseness at the start", int(caseness.sum()), len(t)),
        ("Recovered (of those at caseness)", int((b("recovered") & caseness).sum()),
         int(caseness.sum())),
        ("Reliable improvement", int(b("reliable_improvement").sum()), len(t)),
        ("Reliable deterioration", int(b("reliable_deterioration").sum()), len(t)),
    ]
    return pd.DataFrame(rows, columns=["measure", "n", "denominator"])


def subgroup_savings(
    panel: pd.DataFrame,
    treated_attrs: pd.DataFrame,
    unit_costs: pd.DataFrame,
    config: CostingConfig,
    by: str,
    labels: dict | None = None,
    codes: PanelCodes | None = None,
) -> pd.DataFrame:
    """Net saving per treated person by a treated person's attribute (`by` column of
    `treated_attrs`, keyed by person_id): each subgroup's matched sets (treated person and their
    controls) analysed on their own. Subgroups with fewer than MIN_SUBGROUP_TREATED treated
    people are listed but not estimated.

    Each matched set's rows are found once (a filter of the whole panel for each subgroup
    grew as subgroups x panel rows: about 130 practices at 2 million people), and each
    subgroup's costed outcomes are fitted together on the columns the model reads, with the
    text ids as codes (``codes``: the panel's `PanelCodes`, made here if not given)."""
    co = tuple(config.costed_outcomes)
    codes = codes if codes is not None else PanelCodes.of(panel, persons=False)
    model = panel[[*POISSON_DID_COLUMNS, *(o for o in co if o not in POISSON_DID_COLUMNS)]]
    rows_of = _SetRows(codes)
    attrs = treated_attrs[["person_id", by]].copy()
    attrs["person_id"] = attrs["person_id"].astype(str)
    tr = panel.loc[panel["is_treated"] == 1, ["person_id", "matched_set_id"]].drop_duplicates()
    tr = tr.merge(attrs, on="person_id", how="left")
    tr[by] = tr[by].astype(object).where(tr[by].notna(), "unknown")
    out = []
    for value, g in tr.groupby(by, sort=True):
        label = (labels or {}).get(value, str(value))
        n = int(g["person_id"].nunique())
        row = {"subgroup": by, "value": label, "n_treated": n, "net_saving_per_person": np.nan,
               "lo95": np.nan, "hi95": np.nan, "gross_saving_per_person": np.nan,
               "estimated": False}
        if n >= MIN_SUBGROUP_TREATED:
            rows = rows_of(g["matched_set_id"])
            res = estimate_poisson_dids(model.take(rows), co, codes.take(rows))
            if all(np.isfinite(r.abs_change_per_py) for r in res.values()):
                c = estimate_costs(res, unit_costs, co,
                                   persistence_years=config.persistence_years,
                                   persistence_decay=config.persistence_decay,
                                   discount_rate=config.discount_rate)
                row.update(net_saving_per_person=c.net_saving_per_person,
                           lo95=c.net_saving_per_person_ci[0], hi95=c.net_saving_per_person_ci[1],
                           gross_saving_per_person=c.gross_saving_per_person, estimated=True)
        out.append(row)
    return pd.DataFrame(out)


class _SetRows:
    """Positions of the rows of given matched sets, in the panel's order (what filtering the
    panel on ``matched_set_id.isin(sets)`` keeps), from one sort of the panel's set codes."""

    def __init__(self, codes: PanelCodes):
        self.sets = pd.Index(codes.sets.uniques)
        self.order = np.argsort(codes.sets.codes, kind="stable")
        self.count = np.bincount(codes.sets.codes, minlength=len(self.sets))
        self.start = np.cumsum(self.count) - self.count

    def __call__(self, set_ids) -> np.ndarray:
        sets = self.sets.get_indexer(pd.unique(np.asarray(set_ids)))
        sets = sets[sets >= 0]
        n = self.count[sets]
        first = np.repeat(self.start[sets] - (np.cumsum(n) - n), n) + np.arange(n.sum())
        return np.sort(self.order[first])


def default_annual_caseload(panel: pd.DataFrame) -> tuple[int, str]:
    """The cohort's own average number of matched treated people a year (to the nearest 5)."""
    t = panel.loc[panel["is_treated"] == 1, ["person_id", "index_month"]].drop_duplicates("person_id")
    months = pd.to_datetime(t["index_month"])
    span = max((months.max().year - months.min().year) * 12 + months.max().month
               - months.min().month + 1, 12)
    n = len(t) * 12 / span
    cl = max(5, int(5 * round(n / 5)))
    return cl, (f"the evaluated cohort's own average of about {cl} matched treated people a "
                f"year ({months.min():%Y-%m} to {months.max():%Y-%m})")


__all__ = ["run_sensitivity", "nb_did", "nb_dids", "iapt_outcomes", "subgroup_savings",
           "default_annual_caseload", "DEFAULT_COSTED_OUTCOMES", "POST_MONTHS"]
