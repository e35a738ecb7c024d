"""Sensitivity of event-study conclusions to violations of parallel trends (Rambachan and Roth
2023, "A More Credible Approach to Parallel Trends", Review of Economic Studies 90:2555-2591).

Input: an event-study coefficient vector beta = (pre-period coefficients, then every coefficient
after the reference period) and its covariance. beta = tau + delta, where delta is the
difference in trends (zero under parallel trends; its pre-period part is what the pre-period
coefficients estimate). The target is theta = l' tau_post. Two families of restrictions on delta:

Relative magnitudes, Delta^RM(Mbar)
    every post-period change |delta_t - delta_{t-1}| is at most Mbar times the largest
    pre-period change. Mbar = 1: post-referral trends may differ as much as the worst month-to-
    month difference seen before. Intervals: the conditional / least-favourable hybrid test
    (Andrews, Roth and Pakes), "C-LF", the R package HonestDiD's default.
Smoothness, Delta^SD(M)
    the slope of delta may change by at most M between consecutive periods (M = 0: a linear
    pre-trend extrapolated). Intervals: the optimal fixed-length confidence interval (FLCI), the
    R package's default for Delta^SD.
Breakdown value
    the smallest bound on the grid at which the robust 95% interval includes no effect (0 on
    the log scale); `None` when no grid value does (robust beyond the grid); 0 when the interval
    under exact parallel trends already includes no effect.

Library: moderndid's ``didhonest`` (a Python port of the R package, pinned to 0.2 for Python
3.11), validated against the R package's published example to 1e-3
(tests/evaluation/test_honest.py). Speed: moderndid solves every linear programme through
``scipy.optimize.linprog`` (1,000 for each polyhedron's least-favourable critical value, tens
of thousands for the conditional test's truncation bounds), 20 s per Mbar on this project's
machines. `_fast_lf_cv`, `_fast_test_delta_lp` and `_fast_max_program` solve the same
programmes (same seed, same draws) by keeping one HiGHS model per constraint matrix and reusing
an optimal basis while it stays optimal; `_fast_maximize_bias` builds the FLCI's cone programme
once. The same intervals (identical on this project's event studies; tests compare each with
the library's own), about 3 s per target. They are swapped in only for our calls
(`_fast_linear_programmes`).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.methods.common import Z95

MBAR_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
# bounds on the change in slope of the log rate ratio per event-time bin: 0 (linear trend
# extrapolated), then 0.5% to 5% per bin
M_GRID = (0.0, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class HonestSensitivity:
    """Robust 95% intervals for one target theta = l' tau_post (log scale for rate ratios)."""

    target: str
    estimate: float
    ci: tuple[float, float]  # under exact parallel trends
    relative_magnitudes: pd.DataFrame  # mbar, lb, ub, method
    smoothness: pd.DataFrame  # m, lb, ub, method
    breakdown_mbar: float | None
    breakdown_m: float | None
    n_pre: int
    n_post: int
    notes: tuple[str, ...] = field(default=())

    def to_dict(self, exponentiate: bool = False) -> dict:
        """JSON-ready; ``exponentiate`` adds the interval ends as ratios (exp of the log scale)."""
        def rows(df: pd.DataFrame, key: str) -> list[dict]:
            out = []
            for r in df.itertuples(index=False):
                row = {key: float(getattr(r, key)), "lb": _num(r.lb), "ub": _num(r.ub), "method": r.method}
                if exponentiate:
                    row["ratio_lb"], row["ratio_ub"] = _num(math.exp(r.lb)), _num(math.exp(r.ub))
                out.append(row)
            return out

        d = {
            "target": self.target,
            "estimate": _num(self.estimate),
            "ci95": [_num(self.ci[0]), _num(self.ci[1])],
            "relative_magnitudes": rows(self.relative_magnitudes, "mbar"),
            "smoothness": rows(self.smoothness, "m"),
            "breakdown_mbar": self.breakdown_mbar,
            "breakdown_m": self.breakdown_m,
            "n_pre_coefficients": self.n_pre,
            "n_post_coefficients": self.n_post,
            "notes": list(self.notes),
        }
        if exponentiate:
            d["ratio"] = _num(math.exp(self.estimate))
        return d



