"""Propensity-score matching shared by the dbt Python model and the `ltceval match` CLI.

One generic entry point, :func:`match`, works on any table with one row per candidate unit
(for the evaluation: one row per treated person at their index month, and one row per
control person per index month at which that person was eligible):

1. drop rows with missing treatment, covariates or exact-match keys;
2. fit a logistic propensity model (statsmodels ``Logit``) of treatment on the covariates,
   or on ``ps_covariates`` when given (e.g. with log and squared terms); standardised, an
   intercept added, constant columns left out;
3. greedy nearest-neighbour matching on the logit of the score, within strata formed by
   the exact-match columns and the optional ``group`` column (e.g. index month), 1:k in
   rounds (every treated unit gets its first control before any gets a second), without
   replacement (a control unit, identified by ``id_col``, is used at most once across all
   strata), within a caliper of ``caliper`` pooled standard deviations of the logit;
4. balance before and after matching: standardised mean difference (SMD) and variance ratio
   per covariate and for the logit of the score.

SMD denominator: the pooled SD ``sqrt((var_t + var_c) / 2)`` of the *unmatched* sample, for
both stages, so that the before and after figures are on one scale (Stuart 2010). After
matching, each control is weighted ``1 / (number of controls in its matched set)`` so that
controls represent the matched treated units (ATT weights); with 1:k and a full set these
are equal weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

__all__ = ["MatchResult", "columns_used", "row_order_columns", "match", "matched_att", "balance_table", "fit_propensity",
           "as_column_list", "equipoise"]

LOGIT_COLUMN = "propensity_logit"
# balance swaps score this many (treated, slot, candidate) pairs at a time: memory stays
# bounded however large the pool (at 2 million people a pass can hold 100 million pairs)
_SWAP_PAIRS_PER_CHUNK = 1 << 20


@dataclass
class MatchResult:
    """What :func:`match` returns; unpacks as ``matched, balance, counts``.

    matched: the matched rows (treated and controls) of the input, plus ``matched_set_id``
        (int, one per treated unit), ``propensity_score``, ``propensity_logit`` and
        ``match_weight`` (1 for treated, 1/m for each of the m controls of a set).
    balance: covariate, stage (before/after), mean_treated, mean_control, sd_pooled, smd,
        variance_ratio, n_treated, n_control.
    counts: step_order, step, n_treated, n_control (rows, and distinct ``id_col`` units for
        controls when ``id_col`` is given).
    info: caliper width on the logit scale, model coefficients, settings.
    """

    matched: pd.DataFrame
    balance: pd.DataFrame
    counts: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.matched, self.balance, self.counts))


def as_column_list(cols: str | Sequence[str] | None) -> list[str]:
    """Column names from a list, or from a string: JSON/Python list text, or comma-separated
    (dbt passes vars to Python models through config, sometimes as text)."""
    if cols is None:
        return []
    if isinstance(cols, str):
        text = cols.strip()
        if text.startswith("["):
            import ast

            return [str(c) for c in ast.literal_eval(text)]
        return [c.strip() for c in text.split(",") if c.strip()]
    return [str(c) for c in cols]


_as_list = as_column_list


def fit_propensity(
    df: pd.DataFrame, treatment: str, covariates: Sequence[str]
) -> tuple[np.ndarray, dict[str, float]]:
    """Logit of the propensity score for each row of ``df`` and the fitted coefficients.

    Covariates are standardised before fitting (coefficients are per SD); covariates with
    no variance are left out. The model is fitted once per distinct covariate pattern, as a
    binomial GLM of the pattern's treated count out of its rows (statsmodels ``GLM``): the
    same likelihood, and so the same estimates, as the logit on every row, which at 7 million
    candidate rows (2 million people, about a million patterns) took 4 GiB in its copies of
    the design. Falls back to a lightly penalised row-level fit if the unpenalised fit fails
    (for instance under perfect separation).
    """
    import statsmodels.api as sm

    y = df[treatment].astype(float).to_numpy()
    scaling = {}  # column -> (mean, SD) over the rows, for the columns that vary
    for c in covariates:
        x = df[c].astype(float)
        sd = x.std(ddof=0)
        if sd > 0:
            scaling[c] = (x.mean(), sd)
    columns = list(scaling)
    pattern = _sorted_pattern_codes(df, columns)
    n_patterns = int(pattern.max()) + 1 if len(pattern) else 0
    first = np.full(n_patterns, len(df), dtype=np.int64)
    np.minimum.at(first, pattern, np.arange(len(df), dtype=np.int64))
    rows = np.bincount(pattern, minlength=n_patterns).astype(float)
    treated = np.bincount(pattern, weights=y, minlength=n_patterns)
    names = ["const", *columns]
    design = np.empty((n_patterns, len(names)))
    design[:, 0] = 1.0
    for j, c in enumerate(columns, start=1):
        mean, sd = scaling[c]
        design[:, j] = (df[c].iloc[first].astype(float).to_numpy() - mean) / sd
    Xp = pd.DataFrame(design, columns=names, copy=False)
    try:
        # Newton (the logit's Hessian is its Fisher information): half the memory of IRLS,
        # whose weighted least squares copy the design several times over
        res = sm.GLM(np.column_stack([treated, rows - treated]), Xp, family=sm.families.Binomial()).fit(
            method="newton", maxiter=200, tol=1e-12, disp=0)
        params = res.params
        if not np.all(np.isfinite(params)):
            raise ValueError("non-finite coefficients")
    except Exception:  # separation or singular design: small ridge penalty, on every row
        Xs = Xp.iloc[pattern].reset_index(drop=True)
        params = sm.Logit(y, Xs).fit_regularized(method="l1", alpha=1e-3, disp=0).params
    logit = (design @ np.asarray(params, dtype=float))[pattern]
    coefs = {str(k): float(v) for k, v in params.items()}
    return logit, coefs


def equipoise(logit: np.ndarray, is_treated: np.ndarray, low: float | None = None,
              high: float | None = None) -> dict[str, Any]:
    """Clinical equipoise (Walker et al. 2013) of the rows a propensity model scored: the
    preference score takes the treated share P out of the score, logit(F) = logit(PS) - logit(P),
    so that 0.5 means "as likely as the average person to be treated"; equipoise is the share
    of all rows, treated and comparator together (as OHDSI CohortMethod's computeEquipoise),
    with F in [low, high] (default: evaluation.diagnostics.THRESHOLDS). Returns the rows counted and those in the range (the share is
    published from the rounded counts)."""
    from evaluation.diagnostics import THRESHOLDS  # the one definition of the range

    low = THRESHOLDS.preference_low if low is None else low
    high = THRESHOLDS.preference_high if high is None else high
    is_t = np.asarray(is_treated, dtype=bool)
    n = int(len(is_t))
    p = float(is_t.mean()) if n else float("nan")
    if not n or p in (0.0, 1.0):
        return {"n_rows": n, "n_in_range": 0, "share": float("nan"), "low": low, "high": high}
    pref = 1.0 / (1.0 + np.exp(-(np.asarray(logit, dtype=float) - np.log(p / (1.0 - p)))))
    inside = int(((pref >= low) & (pref <= high)).sum())
    return {"n_rows": n, "n_in_range": inside, "share": inside / n, "low": low, "high": high}


def _sorted_pattern_codes(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Code of each row's combination of values of ``columns``, numbered in sorted order (as
    ``groupby(columns, sort=True).ngroup()``), so that what is fitted on the patterns does not
    depend on the order of the rows. Built a column at a time: a groupby holds one code array
    per column (0.8 GB over 15 columns at 7 million rows)."""
    codes = np.zeros(len(df), dtype=np.int64)
    for c in columns:
        col, uniques = pd.factorize(df[c], sort=True, use_na_sentinel=False)
        # rank-preserving: (codes so far, this column) in lexicographic order, made dense again
        codes, _ = pd.factorize(codes * len(uniques) + col, sort=True)
    return codes


def _weighted_mean_var(x: np.ndarray, w: np.ndarray | None) -> tuple[float, float]:
    if len(x) == 0:
        return float("nan"), float("nan")
    if w is None:
        return float(np.mean(x)), float(np.var(x, ddof=1)) if len(x) > 1 else 0.0
    w = w / w.sum()
    m = float(np.sum(w * x))
    v = float(np.sum(w * (x - m) ** 2))
    # reliability-weights correction, so that equal weights give the usual ddof=1 variance
    denom = 1.0 - float(np.sum(w**2))
    if denom > 0:
        v = v / denom
    return m, v


def balance_table(
    before: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    after: pd.DataFrame | None = None,
    weight: str | None = None,
) -> pd.DataFrame:
    """SMD and variance ratio of each covariate before (``before``) and after (``after``).

    ``weight`` names a column of ``after`` holding control weights (treated rows are weighted
    1 whatever the column says). The SMD denominator is the pooled SD of ``before``.
    """
    rows = []
    tb = before[treatment].astype(int).to_numpy() == 1
    for cov in covariates:
        xb = before[cov].astype(float).to_numpy()
        mt, vt = _weighted_mean_var(xb[tb], None)
        mc, vc = _weighted_mean_var(xb[~tb], None)
        sd_pooled = float(np.sqrt((vt + vc) / 2.0)) if np.isfinite(vt + vc) else float("nan")
        stages = [("before", xb, tb, None)]
        if after is not None:
            ta = after[treatment].astype(int).to_numpy() == 1
            wa = after[weight].astype(float).to_numpy() if weight else None
            stages.append(("after", after[cov].astype(float).to_numpy(), ta, wa))
        for stage, x, t, w in stages:
            m_t, v_t = _weighted_mean_var(x[t], None)
            m_c, v_c = _weighted_mean_var(x[~t], None if w is None else w[~t])
            diff = m_t - m_c
            if sd_pooled and sd_pooled > 0:
                smd = diff / sd_pooled
            else:
                smd = 0.0 if diff == 0 or not np.isfinite(diff) else float("inf")
            vr = v_t / v_c if v_c and v_c > 0 else (1.0 if v_t == 0 else float("nan"))
            rows.append(
                {
                    "covariate": cov,
                    "stage": stage,
                    "mean_treated": m_t,
                    "mean_control": m_c,
                    "sd_pooled": sd_pooled,
                    "smd": float(smd),
                    "variance_ratio": float(vr),
                    "n_treated": int(t.sum()),
                    "n_control": int((~t).sum()),
                }
            )
    return pd.DataFrame(rows)


def _nearest_available(vals, rows, x, width, used, unit_code) -> int:
    """Position in the sorted pool of the unused control nearest to logit x within the caliper, or -1."""
    pos = int(np.searchsorted(vals, x))
    best, best_d = -1, np.inf
    j = pos - 1
    while j >= 0 and x - vals[j] <= width:
        if not used[unit_code[rows[j]]]:
            best, best_d = j, x - vals[j]
            break
        j -= 1
    j = pos
    while j < len(rows) and vals[j] - x <= width and vals[j] - x < best_d:
        if not used[unit_code[rows[j]]]:
            best = j
            break
        j += 1
    return best


def _closest_by_distance(cand, i, used, unit_code, Z) -> int:
    """Row of the unused candidate closest to treated row i in Mahalanobis distance, or -1.

    ``Z`` holds the distance covariates already whitened (Mahalanobis distance = Euclidean
    distance on Z); ties are broken by row order, so the result is deterministic."""
    free = cand[~used[unit_code[cand]]]
    if len(free) == 0:
        return -1
    d = np.sum((Z[free] - Z[i]) ** 2, axis=1)
    return int(free[int(np.argmin(d))])


def _whiten(X: np.ndarray, is_t: np.ndarray) -> np.ndarray:
    """Rows of X transformed so that Euclidean distance is the Mahalanobis distance under the
    pooled within-group covariance (Rubin 1980); singular directions are dropped."""
    Xc = X.copy()
    Xc[is_t] -= X[is_t].mean(axis=0)
    Xc[~is_t] -= X[~is_t].mean(axis=0)
    cov = np.cov(Xc, rowvar=False, ddof=1)
    cov = np.atleast_2d(cov)
    vals, vecs = np.linalg.eigh(cov)
    keep = vals > 1e-10 * max(vals.max(), 1e-300)
    return X @ (vecs[:, keep] / np.sqrt(vals[keep]))


def _candidates_within_caliper(pools, stratum, logit, width, i) -> np.ndarray:
    """Rows of the control pool in treated row i's stratum within the caliper of its logit."""
    pool = pools.get(int(stratum[i]))
    if pool is None:
        return np.empty(0, dtype=int)
    rows, vals = pool
    lo = np.searchsorted(vals, logit[i] - width, side="left")
    hi = np.searchsorted(vals, logit[i] + width, side="right")
    return rows[lo:hi]


def _refine(matches, pools, stratum, logit, width, used, unit_code, ratio, *, X, is_t, max_iter, target=0.0) -> dict[str, Any]:
    """Improve a greedy matching in place, never leaving the exact strata or the caliper.

    (a) Rescue: for each treated unit without a control, look for an augmenting path
        (Kuhn's algorithm): a candidate control that is free, or held by another treated
        unit that can take another free candidate of its own (recursively). Every treated
        unit matched before stays matched; the number of matched treated can only rise.
    (b) Balance swaps: replace one matched control by an unused candidate of the same treated
        unit when that lowers the largest |SMD| over the balance columns ``X`` (SMD with the
        pre-matching pooled SD, controls weighted 1/m within their set, as in
        :func:`balance_table`); the best such swap is made, and this repeats until no swap
        helps, the largest |SMD| is at or below ``target`` or ``max_iter`` swaps were made.
    """
    import sys

    treated = [int(i) for i in matches]
    cand = {i: _candidates_within_caliper(pools, stratum, logit, width, i) for i in treated}
    holder: dict[int, tuple[int, int]] = {}  # unit -> (treated row, control row)
    for i, rows in matches.items():
        for r in rows:
            holder[int(unit_code[r])] = (i, r)

    def augment(i: int, seen: set[int], depth: int) -> int:
        """A control row for treated i, freeing it by moving its holder if need be; -1 if none."""
        if depth > 200:
            return -1
        own = {int(unit_code[r]) for r in matches[i]}
        for r in cand[i]:
            u = int(unit_code[r])
            if u in seen or u in own:
                continue
            seen.add(u)
            if not used[u]:
                return int(r)
            j, r_old = holder[u]
            r_new = augment(j, seen, depth + 1)
            if r_new >= 0:  # j swaps r_old for r_new; u becomes free for i
                matches[j][matches[j].index(r_old)] = r_new
                used[unit_code[r_new]] = True
                holder[int(unit_code[r_new])] = (j, r_new)
                used[u] = False
                holder.pop(u, None)
                return int(r)
        return -1

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 2000))
    rescued = 0
    try:
        for i in treated:
            if matches[i]:
                continue
            r = augment(i, set(), 0)
            if r >= 0:
                matches[i].append(r)
                used[unit_code[r]] = True
                holder[int(unit_code[r])] = (i, r)
                rescued += 1
    finally:
        sys.setrecursionlimit(limit)

    # (b) balance swaps
    t_rows = np.flatnonzero(is_t)
    c_rows = np.flatnonzero(~is_t)
    # a column at a time: X[c_rows] would copy nearly all of X (0.5 GB at 2 million people)
    var_t = np.array([X[t_rows, j].var(ddof=1) for j in range(X.shape[1])])
    var_c = np.array([X[c_rows, j].var(ddof=1) for j in range(X.shape[1])])
    sd = np.sqrt((var_t + var_c) / 2.0)
    sd[~(sd > 0)] = np.inf  # constant columns cannot be unbalanced
    set_t = [i for i in treated if matches[i]]
    n_sets = len(set_t)
    if n_sets == 0:
        return {"rescued": rescued, "swaps": 0, "max_abs_smd_greedy": None, "max_abs_smd_refined": None}
    mean_t = X[set_t].mean(axis=0)
    sum_c = np.zeros(X.shape[1])
    for i in set_t:
        sum_c += X[matches[i]].sum(axis=0) / len(matches[i])

    def worst(mean_c):
        return np.max(np.abs(mean_t - mean_c) / sd, axis=-1)

    start = float(worst(sum_c / n_sets))
    swaps, current = 0, start
    if not (current > target and max_iter > 0):
        # balanced already (the usual case with a large pool): the pairs below can run to
        # hundreds of millions, so they are not built when no swap is wanted
        return {"rescued": rescued, "swaps": 0, "max_abs_smd_greedy": start, "max_abs_smd_refined": start}
    # every (treated, slot, candidate) pair once, in order; validity is re-checked at each swap
    sizes = np.array([len(cand[i]) for i in set_t for _ in matches[i]], dtype=np.int64)
    pi = np.repeat(np.array([i for i in set_t for _ in matches[i]], dtype=np.int64), sizes)
    ps = np.repeat(np.array([slot for i in set_t for slot in range(len(matches[i]))], dtype=np.int64), sizes)
    pr = np.concatenate([cand[i] for i in set_t for _ in matches[i]] or [np.empty(0, dtype=np.int64)]).astype(np.int64)
    m_of = np.zeros(len(logit), dtype=float)
    cur = np.full((len(logit), max(ratio, 1)), -1, dtype=int)
    for i in set_t:
        m_of[i] = len(matches[i])
        cur[i, : len(matches[i])] = matches[i]
    chunk = _SWAP_PAIRS_PER_CHUNK
    while swaps < max_iter and len(pi) and current > target:
        old = cur[pi, ps]
        ok = (old >= 0) & ~used[unit_code[pr]]
        if not ok.any():
            break
        idx = np.flatnonzero(ok)
        k, best = -1, np.inf
        for lo in range(0, len(idx), chunk):
            part = idx[lo:lo + chunk]
            delta = (X[pr[part]] - X[old[part]]) / m_of[pi[part], None] / n_sets
            score = worst(sum_c / n_sets + delta)
            j = int(np.argmin(score))
            if score[j] < best:  # strictly: the first of equal scores, as one argmin over all
                k, best = lo + j, float(score[j])
        if not best < current - 1e-6:
            break
        a = idx[k]
        i, slot, r_new, r_old = int(pi[a]), int(ps[a]), int(pr[a]), int(old[a])
        sum_c += (X[r_new] - X[r_old]) / m_of[i]
        used[unit_code[r_old]] = False
        used[unit_code[r_new]] = True
        matches[i][slot] = r_new
        cur[i, slot] = r_new
        current = best
        swaps += 1
    return {"rescued": rescued, "swaps": swaps, "max_abs_smd_greedy": start, "max_abs_smd_refined": current}


