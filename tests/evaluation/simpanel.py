"""A small simulated matched panel with the features that bias naive evaluations.

Each matched set is one treated person and (usually) two controls sharing an index month.
Everyone in a set has the same pre-referral rise in utilisation (a spell of poor health that
peaks just before the index month and falls back afterwards), as matching on recent
utilisation intends; person-level heterogeneity is Gamma; month-level over-dispersion is
Gamma-Poisson. The planted effect multiplies the treated people's rates from rel_month 1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# Rate ratios planted in the simulated panels of the effect tests.
PLANTED = {"ae_attendances": 0.75, "emergency_admissions": 0.75,
           "outpatient_attendances": 1.0, "gp_appointments": 0.85}

BASE_RATES = {
    "ae_attendances": 0.06,
    "emergency_admissions": 0.025,
    "outpatient_attendances": 0.15,
    "gp_appointments": 0.45,
}


def simulate_panel(
    n_sets: int = 600,
    rate_ratio: dict[str, float] | float = 0.8,
    seed: int = 1,
    pre_trend: float = 0.0,
    share_one_control: float = 0.15,
    negative_controls: float | None = None,
) -> pd.DataFrame:
    """Return a panel with the columns of `mart_evaluation_panel`.

    `pre_trend` adds a differential log-linear trend for treated people over all months
    (violating parallel trends) for tests that the pre-trend test can reject.
    `negative_controls`: add the contract's negative-control columns, with no effect of
    therapy but treated people's rates (theirs and every outcome's) times this ratio from
    rel_month 1 (residual confounding; 1.0 = none). Drawn from their own stream, so the other
    columns are those of the same call without them.
    """
    rng = np.random.default_rng(seed)
    if not isinstance(rate_ratio, dict):
        rate_ratio = {k: float(rate_ratio) for k in BASE_RATES}
    rows = []
    rel = np.arange(-12, 13)
    # a spell of poor health: builds up over the months before referral, peaks at rel -1 and
    # falls back quickly afterwards (the same for treated people and their matched controls)
    dip = 1 + 1.5 * np.where(rel <= -1, np.exp(-(-1 - rel) / 3.0), np.exp(-(rel + 1) / 1.5))
    start = pd.Timestamp("2021-01-01")
    pid = 0
    for s in range(n_sets):
        index_month = start + pd.DateOffset(months=int(rng.integers(0, 24)))
        n_controls = 1 if rng.random() < share_one_control else 2
        ltc = rng.choice(["diabetes", "copd", "chronic_pain_msk"])
        practice = f"P{rng.integers(0, 40):03d}"
        for j in range(1 + n_controls):
            treated = int(j == 0)
            frailty = rng.gamma(2.0, 0.5)
            exposure = np.ones(len(rel))
            if rng.random() < 0.05:  # dies or leaves during follow-up
                m = int(rng.integers(1, 12))
                exposure[rel == m] = rng.uniform(0.1, 0.9)
                exposure[rel > m] = 0.0
            pid += 1
            person = f"person{pid:06d}"
            cal = [index_month + pd.DateOffset(months=int(r)) for r in rel]
            season = np.array([1.15 if c.month in (12, 1, 2) else 1.0 for c in cal])
            counts = {}
            for outcome, base in BASE_RATES.items():
                mu = base * frailty * dip * season * exposure
                if treated:
                    mu = mu * np.where(rel >= 1, rate_ratio.get(outcome, 1.0), 1.0)
                    mu = mu * np.exp(pre_trend * rel)
                mu = mu * rng.gamma(5.0, 0.2, size=len(rel))
                counts[outcome] = rng.poisson(mu)
            los = [int(rng.poisson(3, size=n).sum() + n) for n in counts["emergency_admissions"]]
            for t in range(len(rel)):
                if exposure[t] <= 0:
                    continue
                rows.append((
                    f"set{s:05d}", person, treated, index_month, int(rel[t]), cal[t], exposure[t],
                    counts["ae_attendances"][t], counts["emergency_admissions"][t], los[t],
                    counts["outpatient_attendances"][t], counts["gp_appointments"][t], ltc, practice,
                ))
    cols = ["matched_set_id", "person_id", "is_treated", "index_month", "rel_month",
            "calendar_month", "exposure_months", "ae_attendances", "emergency_admissions",
            "bed_days", "outpatient_attendances", "gp_appointments", "ltc_group", "practice_code"]
    panel = pd.DataFrame(rows, columns=cols)
    if negative_controls is not None:
        panel = _with_negative_controls(panel, float(negative_controls), seed)
    return panel


NEGATIVE_CONTROL_BASE_RATE = 0.06


def _with_negative_controls(panel: pd.DataFrame, confounding: float, seed: int) -> pd.DataFrame:
    from core.contract import COUNT_OUTCOMES, NEGATIVE_CONTROLS

    rng = np.random.default_rng([seed, 7])
    panel = panel.copy()
    after = (panel["is_treated"] == 1) & (panel["rel_month"] >= 1)
    frailty = panel.groupby("person_id")["person_id"].transform(lambda s: rng.gamma(2.0, 0.5)).astype(float)
    for c in COUNT_OUTCOMES:  # the confounding moves the outcomes too
        if confounding != 1.0 and c in panel:
            panel.loc[after, c] = rng.binomial(panel.loc[after, c].to_numpy(), min(confounding, 1.0))
    for c in NEGATIVE_CONTROLS:
        mu = NEGATIVE_CONTROL_BASE_RATE * frailty * panel["exposure_months"] * np.where(after, confounding, 1.0)
        panel[c] = rng.poisson(mu.to_numpy() * rng.gamma(5.0, 0.2, size=len(panel)))
    return panel


UNIT_COSTS = pd.DataFrame(
    [
        ("ae_attendance", 280.0, "2024/25", "NHS National Cost Collection (test figure)"),
        ("emergency_admission", 824.0, "2024/25", "NCC non-elective short stay (test figure)"),
        ("excess_bed_day", 313.0, "2016/17", "Reference costs (test figure)"),
        ("outpatient_attendance", 120.0, "2016/17", "Reference costs (test figure)"),
        ("gp_appointment", 48.0, "2024/25", "PSSRU unit costs (test figure)"),
        ("iapt_course", 684.0, "2017", "IAPT course (test figure)"),
    ],
    columns=["activity", "unit_cost_gbp", "price_year", "source"],
)


# the matching pool's equipoise counts (int_controls_matched_to_treated): 0.85 of 40,000 rows
POOL_EQUIPOISE = {"pool_rows_scored": 40_000, "pool_rows_in_equipoise": 34_000}


def write_warehouse(path, panel: pd.DataFrame, with_marts: bool = True, balance: pd.DataFrame | None = None,
                    equipoise: dict | None = None) -> None:
    """Write a DuckDB file with the marts the evaluation reads (as dbt would). ``balance``
    replaces the (balanced) mart_balance; ``equipoise`` the pool's equipoise counts."""
    import duckdb

    balance = balance if balance is not None else pd.DataFrame({
        "covariate": ["age", "female", "imd_decile", "prior_ae_12m", "prior_admissions_12m"] * 2,
        "stage": ["before"] * 5 + ["after"] * 5,
        "mean_treated": [55.0, 0.6, 4.2, 1.1, 0.4] * 2,
        "mean_control": [50.0, 0.5, 5.5, 0.5, 0.2, 54.5, 0.59, 4.3, 1.05, 0.39],
        "smd": [0.35, 0.2, -0.4, 0.6, 0.3, 0.03, 0.02, -0.04, 0.05, 0.02],
        "variance_ratio": [1.2, 1.0, 0.9, 2.0, 1.8, 1.02, 1.0, 0.98, 1.1, 1.05],
    })
    attrition = pd.DataFrame({
        "step_order": [1, 2, 3, 4],
        "step": ["IAPT-LTC referrals", "linked to a registered person", "completed a course",
                 "matched"],
        "n_persons": [1203, 1150, 5, 600],
    })
    con = duckdb.connect(str(path))
    try:
        con.register("p", panel)
        con.execute("create table mart_evaluation_panel as select * from p")
        con.register("u", UNIT_COSTS)
        con.execute("create table unit_costs as select * from u")
        if with_marts:
            con.register("b", balance)
            con.execute("create table mart_balance as select * from b")
            con.register("a", attrition)
            con.execute("create table mart_attrition as select * from a")
            eq = {**POOL_EQUIPOISE, **(equipoise or {})}
            con.execute("create table int_controls_matched_to_treated as select ?::bigint as pool_rows_scored, "
                        "?::bigint as pool_rows_in_equipoise", [eq["pool_rows_scored"], eq["pool_rows_in_equipoise"]])
    finally:
        con.close()