def _quiet_highs():
    """A silent HiGHS model on one thread: its worker threads spin beside a problem this small."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h

def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _fast_lf_cv(x_t=None, sigma=None, hybrid_kappa=0.05, sims=1000, rows_for_arp=None, seed=0):
    """moderndid's ``compute_least_favorable_cv``: the (1 - kappa) quantile of
    eta*(xi) = min_{eta, tau} eta s.t. sd * eta + X tau >= xi over normal draws xi (the same
    draws, from the same seed). Only the right-hand side changes between draws, so an optimal
    basis found for one draw (its active rows B) is optimal for every draw whose basic solution
    z = A_B^-1 xi_B is feasible (A z >= xi): its dual is feasible whatever xi, and
    then eta* = z[0] exactly. One HiGHS solve per new basis, checked against all remaining
    draws at once: a few dozen solves instead of a thousand."""
    import highspy

    if x_t is None:
        return _ORIGINAL_LF_CV(x_t, sigma, hybrid_kappa, sims, rows_for_arp, seed)
    rng = np.random.default_rng(seed)  # the same draws, in the same order, as the original
    if rows_for_arp is not None:
        x_t = x_t[rows_for_arp]
        sigma = sigma[np.ix_(rows_for_arp, rows_for_arp)]
    if x_t.ndim == 1:
        x_t = x_t.reshape(-1, 1)
    sd = np.sqrt(np.diag(sigma))
    n_rows, k = x_t.shape
    xi_draws = rng.multivariate_normal(mean=np.zeros(sigma.shape[0]), cov=sigma, size=sims)
    A = np.column_stack([sd, x_t])  # A [eta, tau] >= xi
    h = _quiet_highs()
    h.setOptionValue("solver", "simplex")
    inf = highspy.kHighsInf
    h.addVars(k + 1, np.full(k + 1, -inf), np.full(k + 1, inf))
    h.changeColCost(0, 1.0)
    for i in range(n_rows):
        nz = np.flatnonzero(A[i])
        h.addRow(-inf, 0.0, len(nz), nz.astype(np.int32), -A[i, nz])  # -A z <= -xi
    rows = np.arange(n_rows, dtype=np.int32)
    lower = np.full(n_rows, -inf)
    eta = np.full(sims, np.nan)
    pending = np.ones(sims, dtype=bool)
    while pending.any():
        i = int(np.flatnonzero(pending)[0])
        pending[i] = False
        h.changeRowsBounds(n_rows, rows, lower, -xi_draws[i])
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            continue  # the original drops a draw whose programme fails
        eta[i] = h.getSolution().col_value[0]
        basis = h.getBasis()
        active = np.array([s != highspy.HighsBasisStatus.kBasic for s in basis.row_status])
        if active.sum() != k + 1 or any(s != highspy.HighsBasisStatus.kBasic for s in basis.col_status):
            continue
        A_B = A[active]
        try:
            y_B = np.linalg.solve(A_B.T, np.eye(k + 1)[0])
        except np.linalg.LinAlgError:
            continue
        if y_B.min() < -1e-9:
            continue
        rest = np.flatnonzero(pending)
        if not len(rest):
            break
        xi = xi_draws[rest]
        z = np.linalg.solve(A_B, xi[:, active].T)  # (k + 1) x draws
        slack = A @ z - xi.T
        ok = slack.min(axis=0) >= -1e-9 * (1.0 + np.abs(xi).max(axis=1))
        eta[rest[ok]] = z[0, ok]
        pending[rest[ok]] = False
    eta = eta[np.isfinite(eta)]
    if not len(eta):
        raise RuntimeError("Failed to compute any valid eta values")
    return float(np.quantile(eta, 1 - hybrid_kappa))


_ORIGINAL_LF_CV = None
_MAX_PROGRAMS: dict = {}


def _fast_max_program(s_t, gamma_tilde, sigma, w_t, c):
    """moderndid's ``_solve_max_program`` (max f'x s.t. W_T'x = e_1, x >= 0, with
    f = s_t + Sigma gamma c / gamma' Sigma gamma), solved by one HiGHS model per constraint matrix
    whose objective alone changes: the bisections for the conditional test's truncation bounds
    call it hundreds of times with the same W_T. Nine calls in ten the last optimal basis is
    still optimal for the new objective (every reduced cost f_j - W_j' u <= 0, u = B^-T f_B,
    checked here to 1e-9, stricter than the solver's 1e-7); then its vertex is the answer, as
    the warm-started solver would return without a pivot, and the solver is not called."""
    import highspy
    from scipy.optimize import OptimizeResult

    sigma_gamma = float(gamma_tilde.T @ sigma @ gamma_tilde)
    if sigma_gamma <= 0:
        raise ValueError("gamma'*sigma*gamma must be positive")
    f = np.asarray(s_t + (sigma @ gamma_tilde) * c / sigma_gamma, dtype=float)
    a_eq = np.ascontiguousarray(w_t.T, dtype=float)
    key = (a_eq.shape, a_eq.tobytes())
    program = _MAX_PROGRAMS.get(key)
    n_rows, n = a_eq.shape
    if program is None:
        h = _quiet_highs()
        h.addVars(n, np.zeros(n), np.full(n, highspy.kHighsInf))
        b_eq = np.zeros(n_rows)
        b_eq[0] = 1.0
        for i in range(n_rows):
            nz = np.flatnonzero(a_eq[i])
            h.addRow(b_eq[i], b_eq[i], len(nz), nz.astype(np.int32), a_eq[i, nz])
        program = _MAX_PROGRAMS[key] = {"highs": h, "basis": None}
    last = program["basis"]
    if last is not None:
        basic, B_inv_T, x = last
        u = B_inv_T @ f[basic]
        if np.max(f - a_eq.T @ u) <= 1e-9:
            obj = float(f @ x)
            res = OptimizeResult(x=x.copy(), fun=-obj, success=True, status=0)
            res.objective_value = obj
            return res
    h = program["highs"]
    h.changeColsCost(n, np.arange(n, dtype=np.int32), -f)
    h.run()
    ok = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    x = np.asarray(h.getSolution().col_value) if ok else np.full(n, np.nan)
    program["basis"] = None
    if ok:
        basis = h.getBasis()
        basic = np.array([st == highspy.HighsBasisStatus.kBasic for st in basis.col_status])
        if basic.sum() == n_rows and not any(st == highspy.HighsBasisStatus.kBasic for st in basis.row_status):
            try:
                program["basis"] = (np.flatnonzero(basic), np.linalg.inv(a_eq[:, basic]).T, x)
            except np.linalg.LinAlgError:
                pass
    res = OptimizeResult(x=x, fun=float(h.getInfo().objective_function_value) if ok else np.nan,
                         success=ok, status=0 if ok else 2)
    res.objective_value = -res.fun if ok else np.nan
    return res


_DELTA_PROGRAMS: dict = {}


def _fast_test_delta_lp(y_t, x_t, sigma):
    """moderndid's ``_test_delta_lp`` (min eta s.t. y - X tau <= sd * eta, with its duals), as a
    HiGHS model kept per constraint matrix whose right-hand side alone changes: the conditional
    test calls it for each theta of its bisection with the same X. Solved from scratch each time
    (the solver's state is cleared), as through ``scipy.optimize.linprog``, so a degenerate
    programme gives the same multipliers; only scipy's per-call set-up is saved."""
    import highspy

    if x_t.ndim == 1:
        x_t = x_t.reshape(-1, 1)
    sd = np.sqrt(np.diag(sigma))
    C = np.ascontiguousarray(-np.column_stack([sd, x_t]))
    n_rows, n = C.shape
    key = (C.shape, C.tobytes())
    h = _DELTA_PROGRAMS.get(key)
    if h is None:
        h = _quiet_highs()
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_strategy", 1)  # dual simplex, as linprog's "highs-ds"
        inf = highspy.kHighsInf
        h.addVars(n, np.full(n, -inf), np.full(n, inf))
        h.changeColCost(0, 1.0)
        for i in range(n_rows):
            nz = np.flatnonzero(C[i])
            h.addRow(-inf, 0.0, len(nz), nz.astype(np.int32), C[i, nz])
        _DELTA_PROGRAMS[key] = h
    h.clearSolver()
    h.changeRowsBounds(n_rows, np.arange(n_rows, dtype=np.int32), np.full(n_rows, -highspy.kHighsInf),
                       -np.asarray(y_t, dtype=float))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return {"eta_star": np.nan, "delta_star": np.full(n - 1, np.nan), "lambda": np.zeros(n_rows),
                "success": False}
    sol = h.getSolution()
    x = np.asarray(sol.col_value)
    return {"eta_star": x[0], "delta_star": x[1:], "lambda": -np.asarray(sol.row_dual), "success": True}


_BIAS_PROGRAMS: dict = {}


def _fast_maximize_bias(h, sigma, n_pre_periods, n_post_periods, post_period_weights, smoothness_bound=1.0):
    """moderndid's FLCI ``maximize_bias`` (worst-case bias of the affine estimator whose standard
    deviation is at most h: a small second-order cone programme), with the programme built once
    per covariance and weights and h**2 a cvxpy parameter: the golden-section search over h
    called it some thirty times per M, each time rebuilding and re-canonicalising the same
    programme (most of a minute per M on a 24-coefficient event study)."""
    import cvxpy as cp
    from moderndid.didhonest.fixed_length_ci import _create_diff_matrix, _weights_to_l

    w_post = np.asarray(post_period_weights, dtype=float)
    key = (np.asarray(sigma, dtype=float).tobytes(), n_pre_periods, n_post_periods, w_post.tobytes())
    built = _BIAS_PROGRAMS.get(key)
    if built is None:
        n = n_pre_periods
        x = cp.Variable(2 * n)
        bias_constant = sum(
            abs(np.dot(np.arange(1, s + 1), w_post[(n_post_periods - s):n_post_periods]))
            for s in range(1, n_post_periods + 1)
        ) - np.dot(np.arange(1, n_post_periods + 1), w_post)
        lower = np.tril(np.ones((n, n)))
        to_levels = np.hstack([np.zeros((n, n)), _create_diff_matrix(n)])
        sigma_pre, sigma_pre_post = sigma[:n, :n], sigma[:n, n:]
        quad = to_levels.T @ sigma_pre @ to_levels
        quad = (quad + quad.T) / 2
        lin = 2 * to_levels.T @ sigma_pre_post @ w_post
        const = float(w_post @ sigma[n:, n:] @ w_post)
        h2 = cp.Parameter(nonneg=True)
        problem = cp.Problem(
            cp.Minimize(bias_constant + cp.sum(x[:n])),
            [-x[:n] <= lower @ x[n:], lower @ x[n:] <= x[:n],
             cp.sum(x[n:]) == np.dot(np.arange(1, n_post_periods + 1), w_post),
             cp.quad_form(x, cp.psd_wrap(quad)) + lin @ x + const <= h2])
        built = _BIAS_PROGRAMS[key] = (problem, x, h2)
    problem, x, h2 = built
    h2.value = float(h) ** 2
    failed = {"value": np.inf, "optimal_x": None, "optimal_w": None, "optimal_l": None}
    try:
        problem.solve(solver=cp.CLARABEL, verbose=False)
    except (ValueError, RuntimeError, cp.error.SolverError) as e:
        return {"status": f"error: {e!s}", **failed}
    if problem.status not in ("optimal", "optimal_inaccurate"):
        return {"status": "failed", **failed}
    w = x.value[n_pre_periods:]
    return {"status": "optimal", "value": problem.value * smoothness_bound, "optimal_x": x.value,
            "optimal_w": w, "optimal_l": _weights_to_l(w)}


@contextlib.contextmanager
def _flci_search_guard():
    """moderndid's FLCI golden-section search over h never ends when its two ends coincide
    (h_max - h_min <= 0, its tolerance then negative): so it is with one pre-period
    coefficient, where the sum constraint fixes the weights and the minimum-variance and
    minimum-bias h are equal up to rounding. Then the optimum is that h."""
    from moderndid.didhonest import fixed_length_ci

    search = fixed_length_ci._optimize_h_bisection

    def guarded(h_min, h_max, *args, **kwargs):
        if not h_max - h_min > 1e-9 * max(abs(h_max), abs(h_min)):
            return (h_min + h_max) / 2
        return search(h_min, h_max, *args, **kwargs)

    fixed_length_ci._optimize_h_bisection = guarded
    try:
        yield
    finally:
        fixed_length_ci._optimize_h_bisection = search


@contextlib.contextmanager
def _fast_linear_programmes():
    """Swap `_fast_lf_cv`, `_fast_max_program` and `_fast_maximize_bias` into moderndid for
    our calls only."""
    global _ORIGINAL_LF_CV
    from moderndid.didhonest import arp_nuisance, fixed_length_ci

    saved = (arp_nuisance.compute_least_favorable_cv, arp_nuisance._solve_max_program,
             arp_nuisance._test_delta_lp, fixed_length_ci.maximize_bias)
    _ORIGINAL_LF_CV = saved[0]
    arp_nuisance.compute_least_favorable_cv = _fast_lf_cv
    arp_nuisance._solve_max_program = _fast_max_program
    arp_nuisance._test_delta_lp = _fast_test_delta_lp
    fixed_length_ci.maximize_bias = _fast_maximize_bias
    try:
        yield
    finally:
        (arp_nuisance.compute_least_favorable_cv, arp_nuisance._solve_max_program,
         arp_nuisance._test_delta_lp, fixed_length_ci.maximize_bias) = saved
        _MAX_PROGRAMS.clear()
        _DELTA_PROGRAMS.clear()
        _BIAS_PROGRAMS.clear()


def _breakdown(grid: pd.DataFrame, key: str, includes_zero_at_start: bool) -> float | None:
    if includes_zero_at_start:
        return 0.0
    for r in grid.sort_values(key).itertuples(index=False):
        if not (math.isfinite(r.lb) and math.isfinite(r.ub)) or r.lb <= 0 <= r.ub:
            return float(getattr(r, key))
    return None


def honest_sensitivity(betahat, sigma, n_pre: int, n_post: int, l_vec, target: str,
                       mbar_grid=MBAR_GRID, m_grid=M_GRID, alpha: float = 0.05,
                       fast: bool = True) -> HonestSensitivity:
    """Robust intervals under Delta^RM(Mbar) and Delta^SD(M) for theta = l' beta_post.
    ``betahat``: n_pre pre-period coefficients (oldest first, reference excluded) then n_post
    coefficients after the reference; ``sigma`` their covariance."""
    from moderndid.didhonest import create_sensitivity_results_rm, create_sensitivity_results_sm

    b = np.asarray(betahat, dtype=float)
    S = np.asarray(sigma, dtype=float)
    l_vec = np.asarray(l_vec, dtype=float)
    if b.shape != (n_pre + n_post,) or S.shape != (len(b), len(b)) or l_vec.shape != (n_post,):
        raise ValueError(f"shapes: beta {b.shape}, sigma {S.shape}, l {l_vec.shape} for {n_pre} pre "
                         f"and {n_post} post coefficients")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(S))):
        raise ValueError("coefficients or covariance not finite")
    S = (S + S.T) / 2
    est = float(l_vec @ b[n_pre:])
    se = float(np.sqrt(l_vec @ S[n_pre:, n_pre:] @ l_vec))
    ci = (est - Z95 * se, est + Z95 * se)
    notes = []
    empty = pd.DataFrame(columns=["lb", "ub", "method"])
    rm = empty.assign(mbar=pd.Series(dtype=float))
    sd = empty.assign(m=pd.Series(dtype=float))
    with warnings.catch_warnings(), _flci_search_guard(), \
            (_fast_linear_programmes() if fast else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        if n_pre >= 2:
            r = create_sensitivity_results_rm(betahat=b, sigma=S, num_pre_periods=n_pre, num_post_periods=n_post,
                                              m_bar_vec=list(mbar_grid), l_vec=l_vec, alpha=alpha)
            rm = _grid_results(r, "Mbar", "mbar")
        else:
            notes.append("relative magnitudes need at least 2 pre-period coefficients; "
                         f"the event study has {n_pre}")
        if n_pre >= 1:
            r = create_sensitivity_results_sm(betahat=b, sigma=S, num_pre_periods=n_pre, num_post_periods=n_post,
                                              m_vec=list(m_grid), l_vec=l_vec, alpha=alpha)
            sd = _grid_results(r, "m", "m")
        else:
            notes.append("smoothness bounds need at least 1 pre-period coefficient")
    null_in_ci = ci[0] <= 0 <= ci[1]
    return HonestSensitivity(
        target=target, estimate=est, ci=ci, relative_magnitudes=rm, smoothness=sd,
        breakdown_mbar=_breakdown(rm, "mbar", null_in_ci) if len(rm) else None,
        breakdown_m=_breakdown(sd, "m", null_in_ci) if len(sd) else None,
        n_pre=n_pre, n_post=n_post, notes=tuple(notes))


def _grid_results(results, bound_column: str, name: str) -> pd.DataFrame:
    """moderndid's sensitivity results as our frame: the bound (renamed ``name``), lb, ub, method."""
    return pd.DataFrame({name: results[bound_column].to_numpy(), "lb": results["lb"].to_numpy(),
                         "ub": results["ub"].to_numpy(), "method": results["method"].to_list()})


# --------------------------------------------------------------------------- adapters

def event_study_sensitivity(event_study, mbar_grid=MBAR_GRID, m_grid=M_GRID) -> dict:
    """Robust intervals for the matched event study (`evaluation.did.EventStudyResult`): the
    first post-referral bin and the average over the post period (bins weighted by their
    months), on the log rate-ratio scale. Pre-period coefficients: the comparison-period bins
    before the reference bin. Every bin after the reference goes in, in order (selection
    window, the index month, post period) with zero weight outside the post period: the
    restrictions then let the difference in trends grow through those months too, as it could,
    instead of pretending the first post month follows the reference month.
    Returns {"first_post": HonestSensitivity | None, "post_average": ..., "notes": [...]}."""
    coefs = event_study.coefs.sort_values("first_month").reset_index(drop=True)
    cov = event_study.cov
    out = {"first_post": None, "post_average": None, "notes": [],
           "mbar_grid": [float(x) for x in mbar_grid], "m_grid": [float(x) for x in m_grid]}
    if cov is None or not coefs["reference"].any():
        out["notes"].append("no covariance of the event-study coefficients")
        return out
    ref = int(coefs.loc[coefs["reference"], "first_month"].iloc[0])
    pre = coefs[coefs["first_month"] < ref]
    after = coefs[coefs["first_month"] > ref]
    order = [*pre["first_month"], *after["first_month"]]
    b = np.r_[pre["log_rr"].to_numpy(float), after["log_rr"].to_numpy(float)]
    S = cov.loc[order, order].to_numpy(float)
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(S))):
        out["notes"].append("some event-time bins are not estimable (no events in a group): "
                            "no robust intervals")
        return out
    post = (after["period"] == "post").to_numpy()
    months = (after["last_month"] - after["first_month"] + 1).to_numpy(float)
    first = np.zeros(len(after))
    first[np.flatnonzero(post)[0]] = 1.0
    average = np.where(post, months, 0.0) / months[post].sum()
    for key, l_vec, target in (("first_post", first, "first post-referral " + ("month" if event_study.bin_months == 1 else "bin")),
                               ("post_average", average, "average over the post-referral months")):
        try:
            out[key] = honest_sensitivity(b, S, len(pre), len(after), l_vec, target, mbar_grid, m_grid)
        except (ValueError, RuntimeError) as e:  # a singular covariance, an infeasible programme
            out["notes"].append(f"{target}: not computed ({e})")
    return out


