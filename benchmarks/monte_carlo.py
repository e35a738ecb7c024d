"""Monte Carlo benchmark of the matched DiD: bias and 95% interval coverage per outcome.

    uv run --frozen python benchmarks/monte_carlo.py [--draws 30] [--persons 20000]
        [--first-seed 101] [--null-effect] [--confounding 0.9] [--workdir /tmp/mc]
        [--csv draws.csv] [--save-draws DIR | --from-draws DIR]

Each draw is the whole analytical path on a fresh synthetic population: generator (seed =
first_seed + draw) -> perfect-linkage pseudonymised fixture -> dbt seeds and models (the
matched cohort and `mart_evaluation_panel`, exactly the models the DAG builds; in process, one
`dbt build` per draw, tests left to the test suite) -> conditional
Poisson DiD per outcome (`evaluation.did.estimate_poisson_did`) and the NAIVE before/after
(every eligible treated person, `mart_treated_panel`), with the share of matched controls
referred during their follow-up (not-yet-referred design: they stay controls).
The truth is the generator's `ground_truth/planted_effects.json` (rate ratio per outcome).

Negative controls and empirical calibration (issue 16): each draw also estimates the negative-
control outcomes (core.contract.NEGATIVE_CONTROLS) the same way, fits the empirical null
(evaluation.methods.calibration, as R's EmpiricalCalibration) and calibrates each outcome's
interval; its coverage of the planted (causal) rate ratio is printed beside the uncalibrated
one. --confounding RR plants residual confounding (SynthParams.residual_confounding_rate_ratio:
treated people's rates, negative controls too, times RR from the index month), which the
uncalibrated intervals cannot see and the calibrated ones should allow for. The calibrated
interval "with null error" (what the report shows) uses the correlation-aware standard error of
(estimate - null mean), `evaluation.calibration.null_error_se`; the columns
calibrated_independent_* keep the earlier independent formula sqrt(se^2 + mean_se^2) on the same
draw, and cov_null_mean / corr_null_mean the cluster-level covariance and correlation of the
outcome's estimate with the null's mean.

Printed per outcome: mean estimated rate ratio, bias of the log rate ratio (mean estimate minus
log truth) with its Monte Carlo standard error, empirical SD of the log rate ratio against the
mean cluster-robust SE, coverage of the nominal 95% interval (with its binomial Monte Carlo
SE), and the mean NAIVE before/after change. Target coverage 0.93-0.97; with D draws the Monte
Carlo SE of a coverage of 0.95 is sqrt(0.95*0.05/D) (0.04 at D = 30, 0.01 at D = 500): below
about 500 draws a calibrated interval often falls outside the band by chance. This is a
benchmark, not a test: it prints figures and asserts nothing. Per-draw rows are appended to
--csv as they finish (a stopped run keeps its draws).

--save-draws DIR keeps each draw's three small marts (panel, all-treated panel, matched cohort;
about 0.5 MB) and its truth; --from-draws DIR re-estimates saved draws without rebuilding them,
so a change to the estimator is measured on the same populations in minutes. Two processes
with different --first-seed and --workdir use both cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.did import estimate_naive, estimate_poisson_did  # noqa: E402
from evaluation.calibration import MIN_EVENTS, influence_covariance, null_error_se  # noqa: E402
from evaluation.methods import calibration as ec  # noqa: E402
from core.contract import COUNT_OUTCOMES, NEGATIVE_CONTROLS  # noqa: E402
from evaluation.design import StudyDesign  # noqa: E402
from evaluation.panel import prepare_panel, prepare_treated_panel, read_table  # noqa: E402
from core.dbt import dbt_args  # noqa: E402
from core.settings import Paths  # noqa: E402
from synthetic.fixture import write_pseudonymised_fixture  # noqa: E402
from synthetic.generate import generate  # noqa: E402
from synthetic.params import SynthParams  # noqa: E402

KEY = b"monte-carlo-key-not-secret"


DRAW_TABLES = ("mart_evaluation_panel", "mart_treated_panel", "mart_matched_cohort", "mart_design")


def _dbt_build(paths: Paths, dbt_dir: Path) -> None:
    """Seeds and the models behind the marts, dbt in process (the warehouse build: dbt, the
    matching, dbt): one dbt start per dbt selection, and a target path kept across draws so that
    dbt parses the project once (the draw path never changes)."""
    from ltceval.warehouse_build import build_warehouse as build_in_two_selections

    os.environ.update(paths.dbt_env(), DBT_SEND_ANONYMOUS_USAGE_STATS="False")
    build_in_two_selections(paths, "--resource-type", "seed", "--resource-type", "model", "--quiet",
                            select=[*(f"+{t}" for t in DRAW_TABLES), "+mart_balance"], run=_dbt_in_process(dbt_dir))


def _dbt_in_process(dbt_dir: Path):
    def run(paths: Paths, args, extra_vars) -> None:
        from dbt.cli.main import dbtRunner

        from core.dbt import release_in_process_dbt_handle

        try:
            res = dbtRunner().invoke([*args, *dbt_args(dbt_dir, extra_vars)])
        finally:
            release_in_process_dbt_handle()  # the matching step, then the next draw, open this file
        if not res.success:
            raise RuntimeError(f"dbt {args[:3]} failed for {paths.warehouse} (see {dbt_dir / 'logs'}): "
                               f"{res.exception or 'a model failed'}")
    return run


def build_warehouse(out: Path, persons: int, seed: int, null_effect: bool,
                    dbt_dir: Path, confounding: float = 1.0) -> Paths:
    """Generator -> fixture -> dbt: the same path as the slow evaluation tests."""
    params = SynthParams(persons=persons, seed=seed, residual_confounding_rate_ratio=confounding)
    if null_effect:
        params = params.with_null_effect()
    paths = Paths(out)
    generate(params, out, fmt="parquet")
    write_pseudonymised_fixture(out, KEY)
    _dbt_build(paths, dbt_dir)
    return paths


def _world(null_effect: bool, confounding: float = 1.0) -> str:
    return ("null" if null_effect else "planted") + ("" if confounding == 1.0 else f"-confounded{confounding:g}")


def save_draw(directory: Path, world: str, seed: int, tables: dict[str, pd.DataFrame],
              truth: dict[str, float]) -> None:
    d = directory / f"{world}-{seed}"
    d.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(d / f"{name}.parquet", index=False)
    (d / "truth.json").write_text(json.dumps(truth))


def load_draw(directory: Path, world: str, seed: int
              ) -> tuple[dict[str, pd.DataFrame], dict[str, float]] | None:
    d = directory / f"{world}-{seed}"
    if not (d / "truth.json").exists():
        return None
    tables = {t: pd.read_parquet(d / f"{t}.parquet") for t in DRAW_TABLES}
    return tables, json.loads((d / "truth.json").read_text())


def estimate_draw(seed: int, tables: dict[str, pd.DataFrame], truth: dict[str, float]
                  ) -> list[dict]:
    """DiD and NAIVE per outcome for one draw's marts."""
    design = StudyDesign.from_table(tables["mart_design"])
    panel = prepare_panel(tables["mart_evaluation_panel"], design.selection_window_months)
    treated_panel = prepare_treated_panel(tables["mart_treated_panel"])  # NAIVE: all eligible
    # not-yet-referred design: controls referred during follow-up stay controls (intention to treat)
    cohort = tables["mart_matched_cohort"]
    controls = cohort[cohort["is_treated"] == 0]
    referred_share = float(controls["referred_in_followup"].mean()) if len(controls) else np.nan
    controls = {c: estimate_poisson_did(panel, c) for c in NEGATIVE_CONTROLS if c in panel.columns}
    null, model, ease, used = _empirical_null(panel, controls)
    rows = []
    for o in COUNT_OUTCOMES:
        d = estimate_poisson_did(panel, o)
        n = estimate_naive(treated_panel, o)
        rr0 = float(truth.get(o, 1.0))
        lo, hi = d.rate_ratio_ci
        row = {
            "seed": seed, "outcome": o, "true_rate_ratio": rr0, "rate_ratio": d.rate_ratio,
            "lo95": lo, "hi95": hi, "log_rr": d.log_rate_ratio, "se_log_rr": d.se_log_rate_ratio,
            "covered": bool(lo <= rr0 <= hi) if np.isfinite(lo) else np.nan,
            "naive_pct_change": n.pct_change, "n_sets": d.n_sets,
            "share_controls_referred_in_followup": referred_share,
            "null_mean": np.nan, "null_sd": np.nan, "ease": np.nan, "null_controls": 0,
            "calibrated_log_rr": np.nan, "calibrated_lo95": np.nan, "calibrated_hi95": np.nan,
            "calibrated_covered": np.nan,
        }
        if null is not None and np.isfinite(d.log_rate_ratio):
            calibrated_log_rr, clo, chi = _calibrated(d.log_rate_ratio, d.se_log_rate_ratio, model)
            # the same allowing for the error of the null's fitted mean, less its covariance with
            # the outcome (what the report shows: evaluation.calibration.null_error_se)
            se_w, correlated = null_error_se(d, [controls[c] for c in used], null)
            _, wlo, whi = _calibrated(d.log_rate_ratio, se_w, model)
            # and as before the covariance was allowed for (outcome and null mean independent)
            se_i = float(ec.allowing_for_the_null_s_error(d.se_log_rate_ratio, null))
            _, ilo, ihi = _calibrated(d.log_rate_ratio, se_i, model)
            row.update(null_mean=null.mean, null_sd=null.sd, null_mean_se=null.mean_se, ease=ease,
                       null_controls=null.n_controls,
                       calibrated_log_rr=calibrated_log_rr, calibrated_lo95=clo, calibrated_hi95=chi,
                       calibrated_covered=_covers(clo, chi, rr0),
                       calibrated_null_error_lo95=wlo, calibrated_null_error_hi95=whi,
                       calibrated_null_error_covered=_covers(wlo, whi, rr0),
                       null_error_se=se_w, null_error_correlated=correlated,
                       calibrated_independent_lo95=ilo, calibrated_independent_hi95=ihi,
                       calibrated_independent_covered=_covers(ilo, ihi, rr0),
                       null_error_se_independent=se_i,
                       **_null_mean_covariance(d, [controls[c] for c in used], null))
        rows.append(row)
    # the negative controls themselves (true rate ratio 1; with planted confounding their
    # estimates should sit at the confounding ratio): are their own intervals honest?
    for c, d in controls.items():
        lo, hi = d.rate_ratio_ci
        rows.append({"seed": seed, "outcome": c, "true_rate_ratio": 1.0, "rate_ratio": d.rate_ratio,
                     "lo95": lo, "hi95": hi, "log_rr": d.log_rate_ratio, "se_log_rr": d.se_log_rate_ratio,
                     "covered": _covers(lo, hi, 1.0), "naive_pct_change": np.nan, "n_sets": d.n_sets,
                     "events": float(panel[c].sum()),
                     "share_controls_referred_in_followup": referred_share, "negative_control": True})
    return rows


