"""Cluster (matched-set) bootstrap of the Poisson DiD and of the costing built on it.

Each replicate draws matched sets with replacement (as many as there are) and refits the
conditional Poisson DiD of `evaluation.did.estimate_poisson_did` for every costed outcome, on
the same replicate of sets, so the correlation between outcomes is kept, as in the delta
method. A set drawn k times gets weight k.

Speed: the conditional (person fixed-effects) Poisson likelihood depends on a person only
through their counts by relative month, their exposure pattern, their treatment group and
their weight. People of the same group with the same exposure pattern (almost everyone has
full exposure in all 24 months) share their cell probabilities, so their weighted counts can
be added before fitting: the fit on the collapsed "pattern" table is exactly the fit on the
person-month panel (checked in the tests). A replicate is then a matrix product (set weights
x per-set pattern counts) and a Newton fit on a few hundred rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.contract import POST_MONTHS, SEEDS
from evaluation.panel import comparison_months


@dataclass(frozen=True, eq=False)
class CollapsedOutcome:
    """Per-set, per-pattern weighted counts of one outcome (see the module docstring)."""

    outcome: str
    sets: pd.Index
    months: np.ndarray  # the relative months in the model (pre and post, rel 0 excluded)
    X: np.ndarray  # (n_patterns*n_months) x k design: rel-month dummies then treated_post
    log_e: np.ndarray  # log exposure per pattern row (-inf where not at risk)
    counts: np.ndarray  # n_sets x (n_patterns*n_months) weighted counts
    n_patterns: int
    post_events: np.ndarray  # n_sets: treated post-period events
    post_exposure: np.ndarray  # n_sets: treated post-period exposure (months)
    treated_n: np.ndarray  # n_sets: treated people


def collapse(panel: pd.DataFrame, outcome: str, post_months=POST_MONTHS,
             sets: pd.Index | None = None) -> CollapsedOutcome:
    pre_months = comparison_months(panel)
    reference = pre_months[-1]
    df = panel[panel["period"].isin(["pre", "post"]) & panel["rel_month"].isin(
        [*pre_months, *post_months])]
    months = np.array([*pre_months, *post_months])
    m_idx = {m: i for i, m in enumerate(months)}
    T = len(months)
    wide_e = df.pivot_table(index="unit_id", columns="rel_month", values="exposure_months",
                            aggfunc="sum").reindex(columns=months).fillna(0.0)
    wide_y = df.pivot_table(index="unit_id", columns="rel_month", values=outcome,
                            aggfunc="sum").reindex(index=wide_e.index, columns=months).fillna(0.0)
    persons = df.drop_duplicates("unit_id").set_index("unit_id").loc[
        wide_e.index, ["cluster_id", "is_treated", "weight"]]
    key = persons["is_treated"].astype(str) + "|" + pd.Series(
        [",".join(f"{v:.6g}" for v in row) for row in wide_e.to_numpy()], index=wide_e.index)
    pat_codes, pat_keys = pd.factorize(key)
    n_pat = len(pat_keys)
    first = pd.Series(range(len(key)), index=key.index).groupby(pat_codes).first().to_numpy()
    pat_exposure = wide_e.to_numpy()[first]  # n_pat x T
    pat_treated = persons["is_treated"].to_numpy()[first]
    # design per pattern row
    rel_levels = [m for m in months if m != reference]
    Xp = np.zeros((n_pat * T, len(rel_levels) + 1))
    for p in range(n_pat):
        for t, m in enumerate(months):
            r = p * T + t
            if m != reference:
                Xp[r, rel_levels.index(m)] = 1.0
            Xp[r, -1] = float(pat_treated[p] == 1 and m > 0)
    with np.errstate(divide="ignore"):
        log_e = np.log(pat_exposure.reshape(-1))
    if sets is None:
        sets = pd.Index(sorted(df["cluster_id"].unique()))
    s_idx = sets.get_indexer(persons["cluster_id"])
    wy = wide_y.to_numpy() * persons["weight"].to_numpy()[:, None]
    counts = np.zeros((len(sets), n_pat * T))
    cols = pat_codes[:, None] * T + np.arange(T)[None, :]
    np.add.at(counts, (np.repeat(s_idx, T), cols.reshape(-1)), wy.reshape(-1))
    tr = persons["is_treated"].to_numpy() == 1
    post_cols = [m_idx[m] for m in post_months]
    post_ev = np.bincount(s_idx[tr], weights=wide_y.to_numpy()[tr][:, post_cols].sum(axis=1),
                          minlength=len(sets))
    post_ex = np.bincount(s_idx[tr], weights=wide_e.to_numpy()[tr][:, post_cols].sum(axis=1),
                          minlength=len(sets))
    treated_n = np.bincount(s_idx[tr], minlength=len(sets)).astype(float)
    return CollapsedOutcome(outcome, sets, months, Xp, log_e, counts, n_pat, post_ev, post_ex,
                            treated_n)


def fit_collapsed(c: CollapsedOutcome, y: np.ndarray, max_iter: int = 50,
                  tol: float = 1e-10) -> float:
    """Conditional Poisson MLE of treated_post on collapsed counts y (one value per pattern
    row); NaN if not estimable (no treated post-period events)."""
    T = len(c.months)
    at_risk = np.isfinite(c.log_e)
    tp = c.X[:, -1] == 1
    if y[tp].sum() <= 0:
        return float("nan")
    # separation: a relative month with no events at all has MLE -inf for its dummy; its
    # rows carry no information on the other coefficients (as in fit_poisson_fe)
    month_tot = np.bincount(np.tile(np.arange(T), c.n_patterns), weights=y, minlength=T)
    keep = at_risk & (month_tot[np.tile(np.arange(T), c.n_patterns)] > 0)
    active = c.X[keep].any(axis=0)
    X, yk, le = c.X[keep][:, active], y[keep], c.log_e[keep]
    pat = np.repeat(np.arange(c.n_patterns), T)[keep]
    n_p = c.n_patterns
    Y = np.bincount(pat, weights=yk, minlength=n_p)
    b = np.zeros(X.shape[1])

    def probs(b):
        eta = X @ b + le
        mx = np.full(n_p, -np.inf)
        np.maximum.at(mx, pat, eta)
        m = np.exp(eta - mx[pat])
        return m / np.bincount(pat, weights=m, minlength=n_p)[pat]

    p = probs(b)
    ll = float(np.sum(yk * np.log(np.where(p > 0, p, 1.0))))
    for _ in range(max_iter):
        g = X.T @ (yk - Y[pat] * p)
        xbar = np.zeros((n_p, X.shape[1]))
        np.add.at(xbar, pat, X * p[:, None])
        H = -(X.T @ (X * (Y[pat] * p)[:, None]) - xbar.T @ (xbar * Y[:, None]))
        step = np.linalg.lstsq(H, g, rcond=None)[0]
        t = 1.0
        while True:
            b_new = b - t * step
            p_new = probs(b_new)
            ll_new = float(np.sum(yk * np.log(np.where(p_new > 0, p_new, 1.0))))
            if ll_new >= ll - 1e-12 or t < 1e-8:
                break
            t /= 2
        done = np.max(np.abs(t * step)) < tol or abs(ll_new - ll) < tol * (1 + abs(ll))
        b, p, ll = b_new, p_new, ll_new
        if done:
            break
    return float(b[-1])


@dataclass(frozen=True, eq=False)
class BootstrapDraws:
    """Replicates of each outcome's log rate ratio and absolute change per treated person-year,
    and of the mean follow-up (years) of treated people."""

    log_rr: pd.DataFrame  # reps x outcomes
    abs_change_py: pd.DataFrame  # reps x outcomes
    followup_years: np.ndarray  # reps
    reps: int
    seed: int
    n_sets: int


def cluster_bootstrap(panel: pd.DataFrame, outcomes, reps: int = 499, seed: int = SEEDS.bootstrap,
                      post_months=POST_MONTHS) -> BootstrapDraws:
    """Matched-set bootstrap of the Poisson DiD for several outcomes on shared replicates."""
    df = panel[panel["period"].isin(["pre", "post"])]
    sets = pd.Index(sorted(df["cluster_id"].unique()))
    col = {o: collapse(panel, o, post_months, sets) for o in outcomes}
    rng = np.random.default_rng(seed)
    n = len(sets)
    K = rng.multinomial(n, np.full(n, 1.0 / n), size=reps).astype(float)  # reps x sets
    log_rr = np.full((reps, len(outcomes)), np.nan)
    abs_py = np.full((reps, len(outcomes)), np.nan)
    first = col[outcomes[0]]
    fu = (K @ first.post_exposure) / 12 / np.maximum(K @ first.treated_n, 1e-12)
    for j, o in enumerate(outcomes):
        c = col[o]
        Yrep = K @ c.counts
        r1 = (K @ c.post_events) / np.maximum(K @ c.post_exposure, 1e-12)
        for b in range(reps):
            beta = fit_collapsed(c, Yrep[b])
            log_rr[b, j] = beta
            abs_py[b, j] = 12 * r1[b] * (1 - np.exp(-beta)) if np.isfinite(beta) else np.nan
    return BootstrapDraws(
        log_rr=pd.DataFrame(log_rr, columns=list(outcomes)),
        abs_change_py=pd.DataFrame(abs_py, columns=list(outcomes)),
        followup_years=np.minimum(fu, 1.0 * len(post_months) / 12), reps=reps, seed=seed,
        n_sets=n,
    )


def point_estimate(panel: pd.DataFrame, outcome: str, post_months=POST_MONTHS) -> float:
    """log rate ratio from the collapsed fit (equals estimate_poisson_did's)."""
    c = collapse(panel, outcome, post_months)
    return fit_collapsed(c, c.counts.sum(axis=0))