# `ltceval did` outcomes come in any unit: its smoothness grid is in multiples of the standard
# error of the first post-period estimate unless given
DYNAMIC_M_MULTIPLES = (0.0, 0.25, 0.5, 1.0, 2.0)


def dynamic_sensitivity(result, mbar_grid=MBAR_GRID, m_grid=None) -> dict:
    """Robust intervals for `ltceval did`'s dynamic aggregation (a
    `evaluation.methods.staggered.StaggeredDiDResult`): theta(0) and the mean of theta(e) over
    e >= 0 (the aggregation's overall figure). Its pre-period theta(e) use the varying base
    period (each a one-period change, delta_e - delta_{e-1}); HonestDiD needs coefficients
    against one reference (e = -1, the base of every post-period theta), so they are summed:
    u_{e-1} = -(theta(e) + ... + theta(-1)), a linear map applied to the covariance too. (The
    cohorts behind theta(e) differ by e, so the sum is the aggregated placebo path, as the R
    package `did` gives it with a universal base period only when the cohorts are the same.)"""
    agg = result.aggregate("dynamic")
    table = agg.table
    es = table["event_time"].to_numpy()
    theta = table["estimate"].to_numpy(float)
    V = result.covariance(agg.table_influence)
    neg, pos = np.flatnonzero(es < 0), np.flatnonzero(es >= 0)
    out = {"first_post": None, "post_average": None, "notes": [], "reference_event_time": -1}
    if not len(pos):
        out["notes"].append("no post-treatment event times")
        return out
    if len(neg) and not np.array_equal(es[neg], np.arange(es[neg].min(), 0)):
        out["notes"].append("pre-treatment event times are not consecutive up to -1")
        return out
    # rows: u at event times min(e)-1 .. -2 (oldest first), then theta(e), e >= 0
    T = np.zeros((len(neg) + len(pos), len(es)))
    for row, i in enumerate(neg):
        T[row, neg[neg >= i]] = -1.0
    for row, j in enumerate(pos):
        T[len(neg) + row, j] = 1.0
    b, S = T @ theta, T @ V @ T.T
    if m_grid is None:
        se_first = float(np.sqrt(S[len(neg), len(neg)]))
        m_grid = tuple(k * se_first for k in DYNAMIC_M_MULTIPLES)
        out["m_grid_basis"] = (f"multiples {', '.join(f'{k:g}' for k in DYNAMIC_M_MULTIPLES)} of the standard "
                               f"error of theta({int(es[pos][0])}), {se_first:.4g}")
    out["mbar_grid"], out["m_grid"] = [float(x) for x in mbar_grid], [float(x) for x in m_grid]
    # the coefficients handed to the method, against the reference e = -1
    out["coefficients"] = [{"event_time": int(e), "estimate": float(v), "se": float(np.sqrt(S[i, i]))}
                           for i, (e, v) in enumerate(zip([*(es[neg] - 1), *es[pos]], b))]
    first = np.zeros(len(pos))
    first[0] = 1.0
    for key, l_vec, target in (("first_post", first, f"theta(e = {int(es[pos][0])})"),
                               ("post_average", np.full(len(pos), 1 / len(pos)),
                                "mean of theta(e) over e >= 0 (the dynamic aggregation's overall ATT)")):
        try:
            out[key] = honest_sensitivity(b, S, len(neg), len(pos), l_vec, target, mbar_grid, m_grid)
        except (ValueError, RuntimeError) as e:
            out["notes"].append(f"{target}: not computed ({e})")
    return out