def _calibrated(log_rr: float, se: float, model) -> tuple[float, float, float]:
    """The calibrated log rate ratio and 95% interval (as rate ratios) of one estimate."""
    ci = ec.calibrate_confidence_interval(log_rr, se, model)
    return float(ci.log_rr[0]), float(np.exp(ci.log_lb[0])), float(np.exp(ci.log_ub[0]))


def _covers(lo: float, hi: float, truth: float):
    return bool(lo <= truth <= hi) if np.isfinite(lo) and np.isfinite(hi) else np.nan


def _null_mean_covariance(d, used: list, null) -> dict:
    """The cluster-level (influence-value) covariance of the outcome's log rate ratio with the
    null's fitted mean, to first order the weighted mean of the controls used (weights
    1 / (se_j^2 + sd^2)), its correlation, and the mean's SE allowing for the controls' own
    correlation; NaN without influence values."""
    V = influence_covariance([d, *used])
    if V is None:
        return {"cov_null_mean": np.nan, "corr_null_mean": np.nan, "null_mean_se_joint": np.nan}
    se = np.array([c.se_log_rate_ratio for c in used])
    w = 1 / (se**2 + null.sd**2)
    a = w / w.sum()
    cov = float(a @ V[0, 1:])
    var_mu = float(a @ (V[1:, 1:] + null.sd**2 * np.eye(len(a))) @ a)
    return {"cov_null_mean": cov, "corr_null_mean": cov / math.sqrt(V[0, 0] * var_mu),
            "null_mean_se_joint": math.sqrt(var_mu)}


