"""Monte Carlo check of the planner (evaluation/power.py): at the rate ratio it says is
detectable (80% power, 5% two-sided), the power of the pipeline's own estimator
(`evaluation.did.estimate_poisson_dids` on a prepared matched panel) should be 0.75-0.85.

    uv run --frozen python benchmarks/power.py [--draws 400] [--sets 1500] [--scenario site|run|both]
        [--seed 1] [--csv draws.csv]

Two scenarios, each planted at the planner's MDRR of every outcome at once:

site   Planning from a site's numbers (`SitePlan`): a plain DGP with the planner's assumptions:
       constant monthly rates, 1 control per treated person, full follow-up, person frailty
       (gamma, shape 2) and month-to-month gamma noise (shape 5); bed days are a stay of 1 +
       Poisson(3) days per admission. The dispersion given to the planner is the DGP's own,
       derived in `analytic_dispersion` (1 + r E[nu^2] / a; for bed days E[L^2] / E[L] + ...).
run    Planning from a run's panel (`design_from_panel`): a DGP like tests/evaluation/simpanel.py
       (a spell of high use peaking before the index and falling after it, shared by the
       matched set; winter months; 5% die or leave during follow-up; 2 controls, 15% of sets
       1), and the planner reads a pilot panel drawn with no effect (another seed), as
       `ltceval plan --from-run` reads a run's evaluation panel.

Printed per scenario and outcome: the planned MDRR, the power over the draws (share of draws
whose 95% interval excludes 1 — the pipeline's p < 0.05) with its Monte Carlo SE
sqrt(p (1 - p) / D) (0.020 at D = 400), the planner's SE at the MDRR against the mean SE the
estimator reports and the empirical SD of its log rate ratio. A benchmark: it prints figures
and asserts nothing (tests/evaluation/test_power.py holds a reduced, fast version).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.did import estimate_poisson_dids  # noqa: E402
from evaluation.panel import prepare_panel  # noqa: E402
from evaluation.power import SitePlan, design_from_panel, mdrr, plan_table  # noqa: E402

OUTCOMES = ("ae_attendances", "emergency_admissions", "bed_days", "outpatient_attendances", "gp_appointments")
# events per person-month (bed days: admissions x mean stay of 4 days)
RATES = {"ae_attendances": 0.06, "emergency_admissions": 0.025, "outpatient_attendances": 0.15,
         "gp_appointments": 0.45}
FRAILTY_SHAPE = 2.0  # person frailty nu ~ Gamma(2, 1/2): mean 1, variance 0.5
MONTH_SHAPE = 5.0  # month-to-month noise ~ Gamma(5, 1/5): mean 1, variance 0.2
LOS_MEAN = 4.0  # a stay: 1 + Poisson(3) days
SELECTION_WINDOW = 6


def analytic_dispersion(rate: float, outcome: str) -> float:
    """phi of the plain DGP (see evaluation/power.py): 1 + r E[nu^2] / a for counts; for bed
    days, a compound of admissions (rate r / E[L]) and stays L: E[L^2] / E[L] + r E[nu^2] / a."""
    e_nu2 = 1 + 1 / FRAILTY_SHAPE
    if outcome == "bed_days":
        e_l2 = (LOS_MEAN - 1) + LOS_MEAN ** 2  # Var(1 + Poisson(3)) + mean^2
        return e_l2 / LOS_MEAN + rate * e_nu2 / MONTH_SHAPE
    return 1 + rate * e_nu2 / MONTH_SHAPE


def simulate(n_sets: int, rate_ratio: dict[str, float], seed: int, realistic: bool,
             controls: int = 1) -> pd.DataFrame:
    """A matched panel with the columns of `mart_evaluation_panel` (rel_month -12..12).
    ``realistic``: the pre-referral spell, winter, exits and 1-2 controls of the "run" scenario."""
    rng = np.random.default_rng(seed)
    rel = np.arange(-12, 13)
    if realistic:
        k = np.where(rng.random(n_sets) < 0.15, 1, 2)
    else:
        k = np.full(n_sets, controls)
    size = 1 + k
    set_of = np.repeat(np.arange(n_sets), size)
    first = np.r_[0, np.cumsum(size)[:-1]]
    treated = np.zeros(len(set_of), dtype=int)
    treated[first] = 1
    n = len(set_of)
    index_offset = rng.integers(0, 24, n_sets)  # months after January 2021
    index_month = (np.datetime64("2021-01", "M") + index_offset).astype("datetime64[ns]")
    frailty = rng.gamma(FRAILTY_SHAPE, 1 / FRAILTY_SHAPE, n)
    shape = np.ones(len(rel))
    exposure = np.ones((n, len(rel)))
    if realistic:
        shape = 1 + 1.5 * np.where(rel <= -1, np.exp(-(-1 - rel) / 3.0), np.exp(-(rel + 1) / 1.5))
        cal_month = (index_offset[set_of][:, None] + rel[None, :]) % 12 + 1
        season = np.where(np.isin(cal_month, (12, 1, 2)), 1.15, 1.0)
        leaves = rng.random(n) < 0.05
        month_left = rng.integers(1, 12, n)
        part = rng.uniform(0.1, 0.9, n)
        exposure = np.where(rel[None, :] > month_left[:, None], 0.0, 1.0)
        exposure = np.where(rel[None, :] == month_left[:, None], part[:, None], exposure)
        exposure[~leaves] = 1.0
    else:
        season = np.ones((n, len(rel)))
    post = (rel >= 1)[None, :]
    counts = {}
    for outcome in OUTCOMES:
        base = RATES["emergency_admissions"] if outcome == "bed_days" else RATES[outcome]
        mu = base * frailty[:, None] * shape[None, :] * season * exposure
        effect = np.where(post & (treated[:, None] == 1), rate_ratio.get(outcome, 1.0), 1.0)
        mu = mu * effect * rng.gamma(MONTH_SHAPE, 1 / MONTH_SHAPE, size=mu.shape)
        if outcome == "bed_days":
            admissions = rng.poisson(mu)
            counts[outcome] = admissions + rng.poisson(3.0 * admissions)  # sum of (1 + Poisson(3)) stays
        else:
            counts[outcome] = rng.poisson(mu)
    person = np.arange(n)
    frame = pd.DataFrame({
        "matched_set_id": np.repeat(set_of, len(rel)).astype(str),
        "person_id": np.repeat(person, len(rel)).astype(str),
        "is_treated": np.repeat(treated, len(rel)),
        "index_month": np.repeat(index_month[set_of], len(rel)),
        "rel_month": np.tile(rel, n),
        "exposure_months": exposure.ravel(),
        **{o: c.ravel() for o, c in counts.items()},
    })
    return frame


def site_plan(n_sets: int) -> SitePlan:
    rates = {**RATES, "bed_days": RATES["emergency_admissions"] * LOS_MEAN}
    return SitePlan(treated_per_year=n_sets, years=1, rates={o: rates[o] for o in OUTCOMES},
                    matching_ratio=1, pre_months=12 - SELECTION_WINDOW, post_months=12,
                    dispersion={o: analytic_dispersion(rates[o], o) for o in OUTCOMES})


def planned(scenario: str, n_sets: int, seed: int):
    """(designs, MDRR per outcome) of the scenario, as the planner gives them."""
    if scenario == "site":
        designs = site_plan(n_sets).designs()
    else:
        pilot = prepare_panel(simulate(n_sets, {}, seed + 10_000, realistic=True), SELECTION_WINDOW)
        designs = design_from_panel(pilot, OUTCOMES)
    return designs, {d.outcome: mdrr(d) for d in designs}


def run_draws(scenario: str, n_sets: int, draws: int, seed: int, targets: dict[str, float]) -> pd.DataFrame:
    rows = []
    for i in range(draws):
        panel = prepare_panel(simulate(n_sets, targets, seed + i, realistic=scenario == "run"), SELECTION_WINDOW)
        for o, r in estimate_poisson_dids(panel, OUTCOMES).items():
            rows.append({"scenario": scenario, "draw": i, "outcome": o, "planned_mdrr": targets[o],
                         "log_rr": r.log_rate_ratio, "se": r.se_log_rate_ratio,
                         "rejected": bool(r.rate_ratio_ci[1] < 1 or r.rate_ratio_ci[0] > 1)})
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, designs) -> pd.DataFrame:
    by = {d.outcome: d for d in designs}
    out = []
    for o, g in df.groupby("outcome", sort=False):
        p = g["rejected"].mean()
        d = by[o]
        out.append({"outcome": o, "planned_mdrr": g["planned_mdrr"].iloc[0], "draws": len(g), "power": p,
                    "mc_se": math.sqrt(p * (1 - p) / len(g)), "planner_se": d.se(g["planned_mdrr"].iloc[0]),
                    "mean_reported_se": g["se"].mean(), "empirical_sd": g["log_rr"].std(ddof=1),
                    "dispersion": d.dispersion, "in_band": 0.75 <= p <= 0.85})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--sets", type=int, default=1500, help="matched sets (treated people) per draw")
    ap.add_argument("--scenario", choices=("site", "run", "both"), default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", type=Path, help="write the per-draw rows here")
    args = ap.parse_args()
    frames = []
    for scenario in (("site", "run") if args.scenario == "both" else (args.scenario,)):
        t0 = time.perf_counter()
        designs, targets = planned(scenario, args.sets, args.seed)
        print(f"\n{scenario}: planner ({args.sets:,} treated people)")
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
            print(plan_table(designs)[["outcome", "mdrr", "se_log_rr_at_mdrr", "dispersion",
                                       "treated_needed_for_target"]].to_string(index=False))
        df = run_draws(scenario, args.sets, args.draws, args.seed * 100_000, targets)
        frames.append(df)
        s = summarise(df, designs)
        print(f"{scenario}: {args.draws} draws planted at each outcome's MDRR, {time.perf_counter() - t0:.0f} s")
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
            print(s.to_string(index=False))
    if args.csv:
        pd.concat(frames).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