def sensitivity_to_dict(sens: dict, exponentiate: bool = False) -> dict:
    """`event_study_sensitivity` or `dynamic_sensitivity` as JSON-ready data."""
    return {k: (v.to_dict(exponentiate) if isinstance(v, HonestSensitivity) else v)
            for k, v in sens.items()}


def honest_block(sens: dict, aggregation: str | None = None, exponentiate: bool = False) -> dict:
    """The ``honest`` block of a JSON result: `sensitivity_to_dict` and what the figures mean."""
    from importlib.metadata import version

    d = sensitivity_to_dict(sens, exponentiate)
    d["method"] = {
        "reference": "Rambachan and Roth (2023), A More Credible Approach to Parallel Trends, Rev Econ Stud 90:2555-2591",
        "library": f"moderndid {version('moderndid')} didhonest (a port of the R package HonestDiD)",
        "scale": "log rate ratio (ratio_lb, ratio_ub: the same as rate ratios)" if exponentiate else "the estimate's own",
        "aggregation": aggregation,
        "alpha": 0.05,
        "relative_magnitudes": "Delta^RM(Mbar): each post-period change in the difference in trends is at most "
                               "Mbar times the largest pre-period change; conditional least-favourable hybrid (C-LF)",
        "smoothness": "Delta^SD(M): the slope of the difference in trends changes by at most M between "
                      "consecutive periods (M = 0: linear pre-trend extrapolated); fixed-length interval (FLCI)",
        "breakdown": "the smallest bound on the grid whose robust 95% interval includes no effect; null: no "
                     "bound on the grid does; 0: the interval under exact parallel trends already does",
    }
    return d
