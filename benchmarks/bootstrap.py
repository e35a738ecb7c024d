"""Benchmark of the cluster bootstrap of the costing: seconds per cohort size.

    uv run --frozen python benchmarks/bootstrap.py [--persons 20000] [--seed 1] [--copies 1,10,30]
        [--reps 499] [--exact]

Builds one real matched panel (generator -> perfect-linkage fixture -> dbt, as the Monte Carlo
benchmark does), then times `evaluation.bootstrap.cluster_bootstrap` on it and on copies of it:
each copy's sets get new ids and its partial-month exposures a tiny shift, so that the number
of exposure patterns grows with the cohort as it does in a larger population. Prints figures;
asserts nothing (speed is measured here, never in timed tests).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monte_carlo import build_warehouse  # noqa: E402

from evaluation.bootstrap import cluster_bootstrap, unit_counts  # noqa: E402
from evaluation.costing import DEFAULT_COSTED_OUTCOMES  # noqa: E402
from evaluation.panel import load_panel  # noqa: E402


def copies_of(panel: pd.DataFrame, n: int) -> pd.DataFrame:
    parts = []
    for k in range(n):
        p = panel.copy()
        for col in ("matched_set_id", "unit_id", "cluster_id"):
            p[col] = p[col].astype(str) + f"#{k}"
        partial = p["exposure_months"] < 1
        p.loc[partial, "exposure_months"] *= 1 - 1e-7 * k
        parts.append(p)
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--copies", default="1,10,30")
    ap.add_argument("--reps", type=int, default=499)
    ap.add_argument("--exact", action="store_true", help="also time refits to convergence (slow)")
    args = ap.parse_args()
    outcomes = list(DEFAULT_COSTED_OUTCOMES)
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_warehouse(Path(tmp) / "draw", args.persons, args.seed, False, Path(tmp) / "dbt")
        panel = load_panel(paths.warehouse)
    print(f"panel of {args.persons:,} persons (seed {args.seed}); {args.reps} replicates of {len(outcomes)} outcomes")
    print(f"{'copies':>6} {'sets':>9} {'units':>9} {'patterns':>9} {'refit':>9} {'seconds':>9} {'peak MiB':>9}")
    for n in (int(c) for c in args.copies.split(",")):
        p = copies_of(panel, n)
        c = unit_counts(p, outcomes[0])
        for refit in ("one_step", "exact") if args.exact else ("one_step",):
            t0 = time.perf_counter()
            boot = cluster_bootstrap(p, outcomes, reps=args.reps, refit=refit)
            seconds = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            sd = np.nanstd(boot.log_rr[outcomes[0]])
            print(f"{n:>6} {boot.n_sets:>9,} {len(c.y):>9,} {c.n_patterns:>9,} {refit:>9} {seconds:>9.1f} "
                  f"{peak:>9,.0f}   (SD of {outcomes[0]} log RR {sd:.4f})")


if __name__ == "__main__":
    main()