def _empirical_null(panel: pd.DataFrame, controls: dict):
    """(null, systematic error model, EASE, the names of the controls it was fitted on) from the
    draw's negative-control estimates (``controls``: name -> its Poisson DiD), or Nones when the
    panel has none (draws saved before they existed) or too few are estimable."""
    if len(controls) < len(NEGATIVE_CONTROLS):
        return None, None, None, []
    log_rr, se, used = [], [], []
    for c, d in controls.items():
        if panel[c].sum() < MIN_EVENTS:  # as evaluation.calibration: too rare to trust its SE
            continue
        if np.isfinite(d.log_rate_ratio) and np.isfinite(d.se_log_rate_ratio) and d.se_log_rate_ratio > 0:
            log_rr.append(d.log_rate_ratio)
            se.append(d.se_log_rate_ratio)
            used.append(c)
    try:
        null = ec.fit_null(log_rr, se)
        model = ec.fit_systematic_error_model(log_rr, se, [0.0] * len(log_rr))
    except ValueError:
        return None, None, None, []
    return null, model, ec.expected_absolute_systematic_error(null), used


def one_draw(workdir: Path, persons: int, seed: int, null_effect: bool,
             save_dir: Path | None = None, confounding: float = 1.0) -> list[dict]:
    out = workdir / "draw"  # one path for every draw: dbt's parse of the project stays valid
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    paths = build_warehouse(out, persons, seed, null_effect, workdir / "dbt", confounding)
    truth = json.loads((paths.ground_truth / "planted_effects.json").read_text())["rate_ratio"]
    tables = {t: read_table(paths.warehouse, t) for t in DRAW_TABLES}
    t_build = time.perf_counter() - t0
    if save_dir is not None:
        save_draw(save_dir, _world(null_effect, confounding), seed, tables, truth)
    rows = estimate_draw(seed, tables, truth)
    for r in rows:
        r["seconds_build"] = round(t_build, 1)
        r["seconds_total"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(out, ignore_errors=True)
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for o, g in df.groupby("outcome", sort=False):
        g = g[np.isfinite(g["log_rr"])]
        D = len(g)
        if not D:  # too few events in every draw (a small population's rare control)
            continue
        log_truth = np.log(g["true_rate_ratio"].iloc[0])
        bias = g["log_rr"].mean() - log_truth
        cov = g["covered"].astype(float).mean()
        cal = g["calibrated_covered"].dropna().astype(float) if "calibrated_covered" in g else pd.Series(dtype=float)
        cal_cov = cal.mean() if len(cal) else np.nan
        wide = (g["calibrated_null_error_covered"].dropna().astype(float)
                if "calibrated_null_error_covered" in g else pd.Series(dtype=float))
        ind = (g["calibrated_independent_covered"].dropna().astype(float)
               if "calibrated_independent_covered" in g else pd.Series(dtype=float))
        w_cov = wide.mean() if len(wide) else np.nan
        rows.append({
            "outcome": o, "draws": D, "true_rr": g["true_rate_ratio"].iloc[0],
            "mean_rr": float(np.exp(g["log_rr"].mean())),
            "bias_log_rr": bias, "mc_se_bias": g["log_rr"].std(ddof=1) / math.sqrt(D),
            "empirical_sd": g["log_rr"].std(ddof=1), "mean_se": g["se_log_rr"].mean(),
            "coverage": cov, "mc_se_coverage": math.sqrt(max(cov * (1 - cov), 1e-12) / D),
            "calibrated_draws": len(cal), "calibrated_coverage": cal_cov,
            "mc_se_calibrated": math.sqrt(max(cal_cov * (1 - cal_cov), 1e-12) / len(cal)) if len(cal) else np.nan,
            "coverage_calibrated_with_null_error": w_cov,
            "mc_se_with_null_error": math.sqrt(max(w_cov * (1 - w_cov), 1e-12) / len(wide)) if len(wide) else np.nan,
            "coverage_calibrated_independent_null_error": ind.mean() if len(ind) else np.nan,
            "mean_corr_null_mean": g["corr_null_mean"].mean() if "corr_null_mean" in g else np.nan,
            "mean_null_mean": g["null_mean"].mean() if "null_mean" in g else np.nan,
            "mean_ease": g["ease"].mean() if "ease" in g else np.nan,
            "mean_naive_pct_change": g["naive_pct_change"].mean(),
            "mean_sets": g["n_sets"].mean(),
            "controls_referred": g["share_controls_referred_in_followup"].mean()
            if "share_controls_referred_in_followup" in g else np.nan,
        })
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--first-seed", type=int, default=101)
    ap.add_argument("--null-effect", action="store_true")
    ap.add_argument("--confounding", type=float, default=1.0,
                    help="plant residual confounding: treated people's rates x this from the index month")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--csv", type=Path, default=None, help="append per-draw rows here")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--save-draws", type=Path, default=None,
                       help="keep each draw's marts here for re-estimation")
    where.add_argument("--from-draws", type=Path, default=None,
                       help="re-estimate draws saved here instead of building them")
    where.add_argument("--summary-of", type=Path, nargs="+", default=None,
                       help="print the summary of the draws already in these --csv files (no new draws)")
    args = ap.parse_args()
    if args.summary_of:
        print_summary(pd.concat([pd.read_csv(f) for f in args.summary_of], ignore_index=True))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ltceval-mc-"))
    workdir.mkdir(parents=True, exist_ok=True)
    world = _world(args.null_effect, args.confounding)
    all_rows: list[dict] = []
    t0 = time.perf_counter()
    for i in range(args.draws):
        seed = args.first_seed + i
        if args.from_draws is not None:
            saved = load_draw(args.from_draws, world, seed)
            if saved is None:
                print(f"seed {seed}: no saved {world} draw in {args.from_draws}, skipped")
                continue
            rows = estimate_draw(seed, *saved)
        else:
            rows = one_draw(workdir, args.persons, seed, args.null_effect, args.save_draws, args.confounding)
        all_rows += rows
        if args.csv:
            pd.DataFrame(rows).to_csv(args.csv, mode="a", header=not args.csv.exists(),
                                      index=False)
        est = ", ".join(f"{r['outcome'][:12]} {r['rate_ratio']:.3f}{'' if r['covered'] else '!'}"
                        for r in rows if not r.get("negative_control"))
        took = f" ({rows[0]['seconds_total']:.0f}s)" if "seconds_total" in rows[0] else ""
        print(f"draw {i + 1}/{args.draws} seed {seed}{took}: {est}", flush=True)
    if not all_rows:
        raise SystemExit("no draws")
    df = pd.DataFrame(all_rows)
    print(f"\n{'NULL effect' if args.null_effect else 'Planted effects'}"
          f"{'' if args.confounding == 1.0 else f', residual confounding x{args.confounding:g}'}: {len(df['seed'].unique())} "
          f"draws{'' if args.from_draws else f' of {args.persons:,} persons'}, seeds "
          f"{args.first_seed}..{args.first_seed + args.draws - 1}, "
          f"{time.perf_counter() - t0:.0f}s")
    print_summary(df)


def print_summary(df: pd.DataFrame) -> None:
    """The per-outcome table, then the negative controls' null and EASE over the draws."""
    s = summarise(df)
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.float_format", "{:.3f}".format):
        print(s.to_string(index=False))
    first = df.drop_duplicates("seed")
    if "ease" in first and first["ease"].notna().any():
        e = first["ease"].dropna()
        print(f"\nEmpirical null over {len(e)} draws with one: mean of its mean {first['null_mean'].mean():+.3f}, "
              f"median sd {first['null_sd'].median():.3f}, mean SE of its mean {first['null_mean_se'].mean():.3f}; "
              f"EASE median {e.median():.3f}, 90th centile {e.quantile(0.9):.3f}, above 0.25 in {(e > 0.25).mean():.1%}; "
              f"controls used: median {first['null_controls'].median():.0f}")
    bad = s[(s["coverage"] < 0.93) | (s["coverage"] > 0.97)]
    if len(bad):
        print("\nCoverage outside 0.93-0.97 for: " + ", ".join(
            f"{r.outcome} {r.coverage:.2f} (MC SE {r.mc_se_coverage:.2f})" for r in bad.itertuples()))


if __name__ == "__main__":
    main()
