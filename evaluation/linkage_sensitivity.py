"""How the headline results move with the linkage threshold (issue 17): each outcome's rate ratio
and the net saving per treated person re-estimated with the activity records attributed to
persons by links made at a stricter and at a looser threshold (target expected precision 0.9999
and 0.99), beside the main result (the configured fixed threshold).

The design is held fixed: the same treated people, matched sets and index months; only which
person each A&E, admitted-patient and outpatient record belongs to changes. dbt gives the
change of each matched person's monthly counts under each scenario
(``mart_linkage_sensitivity_deltas``, deltas against the main panel); they are added to the
prepared main panel and the scenario is estimated with the main result's estimator
(``evaluation.did.estimate_poisson_dids``: the Poisson DiD of ``estimate_outcome``) and costing
(``evaluation.pipeline.price_outcomes``: the same unit costs, bootstrap and caseload). IAPT
referrals that would move would change who is treated: they are not used (re-matching per
scenario is left for later). The rate ratios of all three columns are before the
negative-control calibration, so that they compare like with like.

Estimates only: no count of persons or records is published, so the three cohorts cannot be
differenced. Off, or unavailable (no linkage scenarios published: upstream-pseudonymised
extracts), the report says so in one line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from core.contract import COUNT_OUTCOMES
from core.settings import LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS, LINKAGE_SENSITIVITY_ENV

SCENARIOS = ("stricter", "looser")  # the alternatives; 'main' is the published result
ORDER = ("stricter", "main", "looser")  # the report's columns, strictest first
DELTAS_TABLE = "mart_linkage_sensitivity_deltas"
SCENARIOS_TABLE = "mart_linkage_scenarios"
KEYS = ("person_id", "calendar_month")


@dataclass(frozen=True)
class ScenarioEstimates:
    """One column of the table: the threshold and the estimates made with its links."""

    scenario: str
    target_expected_precision: float | None
    threshold: float
    expected_precision: float | None
    rate_ratios: dict[str, tuple[float, float, float]]  # outcome -> (estimate, lo95, hi95)
    net_saving: tuple[float, float, float]  # per treated person: estimate, lo95, hi95
    interval_kind: str


@dataclass(frozen=True)
class LinkageSensitivity:
    """``status``: 'estimated', 'off', 'unavailable' or 'not estimable'; ``note``: why not, in
    one line (empty when estimated)."""

    status: str
    note: str = ""
    scenarios: tuple[ScenarioEstimates, ...] = field(default=())
    bootstrap_reps: int | None = None

    @property
    def estimated(self) -> bool:
        return self.status == "estimated"

    def frame(self) -> pd.DataFrame:
        """Long table: scenario, thresholds, quantity (an outcome's rate ratio or the net
        saving per treated person), estimate, lo95, hi95. Estimates only, no counts."""
        rows = []
        for s in self.scenarios:
            head = {"scenario": s.scenario, "target_expected_precision": s.target_expected_precision,
                    "threshold": s.threshold, "expected_precision": s.expected_precision}
            for o, (est, lo, hi) in s.rate_ratios.items():
                rows.append({**head, "quantity": f"rate_ratio_{o}", "estimate": est, "lo95": lo, "hi95": hi})
            rows.append({**head, "quantity": "net_saving_per_treated_person", "estimate": s.net_saving[0],
                         "lo95": s.net_saving[1], "hi95": s.net_saving[2]})
        return pd.DataFrame(rows, columns=["scenario", "target_expected_precision", "threshold",
                                           "expected_precision", "quantity", "estimate", "lo95", "hi95"])


def should_run(mode: str, n_persons: int | None) -> tuple[bool, str]:
    """Whether the sensitivity runs under ``mode`` (core.settings.linkage_sensitivity_mode) for a
    population of ``n_persons`` (None: not known), and the line the report shows when not."""
    if mode == "off":
        return False, f"The linkage sensitivity was not run ({LINKAGE_SENSITIVITY_ENV}=off)."
    if mode == "auto" and n_persons is not None and n_persons > LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS:
        return False, (f"The linkage sensitivity was not run: it runs by default up to "
                       f"{LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS:,} people ({LINKAGE_SENSITIVITY_ENV}=on runs it).")
    return True, ""


UNAVAILABLE = ("The linkage sensitivity is not available for this run: the identifiable zone published no "
               "linkage alternatives (extracts pseudonymised upstream are linked deterministically, and older "
               "outputs have none).")


def checked_scenarios(table: pd.DataFrame) -> pd.DataFrame | None:
    """``mart_linkage_scenarios`` indexed by scenario, or None when empty (not published). A
    table that is not exactly the rows main, stricter and looser, each with a threshold, is
    refused naming the table, row and field."""
    if table.empty:
        return None
    names = table["scenario"].astype(str).tolist()
    if sorted(names) != sorted(ORDER):
        raise ValueError(f"{SCENARIOS_TABLE}: field scenario has {names}; expected one row each of {list(ORDER)}")
    for i, r in table.reset_index(drop=True).iterrows():
        if r["threshold"] is None or not math.isfinite(float(r["threshold"])):
            raise ValueError(f"{SCENARIOS_TABLE}: row {i + 1} (scenario {r['scenario']}): field threshold is missing")
    return table.set_index("scenario")


def panel_under_scenario(panel: pd.DataFrame, deltas: pd.DataFrame, scenario: str,
                         outcomes=COUNT_OUTCOMES) -> pd.DataFrame:
    """The prepared panel with each person-month's outcome counts changed by ``scenario``'s
    deltas (``mart_linkage_sensitivity_deltas``); every other column, row and weight as it was
    (the design is held fixed). Deltas of months the panel does not analyse (outside the
    window, not at risk) change nothing, as those records count nowhere in the main panel."""
    d = deltas[deltas["scenario"] == scenario]
    out = panel.copy(deep=False)
    if d.empty:
        return out
    d = d.assign(calendar_month=pd.to_datetime(d["calendar_month"]).astype("datetime64[ns]"),
                 person_id=d["person_id"].astype(str))
    cols = [o for o in outcomes if o in d.columns]
    d = d.groupby(list(KEYS), as_index=False)[cols].sum()
    keys = pd.DataFrame({"person_id": panel["person_id"].astype(str),
                         "calendar_month": pd.to_datetime(panel["calendar_month"]).astype("datetime64[ns]")})
    change = keys.merge(d, on=list(KEYS), how="left")[cols].fillna(0).to_numpy(dtype=float)
    for j, o in enumerate(cols):
        values = panel[o].to_numpy(dtype=float) + change[:, j]
        if (values < 0).any():
            month = keys["calendar_month"].to_numpy()[values < 0][0]
            raise ValueError(f"{DELTAS_TABLE}: scenario {scenario}, field {o}: takes more from a person-month "
                             f"({pd.Timestamp(month):%Y-%m}) than the main panel counts in it")
        out[o] = values
    return out


def _rate_ratios(results, outcomes) -> dict[str, tuple[float, float, float]]:
    return {o: (float(results[o].rate_ratio), *map(float, results[o].rate_ratio_ci)) for o in outcomes}


def _saving(costing) -> tuple[float, float, float]:
    return (float(costing.net_saving_per_person), *map(float, costing.net_saving_per_person_ci))


def run_linkage_sensitivity(panel: pd.DataFrame, deltas: pd.DataFrame, thresholds: pd.DataFrame,
                            main_results: dict, main_costing, price, outcomes=COUNT_OUTCOMES,
                            bootstrap_reps: int | None = None) -> LinkageSensitivity:
    """Estimate each scenario on the main ``panel`` (prepared) changed by its ``deltas``.
    ``thresholds``: `checked_scenarios`; ``main_results``/``main_costing``: the main result's
    saved DiD results and costing; ``price(panel, results)``: the main result's costing of a
    panel's results (`evaluation.pipeline.price_outcomes` with its unit costs and config)."""
    from evaluation.did import estimate_poisson_dids
    from evaluation.panel import PanelCodes

    outcomes = list(outcomes)
    codes = PanelCodes.of(panel, persons=False)  # the design is fixed: the same codes for each
    columns = []
    for name in ORDER:
        t = thresholds.loc[name]
        head = dict(scenario=name, threshold=float(t["threshold"]),
                    target_expected_precision=None if pd.isna(t["target_expected_precision"])
                    else float(t["target_expected_precision"]),
                    expected_precision=None if pd.isna(t["expected_precision"]) else float(t["expected_precision"]))
        # the main links, or a scenario that moves no record of the panel's people: the same panel
        # gives the same estimates (checked to 1e-9 in the tests), so they are not fitted again
        if name == "main" or deltas[deltas["scenario"] == name].empty:
            columns.append(ScenarioEstimates(**head, rate_ratios=_rate_ratios(main_results, outcomes),
                                             net_saving=_saving(main_costing),
                                             interval_kind=main_costing.interval_kind))
            continue
        scenario_panel = panel_under_scenario(panel, deltas, name, outcomes)
        results = estimate_poisson_dids(scenario_panel, outcomes, codes)
        costing = price(scenario_panel, results)
        columns.append(ScenarioEstimates(**head, rate_ratios=_rate_ratios(results, outcomes),
                                         net_saving=_saving(costing), interval_kind=costing.interval_kind))
    return LinkageSensitivity("estimated", scenarios=tuple(columns), bootstrap_reps=bootstrap_reps)