def columns_used(
    treatment: str,
    covariates: Sequence[str],
    exact: str | Sequence[str] | None = None,
    group: str | None = None,
    *,
    id_col: str | None = None,
    ps_covariates: Sequence[str] | None = None,
    distance_covariates: Sequence[str] | None = None,
) -> list[str]:
    """The columns :func:`match` reads with these arguments, each once: a caller holding a wide
    table passes only these and joins the rest back to the matched rows."""
    covs = _as_list(covariates)
    return list(dict.fromkeys([
        treatment, *covs, *(_as_list(ps_covariates) or covs), *_as_list(distance_covariates),
        *_as_list(exact), *_as_list(group), *_as_list(id_col),
    ]))


def row_order_columns(treatment: str, exact: str | Sequence[str] | None = None, group: str | None = None,
                      id_col: str | None = None) -> list[str]:
    """The columns :func:`match` sorts its rows by (stably), so that its result does not
    depend on the order the table was read in; a caller that reads them in this order saves
    it a copy."""
    exact_cols = _as_list(exact)
    strata_cols = exact_cols + ([group] if group and group not in exact_cols else [])
    return [*_as_list(id_col), *strata_cols, treatment]


def match(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    exact: str | Sequence[str] | None = None,
    ratio: int = 1,
    caliper: float | None = 0.2,
    group: str | None = None,
    *,
    id_col: str | None = None,
    seed: int = 20240101,
    ps_covariates: Sequence[str] | None = None,
    refine: bool = False,
    refine_max_iter: int = 1000,
    refine_target_smd: float = 0.0,
    distance_covariates: Sequence[str] | None = None,
    controls_may_be_treated_later: bool = False,
) -> MatchResult:
    """Greedy 1:``ratio`` nearest-neighbour propensity-score matching without replacement.

    df: one row per candidate (treated or control). ``treatment`` is 0/1 (or bool).
    covariates: numeric columns for the propensity model and the balance table.
    exact: columns that must be equal within a matched set (any dtype).
    ratio: controls wanted per treated unit (treated with 1..ratio controls are kept).
    caliper: maximum distance on the logit of the score, in pooled SDs of that logit
        (None: no caliper).
    group: a further exact-match column, e.g. index month in a stacked design.
    id_col: unit identifier; a control unit is used at most once across all its rows, and
        rows of units that are ever treated are never used as controls (unless
        ``controls_may_be_treated_later``). Default: each row is its own unit.
    controls_may_be_treated_later: keep the control rows of units that are treated in
        another row (a not-yet-treated design, where a person is a control at index months
        before their own treatment; the caller makes those rows eligible). Leaving them out
        conditions the controls on their future: people whose use rises later, and who are
        referred for it, would be missing from the comparison.
    seed: breaks ties in the order treated units are served (largest score first).
    ps_covariates: columns of the propensity model when they should differ from
        ``covariates`` (e.g. adding log or squared terms); balance is always reported on
        ``covariates`` and the logit of the score.
    refine: after the greedy pass, (a) rescue treated units left without a control by
        augmenting paths (another treated unit moves to one of its other candidates, so
        nobody already matched loses a match), then (b) swap controls for unused candidates,
        one swap at a time, while the swap lowers the largest |SMD| (covariates and logit).
        Every swap stays within the exact stratum and the caliper and keeps matching without
        replacement; see :func:`_refine`.
    refine_max_iter: most swaps in (b).
    refine_target_smd: (b) stops once the largest |SMD| is at or below this (0: until no swap
        helps); a positive target changes the nearest-neighbour matching as little as needed.
    distance_covariates: when given, Mahalanobis-metric matching within propensity-score
        calipers (Rubin and Thomas 2000; MatchIt's ``mahvars``): among the unused controls of
        the stratum inside the caliper, the one nearest in Mahalanobis distance on these
        columns (pooled within-group covariance) is taken, rather than the one nearest in
        score. Balance on the score alone is balance on average; these columns are then close
        within each matched set too, which matters when they predict the outcome (e.g.
        baseline utilisation: residual imbalance there shows up as regression to the mean).
    """
    covariates = _as_list(covariates)
    model_covs = _as_list(ps_covariates) or covariates
    exact_cols = _as_list(exact)
    strata_cols = exact_cols + ([group] if group and group not in exact_cols else [])
    if ratio < 1:
        raise ValueError("ratio must be >= 1")
    dist_covs = _as_list(distance_covariates)
    needed = columns_used(treatment, covariates, exact, group, id_col=id_col, ps_covariates=ps_covariates,
                          distance_covariates=distance_covariates)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the table: {missing}")

    counts: list[dict[str, Any]] = []
    # Rows are selected by masks over the input and the working frame holds only the columns
    # used here: at 7 million candidate rows (2 million people) every copy of the whole table
    # is gigabytes. The matched rows are taken from the input at the end, every column kept.
    present = df[treatment].notna().to_numpy()
    treated_in = np.zeros(len(df), dtype=bool)
    treated_in[present] = df.loc[present, treatment].astype(int).to_numpy() == 1
    unit_in = pd.factorize(df[id_col])[0] if id_col else None

    def _count(step: str, mask: np.ndarray) -> None:
        t, c = mask & treated_in, mask & ~treated_in
        if id_col:
            n_t, n_c = (int(len(np.unique(unit_in[m][unit_in[m] >= 0]))) for m in (t, c))
        else:
            n_t, n_c = int(t.sum()), int(c.sum())
        counts.append({"step_order": len(counts) + 1, "step": step, "n_treated": n_t, "n_control": n_c})

    mask = present
    _count("input rows", mask)

    complete_cols = list(dict.fromkeys([*covariates, *model_covs, *dist_covs, *strata_cols]))
    mask = mask & df[complete_cols].notna().all(axis=1).to_numpy()
    _count("complete covariates and exact keys", mask)

    if id_col and not controls_may_be_treated_later:
        ever_treated = np.zeros(unit_in.max() + 2, dtype=bool)
        ever_treated[unit_in[mask & treated_in]] = True
        mask = mask & (treated_in | ~ever_treated[unit_in])
        _count("controls that are never treated", mask)

    # a stable row order, so that the result does not depend on how the table was read
    # (a parallel database scan may return rows in any order)
    order_cols = row_order_columns(treatment, exact, group, id_col)
    rows = np.flatnonzero(mask)
    keys = df[order_cols].take(rows)
    keys[treatment] = treated_in[rows].astype(int)
    source_rows = rows[keys.reset_index(drop=True).sort_values(order_cols, kind="stable").index.to_numpy()]
    del keys
    if len(source_rows) == len(df) and np.array_equal(source_rows, np.arange(len(df))):
        work = df[needed].reset_index(drop=True)  # already in order: no copy (copy on write)
    else:
        work = df[needed].take(source_rows).reset_index(drop=True)
    work[treatment] = treated_in[source_rows].astype(int)
    if work[treatment].nunique() < 2:
        raise ValueError("need both treated and control rows to match")

    logit, coefs = fit_propensity(work, treatment, model_covs)
    work[LOGIT_COLUMN] = logit
    work["propensity_score"] = 1.0 / (1.0 + np.exp(-logit))
    is_t = work[treatment].to_numpy() == 1
    sd_logit = float(np.sqrt((np.var(logit[is_t], ddof=1) + np.var(logit[~is_t], ddof=1)) / 2.0))
    width = float("inf") if caliper is None else float(caliper) * sd_logit

    # strata: integer code per exact-key combination
    if strata_cols:
        stratum = work.groupby(strata_cols, sort=True, dropna=False).ngroup().to_numpy()
    else:
        stratum = np.zeros(len(work), dtype=int)
    if id_col:
        unit_code = pd.factorize(work[id_col])[0]
    else:
        unit_code = np.arange(len(work))
    used = np.zeros(unit_code.max() + 1, dtype=bool)

    ctrl_idx = np.flatnonzero(~is_t)
    pools: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    order_c = np.lexsort((logit[ctrl_idx], stratum[ctrl_idx]))
    ctrl_sorted = ctrl_idx[order_c]
    s_sorted = stratum[ctrl_sorted]
    bounds = np.flatnonzero(np.diff(s_sorted)) + 1
    for chunk in np.split(ctrl_sorted, bounds):
        if len(chunk):
            pools[int(stratum[chunk[0]])] = (chunk, logit[chunk])

    treated_idx = np.flatnonzero(is_t)
    # Hardest first (largest score first, as MatchIt's default order): the treated least like
    # the pool choose before easier ones use up their few candidates. Ties in random order.
    rng = np.random.default_rng(seed)
    serve = treated_idx[np.lexsort((rng.random(len(treated_idx)), -logit[treated_idx]))]
    n_with_pool = sum(1 for i in treated_idx if int(stratum[i]) in pools)
    counts.append(
        {
            "step_order": len(counts) + 1,
            "step": "treated with a control in their exact stratum",
            "n_treated": int(n_with_pool) if not id_col else int(work.loc[[i for i in treated_idx if int(stratum[i]) in pools], id_col].nunique()),
            "n_control": int(len(ctrl_idx)) if not id_col else int(work.loc[ctrl_idx, id_col].nunique()),
        }
    )

    Z = _whiten(work[dist_covs].to_numpy(dtype=float), is_t) if dist_covs else None
    matches: dict[int, list[int]] = {int(i): [] for i in treated_idx}
    for rnd in range(ratio):
        for i in serve:
            i = int(i)
            if rnd > 0 and len(matches[i]) < rnd:
                continue  # unmatched in an earlier round: the pool only shrinks
            pool = pools.get(int(stratum[i]))
            if pool is None:
                continue
            if Z is not None:
                r = _closest_by_distance(_candidates_within_caliper(pools, stratum, logit, width, i),
                                         i, used, unit_code, Z)
            else:
                rows, vals = pool
                best = _nearest_available(vals, rows, logit[i], width, used, unit_code)
                r = int(rows[best]) if best >= 0 else -1
            if r >= 0:
                used[unit_code[r]] = True
                matches[i].append(r)

    refine_info: dict[str, Any] = {}
    if refine:
        bal_cols = [*covariates, LOGIT_COLUMN]
        refine_info = _refine(
            matches, pools, stratum, logit, width, used, unit_code, ratio,
            X=work[bal_cols].to_numpy(dtype=float), is_t=is_t, max_iter=refine_max_iter,
            target=refine_target_smd,
        )
        refine_info["covariates"] = bal_cols

    # matched_set_id in a stable order: by stratum then by the treated row's position
    matched_t = [i for i in sorted(matches, key=lambda k: (stratum[k], k)) if matches[i]]
    set_rows, set_ids, weights = [], [], []
    for sid, i in enumerate(matched_t, start=1):
        m = len(matches[i])
        set_rows.append(i)
        set_ids.append(sid)
        weights.append(1.0)
        for r in matches[i]:
            set_rows.append(r)
            set_ids.append(sid)
            weights.append(1.0 / m)
    matched = df.take(source_rows[set_rows]).reset_index(drop=True)
    matched[treatment] = work[treatment].to_numpy()[set_rows]
    matched[LOGIT_COLUMN] = logit[set_rows]
    matched["propensity_score"] = work["propensity_score"].to_numpy()[set_rows]
    matched.insert(0, "matched_set_id", np.asarray(set_ids, dtype="int64"))
    matched["match_weight"] = weights

    counts.append(
        {
            "step_order": len(counts) + 1,
            "step": "matched (within caliper)",
            "n_treated": int(matched.loc[matched[treatment] == 1, id_col].nunique()) if id_col else int((matched[treatment] == 1).sum()),
            "n_control": int(matched.loc[matched[treatment] == 0, id_col].nunique()) if id_col else int((matched[treatment] == 0).sum()),
        }
    )
    n_full = sum(1 for i in matched_t if len(matches[i]) == ratio)
    counts.append(
        {"step_order": len(counts) + 1, "step": f"treated with the full {ratio} controls", "n_treated": int(n_full), "n_control": int(n_full * ratio)}
    )

    balance = balance_table(work, treatment, [*covariates, LOGIT_COLUMN], matched, weight="match_weight")
    info = {
        "caliper_sd": caliper,
        "caliper_width_logit": width,
        "sd_logit": sd_logit,
        "ratio": ratio,
        "exact": exact_cols,
        "group": group,
        "coefficients": coefs,
        "seed": seed,
        "ps_covariates": model_covs,
        "refine": refine_info or False,
        "distance_covariates": dist_covs or None,
        # of every row the propensity model scored (the pool before matching, as CohortMethod)
        "equipoise": equipoise(logit, is_t),
    }
    return MatchResult(matched=matched, balance=balance, counts=pd.DataFrame(counts), info=info)


def matched_att(
    matched: pd.DataFrame, treatment: str, outcome: str, set_col: str = "matched_set_id", level: float = 0.95
) -> dict[str, Any]:
    """Average treatment effect on the treated from a matched sample (one treated per set).

    Within each matched set s the difference d_s = y(treated) - mean y(controls of s); the ATT
    is the mean of d_s over sets, i.e. the treated mean minus the 1/m-weighted control mean.
    Its standard error is clustered on the matched set: the sets are the independent units,
    so SE = SD(d_s) / sqrt(S) (equal to the CR1 cluster-robust SE of the weighted difference
    in means), with a t interval on S - 1 degrees of freedom.
    """
    from scipy import stats

    y = matched[outcome].astype(float)
    t = matched[treatment].astype(int) == 1
    y_t = y[t].groupby(matched.loc[t, set_col]).mean()
    y_c = y[~t].groupby(matched.loc[~t, set_col]).mean()
    d = (y_t - y_c).dropna()
    n = int(len(d))
    est = float(d.mean()) if n else float("nan")
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    q = float(stats.t.ppf(0.5 + level / 2, n - 1)) if n > 1 else float("nan")
    return {
        "outcome": outcome,
        "estimate": est,
        "se": se,
        "ci_level": level,
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "n_sets": n,
        "n_controls": int((~t & matched[set_col].isin(d.index)).sum()),
        "mean_treated": float(y_t.loc[d.index].mean()) if n else float("nan"),
        "mean_control_weighted": float(y_c.loc[d.index].mean()) if n else float("nan"),
        "se_method": "clustered on matched set: SD of within-set differences / sqrt(sets); t on sets - 1 df",
    }
