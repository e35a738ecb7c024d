"""Empirical calibration from negative-control outcomes (Schuemie et al. 2014, "Interpreting
observational studies: why empirical calibration is needed to correct p-values", Stat Med
33:209-218; Schuemie et al. 2018, "Empirical confidence interval calibration for
population-level effect estimation studies in observational healthcare data", PNAS
115:2571-2577), as the OHDSI R package EmpiricalCalibration computes it.

Negative controls are outcomes the exposure is believed not to affect (true log rate ratio 0).
Their estimates scatter around 0 by more than their standard errors allow when the design has
systematic error. The empirical null models that error as normal:

    log_rr_i ~ N(mean, sd^2 + se_i^2)

`fit_null` finds (mean, sd) by maximum likelihood; `calibrate_p` then tests an estimate
against N(mean, sd^2 + se^2) instead of N(0, se^2). `fit_systematic_error_model` extends the
null with (optional) positive controls: mean = a + b * true_log_rr, sd = c + d * |true_log_rr|;
`calibrate_confidence_interval` inverts it into a calibrated interval. The expected absolute
systematic error (EASE) is E|X| for X ~ N(mean, sd), one number summarising the null.

Faithful to R. The package optimises with ``stats::optim`` and ``uniroot``; their algorithms
are reproduced here (not scipy's) so that the results match R to the optimiser's last digits,
not only to its tolerance:

- `fit_null`: Nelder-Mead (R's ``nmmin``, optim's defaults: reltol 1.49e-8, 500 evaluations)
  on theta = (mean, precision = 1/sd^2) from (0, 1), minus log-likelihood as the package's C++
  ``logLikelihoodNull`` (infinite for precision <= 0; the normal density of the estimates alone
  when sd < 1e-6). Before fitting, as R 3.1.4 does with a warning: estimates with a non-finite
  or missing log_rr or se are dropped, and so are extreme ones, |log_rr| > log(100).
- `fit_systematic_error_model`: BFGS (R's ``vmmin``, maxit 100) on (mean intercept, mean
  slope, sd intercept, sd slope) from (0, 1, 0.1, 0), gradient by optim's central differences
  (step 1e-3); a negative sd costs 99999. Only non-finite estimates are dropped (R does not
  drop extreme ones here). Negative controls only (every true_log_rr 0): the slopes are not
  identified (the likelihood does not depend on them), and R's BFGS from (0, 1, 0.1, 0) can
  run away on such data (on the package's own sccs negatives it stops after 100 iterations at
  mean 20, sd 74, far from the optimum). We then follow the package's documented route for
  negative controls only, ``convertNullToErrorModel(fitNull(...))``: intercepts = the fitted
  null's mean and sd, mean slope 1 (the error does not change with the true effect) and sd
  slope 0 - the values BFGS leaves the unidentified slopes at, since their finite-difference
  gradient is exactly zero. Where R's BFGS does converge on negatives only (the
  southworthReplication negatives) the two routes agree to 1e-4. All true effects equal but
  not 0: refused (mean intercept and slope cannot be separated). Only the non-legacy model
  (sd linear, not log-linear) is implemented: it is R's default.
- `calibrate_confidence_interval`: R's ``uniroot`` (Brent, tol = eps^0.25 ~ 1.2e-4 on the log
  scale) on [-100, 100]; NaN where R returns NA (no sign change).
- `expected_absolute_systematic_error`: R's closed form (the folded-normal mean), 0 for a null
  of mean 0 and sd 0.

Minimum number of controls. R fits a null to any number of estimates (even one). We refuse
fewer than `MIN_CONTROLS` = 5 by default: the null has two parameters, and with a handful of
controls the ML sd is usually 0 or driven by one control, so calibrated p-values and intervals
would be artefacts of the optimiser; the OHDSI studies that introduced the method used 30-100.
`min_controls` can lower the floor (to 2, never below the number of parameters) only to
reproduce R's own tiny test cases.

Validated against: R EmpiricalCalibration 3.1.4, commit 03d4747fd805e92744d0bcaf603f4c2d0b13370b.
(Its vignette, README and testthat figures on its sccs and southworthReplication data, to 1e-6
where R prints 7 digits: tests/evaluation/test_calibration.py.)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

MIN_CONTROLS = 5
_EXTREME_LOG_RR = math.log(100)  # R 3.1.4 drops relative risks < 0.01 or > 100 before fitNull
_PENALTY = 99999.0  # what R's error-model likelihood returns for an impossible (negative) sd
_LN_SQRT_2PI = 0.918938533204672741780329736406  # R's M_LN_SQRT_2PI
_RELTOL = math.sqrt(np.finfo(float).eps)  # optim's default reltol
_UNIROOT_TOL = np.finfo(float).eps ** 0.25  # uniroot's default tol


@dataclass(frozen=True)
class EmpiricalNull:
    """Fitted empirical null: systematic error ~ N(mean, sd^2) on the log rate-ratio scale."""

    mean: float
    sd: float
    n_controls: int  # controls used in the fit, after dropping
    n_dropped: int = 0
    log_likelihood: float = float("nan")
    converged: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
    # standard error of the fitted mean, 1 / sqrt(sum 1 / (se_i^2 + sd^2)) over the controls used
    # (the inverse Fisher information of the mean at the fit); not part of R's result: see
    # `allowing_for_the_null_s_error`
    mean_se: float = float("nan")

    @property
    def precision(self) -> float:
        return 1.0 / self.sd**2 if self.sd > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"mean": _num(self.mean), "sd": _num(self.sd), "n_controls": self.n_controls,
                "n_dropped": self.n_dropped, "log_likelihood": _num(self.log_likelihood),
                "converged": self.converged, "ease": _num(expected_absolute_systematic_error(self)),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class SystematicErrorModel:
    """Systematic error as a function of the true log effect: mean = mean_intercept +
    mean_slope * true, sd = sd_intercept + sd_slope * |true| (R's non-legacy model)."""

    mean_intercept: float
    mean_slope: float
    sd_intercept: float
    sd_slope: float
    n_controls: int
    n_dropped: int = 0
    converged: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"mean_intercept": _num(self.mean_intercept), "mean_slope": _num(self.mean_slope),
                "sd_intercept": _num(self.sd_intercept), "sd_slope": _num(self.sd_slope),
                "n_controls": self.n_controls, "n_dropped": self.n_dropped,
                "converged": self.converged, "notes": list(self.notes)}


@dataclass(frozen=True)
class CalibratedConfidenceInterval:
    """Calibrated point estimates and intervals on the log scale (NaN where R gives NA)."""

    log_rr: np.ndarray
    log_lb: np.ndarray
    log_ub: np.ndarray
    se_log_rr: np.ndarray
    ci_width: float = 0.95

    def as_dict(self) -> dict:
        return {"log_rr": [_num(x) for x in self.log_rr], "log_lb": [_num(x) for x in self.log_lb],
                "log_ub": [_num(x) for x in self.log_ub],
                "se_log_rr": [_num(x) for x in self.se_log_rr], "ci_width": self.ci_width}


def _num(x) -> float | None:
    """JSON-ready float: None for NaN/inf (json.dumps would write the invalid token NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------- input checks and dropping

def _as_vectors(*arrays) -> list[np.ndarray]:
    out = [np.atleast_1d(np.asarray(a, dtype=float)) for a in arrays]
    if any(a.ndim != 1 for a in out):
        raise ValueError("log_rr, se_log_rr (and true_log_rr) must be one-dimensional")
    if len({a.size for a in out}) != 1:
        raise ValueError("log_rr, se_log_rr (and true_log_rr) must be of equal length, got "
                         + ", ".join(str(a.size) for a in out))
    return out


def _drop(keep: np.ndarray, what: str, arrays: list[np.ndarray], notes: list[str]):
    # R warns and drops; we warn and also keep the note on the result, for the report
    n = int((~keep).sum())
    if n:
        msg = f"{n} negative control(s) with {what} removed before fitting"
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
    return [a[keep] for a in arrays]


def _clean(log_rr, se, extra: list[np.ndarray], drop_extreme: bool):
    notes: list[str] = []
    arrays = [log_rr, se, *extra]
    # Same order as R; NaN is R's NA (R's is.na is also true for NaN)
    arrays = _drop(~np.isinf(arrays[1]), "infinite standard error", arrays, notes)
    arrays = _drop(~np.isinf(arrays[0]), "infinite log_rr", arrays, notes)
    arrays = _drop(~np.isnan(arrays[1]), "missing (NaN) standard error", arrays, notes)
    arrays = _drop(~np.isnan(arrays[0]), "missing (NaN) log_rr", arrays, notes)
    if drop_extreme:
        arrays = _drop(np.abs(arrays[0]) <= _EXTREME_LOG_RR,
                       "extreme log_rr (|log_rr| > log(100))", arrays, notes)
    if np.any(arrays[1] < 0):
        raise ValueError("standard errors must be non-negative")
    return arrays, notes


def _check_count(n: int, min_controls: int) -> None:
    if min_controls < 2:
        raise ValueError("min_controls must be at least 2 (the null has two parameters)")
    if n < min_controls:
        raise ValueError(
            f"only {n} usable negative control estimate(s); at least {min_controls} are needed "
            "to estimate the systematic-error distribution (mean and sd): with fewer, the "
            "fitted sd is an artefact of the optimiser and calibration is not meaningful")


# ---------------------------------------------------------------- likelihoods (as R's)

def _gaussian_product(mu1: float, mu2: float, sd1: float, sd2: float) -> float:
    # Integral of the product of two normal densities = N(mu1 - mu2; 0, sd1^2 + sd2^2)
    v = sd1 * sd1 + sd2 * sd2
    return (1 / (math.sqrt(2 * math.pi) * math.sqrt(v))) * math.exp(-(mu1 - mu2) ** 2 / (2 * v))


def _log_dnorm(x: float, mu: float, sigma: float) -> float:
    # R's dnorm(log = TRUE) for finite arguments
    if sigma == 0:
        return math.inf if x == mu else -math.inf
    z = (x - mu) / sigma
    return -(_LN_SQRT_2PI + 0.5 * z * z + math.log(sigma))


def _safe_log(x: float) -> float:
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _minus_ll_null(theta, log_rr: list[float], se: list[float]) -> float:
    """R's C++ logLikelihoodNull: theta = (mean, precision)."""
    mean, precision = theta
    if precision <= 0:
        return math.inf
    result = 0.0
    sd = 1 / math.sqrt(precision)
    if sd < 1e-6:
        for x, s in zip(log_rr, se):
            result -= _log_dnorm(mean, x, s)
    else:
        for x, s in zip(log_rr, se):
            result -= _safe_log(_gaussian_product(x, mean, s, sd))
    if result == 0:
        result = math.inf
    return result


def _minus_ll_error_model(theta, log_rr, se, true_log_rr) -> float:
    """R's minLogLikelihoodErrorModel (non-legacy)."""
    terms = []
    for x, s, t in zip(log_rr, se, true_log_rr):
        mean = theta[0] + theta[1] * t
        sd = theta[2] + theta[3] * abs(t)
        if sd < 0:
            return _PENALTY  # R: Inf in the sum, replaced by 99999
        if sd < 1e-6:
            terms.append(-_log_dnorm(x, mean, s))
        else:
            terms.append(-_safe_log(_gaussian_product(x, mean, s, sd)))
    result = math.fsum(terms)  # R's sum() accumulates in extended precision
    if math.isinf(result) or math.isnan(result):
        result = _PENALTY
    return result


# ---------------------------------------------------------------- R's optimisers

def _nelder_mead(fn, start, reltol=_RELTOL, maxit=500, alpha=1.0, beta=0.5, gamma=2.0):
    """R's nmmin (src/appl/optim.c), step for step; abstol = -Inf. Returns (x, f, converged)."""
    big = 1.0e35
    n = len(start)
    bvec = [float(v) for v in start]
    f = fn(bvec)
    if not math.isfinite(f):
        raise ValueError("the likelihood cannot be evaluated at the starting values")
    funcount = 1
    convtol = reltol * (abs(f) + reltol)
    n1, c = n + 1, n + 2
    p = [[0.0] * (n + 2) for _ in range(n + 1)]  # rows: parameters then value; cols: vertices
    p[n1 - 1][0] = f
    for i in range(n):
        p[i][0] = bvec[i]
    L = 1
    size = 0.0
    step = max([0.1 * abs(v) for v in bvec] + [0.0])
    if step == 0.0:
        step = 0.1
    for j in range(2, n1 + 1):
        for i in range(n):
            p[i][j - 1] = bvec[i]
        trystep = step
        while p[j - 2][j - 1] == bvec[j - 2]:
            p[j - 2][j - 1] = bvec[j - 2] + trystep
            trystep *= 10
        size += trystep
    oldsize = size
    calcvert = True
    fail = False
    while True:
        if calcvert:
            for j in range(n1):
                if j + 1 != L:
                    bvec = [p[i][j] for i in range(n)]
                    f = fn(bvec)
                    if not math.isfinite(f):
                        f = big
                    funcount += 1
                    p[n1 - 1][j] = f
            calcvert = False
        VL = p[n1 - 1][L - 1]
        VH = VL
        H = L
        for j in range(1, n1 + 1):
            if j != L:
                f = p[n1 - 1][j - 1]
                if f < VL:
                    L, VL = j, f
                if f > VH:
                    H, VH = j, f
        if VH <= VL + convtol:
            break
        for i in range(n):
            temp = -p[i][H - 1]
            for j in range(n1):
                temp += p[i][j]
            p[i][c - 1] = temp / n
        bvec = [(1.0 + alpha) * p[i][c - 1] - alpha * p[i][H - 1] for i in range(n)]
        f = fn(bvec)
        if not math.isfinite(f):
            f = big
        funcount += 1
        VR = f
        if VR < VL:
            p[n1 - 1][c - 1] = f
            for i in range(n):
                f = gamma * bvec[i] + (1 - gamma) * p[i][c - 1]
                p[i][c - 1] = bvec[i]
                bvec[i] = f
            f = fn(bvec)
            if not math.isfinite(f):
                f = big
            funcount += 1
            if f < VR:
                for i in range(n):
                    p[i][H - 1] = bvec[i]
                p[n1 - 1][H - 1] = f
            else:
                for i in range(n):
                    p[i][H - 1] = p[i][c - 1]
                p[n1 - 1][H - 1] = VR
        else:
            if VR < VH:
                for i in range(n):
                    p[i][H - 1] = bvec[i]
                p[n1 - 1][H - 1] = VR
            bvec = [(1 - beta) * p[i][H - 1] + beta * p[i][c - 1] for i in range(n)]
            f = fn(bvec)
            if not math.isfinite(f):
                f = big
            funcount += 1
            if f < p[n1 - 1][H - 1]:
                for i in range(n):
                    p[i][H - 1] = bvec[i]
                p[n1 - 1][H - 1] = f
            elif VR >= VH:  # shrink towards the lowest vertex
                calcvert = True
                size = 0.0
                for j in range(n1):
                    if j + 1 != L:
                        for i in range(n):
                            p[i][j] = beta * (p[i][j] - p[i][L - 1]) + p[i][L - 1]
                            size += abs(p[i][j] - p[i][L - 1])
                if size < oldsize:
                    oldsize = size
                else:
                    fail = True
                    break
        if funcount > maxit:
            break
    x = [p[i][L - 1] for i in range(n)]
    return x, p[n1 - 1][L - 1], (not fail) and funcount <= maxit


def _numeric_gradient(fn, x, ndeps=1e-3):
    # optim's default gradient for BFGS: central differences, step ndeps (parscale 1)
    g = []
    for i in range(len(x)):
        xp = list(x)
        xp[i] = x[i] + ndeps
        v1 = fn(xp)
        xp[i] = x[i] - ndeps
        v2 = fn(xp)
        d = (v1 - v2) / (2 * ndeps)
        if not math.isfinite(d):
            raise ValueError(f"non-finite finite-difference value [{i + 1}]")
        g.append(d)
    return g


def _bfgs(fn, start, reltol=_RELTOL, maxit=100):
    """R's vmmin (src/appl/optim.c), step for step, with optim's numerical gradient;
    abstol = -Inf. Returns (x, f, converged)."""
    stepredn, acctol, reltest = 0.2, 0.0001, 10.0
    n = len(start)
    b = [float(v) for v in start]
    f = fn(b)
    if not math.isfinite(f):
        raise ValueError("the likelihood cannot be evaluated at the starting values")
    fmin = f
    funcount = gradcount = 1
    g = _numeric_gradient(fn, b)
    it = 1
    ilast = gradcount
    B = [[0.0] * n for _ in range(n)]
    t = [0.0] * n
    X = [0.0] * n
    cvec = [0.0] * n
    while True:
        if ilast == gradcount:
            for i in range(n):
                for j in range(i):
                    B[i][j] = 0.0
                B[i][i] = 1.0
        for i in range(n):
            X[i] = b[i]
            cvec[i] = g[i]
        gradproj = 0.0
        for i in range(n):
            s = 0.0
            for j in range(i + 1):
                s -= B[i][j] * g[j]
            for j in range(i + 1, n):
                s -= B[j][i] * g[j]
            t[i] = s
            gradproj += s * g[i]
        if gradproj < 0.0:  # downhill: backtracking line search
            steplength = 1.0
            accpoint = False
            while True:
                count = 0
                for i in range(n):
                    b[i] = X[i] + steplength * t[i]
                    if reltest + X[i] == reltest + b[i]:
                        count += 1
                if count < n:
                    f = fn(b)
                    funcount += 1
                    accpoint = math.isfinite(f) and f <= fmin + gradproj * steplength * acctol
                    if not accpoint:
                        steplength *= stepredn
                if count == n or accpoint:
                    break
            enough = f > -math.inf and abs(f - fmin) > reltol * (abs(fmin) + reltol)
            if not enough:
                count = n
                fmin = f
            if count < n:  # making progress: BFGS update of the inverse Hessian
                fmin = f
                g = _numeric_gradient(fn, b)
                gradcount += 1
                it += 1
                D1 = 0.0
                for i in range(n):
                    t[i] = steplength * t[i]
                    cvec[i] = g[i] - cvec[i]
                    D1 += t[i] * cvec[i]
                if D1 > 0:
                    D2 = 0.0
                    for i in range(n):
                        s = 0.0
                        for j in range(i + 1):
                            s += B[i][j] * cvec[j]
                        for j in range(i + 1, n):
                            s += B[j][i] * cvec[j]
                        X[i] = s
                        D2 += s * cvec[i]
                    D2 = 1.0 + D2 / D1
                    for i in range(n):
                        for j in range(i + 1):
                            B[i][j] += (D2 * t[i] * t[j] - X[i] * t[j] - t[i] * X[j]) / D1
                else:
                    ilast = gradcount
            else:  # no progress: restart from the identity unless just restarted
                if ilast < gradcount:
                    count = 0
                    ilast = gradcount
        else:  # uphill search direction
            count = 0
            if ilast == gradcount:
                count = n
            else:
                ilast = gradcount
        if it >= maxit:
            break
        if gradcount - ilast > 2 * n:
            ilast = gradcount  # periodic restart
        if count == n and ilast == gradcount:
            break
    return b, fmin, it < maxit


# ---------------------------------------------------------------- public API

def fit_null(log_rr, se_log_rr, *, min_controls: int = MIN_CONTROLS) -> EmpiricalNull:
    """Fit the empirical null to negative-control estimates, as R's ``fitNull``.

    `log_rr`, `se_log_rr`: the negative controls' log rate ratios and standard errors. Non-finite
    ones and |log_rr| > log(100) are dropped with a warning (as R). Raises ValueError when fewer
    than `min_controls` remain (see the module docstring)."""
    log_rr, se = _as_vectors(log_rr, se_log_rr)
    n_in = log_rr.size
    (log_rr, se), notes = _clean(log_rr, se, [], drop_extreme=True)
    _check_count(log_rr.size, min_controls)
    xs, ss = log_rr.tolist(), se.tolist()
    theta, fmin, converged = _nelder_mead(lambda th: _minus_ll_null(th, xs, ss), [0.0, 1.0])
    if not converged:
        notes.append("Nelder-Mead did not converge within 500 evaluations (as R's optim would)")
    sd = 1 / math.sqrt(theta[1])
    return EmpiricalNull(mean=theta[0], sd=sd, n_controls=log_rr.size,
                         n_dropped=n_in - log_rr.size, log_likelihood=-fmin,
                         converged=converged, notes=tuple(notes),
                         mean_se=float(1 / math.sqrt(np.sum(1 / (se**2 + sd**2)))))


def allowing_for_the_null_s_error(se_log_rr, null: EmpiricalNull):
    """The standard error to calibrate with so that the interval and p-value also allow for the
    error in the null's fitted mean: sqrt(se^2 + mean_se^2). An extension of R's asymptotic
    calibration, which treats the fitted null as known (the package's MCMC null is its way to
    carry that uncertainty). With a handful of negative controls the mean's own error is as
    large as an outcome's standard error, and intervals calibrated as if the null were known
    under-cover (benchmarks/monte_carlo.py); with the mean slope 1 and sd slope 0 of a null
    converted to an error model, the calibrated interval is then
    log_rr - mean -/+ z sqrt(se^2 + sd^2 + mean_se^2)."""
    se = np.asarray(se_log_rr, dtype=float)
    out = np.sqrt(se**2 + null.mean_se**2)
    return float(out) if out.ndim == 0 else out


# the correlation-aware variance of (log_rr - fitted null mean) is never taken below this share
# of the outcome's own variance se^2 (see `allowing_for_the_correlated_null_s_error`)
MIN_VARIANCE_SHARE = 0.01


def allowing_for_the_correlated_null_s_error(se_log_rr: float, null: EmpiricalNull, control_log_rr,
                                             control_se, cov_with_controls, control_cov=None) -> float:
    """As `allowing_for_the_null_s_error`, but allowing for the correlation between the
    outcome's estimate b and the estimates b_j of the negative controls the null was fitted on:
    the standard error of (b - mu_hat), where mu_hat is the null's fitted mean.

    To first order (the sd of the null, sigma, held at its fit) the ML mean is the weighted mean
    mu_hat = sum_j a_j b_j, a_j = w_j / sum_k w_k, w_j = 1 / (se_j^2 + sigma^2), over the controls
    `fit_null` used. Each control is b_j = mu + e_j + s_j: sampling error e_j (covariance C,
    shared with the outcome's sampling error) and its own systematic error s_j ~ N(0, sigma^2),
    independent of the others' and of the outcome's. Then

        var(b - mu_hat) = se^2 + var(mu_hat) - 2 cov(b, mu_hat),
        var(mu_hat)     = a' (C + sigma^2 I) a,
        cov(b, mu_hat)  = sum_j a_j cov(b, b_j).

    With C diagonal (diag se_j^2) and cov(b, b_j) = 0 this is sqrt(se^2 + mean_se^2), the
    formula of `allowing_for_the_null_s_error`, since a' (diag(se^2) + sigma^2 I) a = 1 / sum w.
    Why: outcomes and controls are estimated on the same matched people (five controls are
    outpatient sub-specialties, a part of the outpatient outcome, and frailty drives all), so
    b and mu_hat err together; adding their variances counts the shared error twice and the
    calibrated interval over-covers (Monte Carlo: outpatient attendances 0.985 and 1.000).

    `control_log_rr`, `control_se`: the controls passed to `fit_null` (the same filter is applied
    here: non-finite and |log_rr| > log(100) dropped); `cov_with_controls`: cov(b, b_j) per
    control; `control_cov`: their covariance matrix C (None: diag(se_j^2), the controls taken
    as independent of one another). Covariances from the cluster influence values of the same
    panel (`evaluation.did.CountDiDResult.log_rate_ratio_influence`). The variance is clipped
    at MIN_VARIANCE_SHARE * se^2: the joint covariance of one panel's influence values is
    positive semi-definite, so a variance below that (or negative) can only come from rounding
    or from covariances of mismatched sources, and an interval narrower than the outcome's own
    sampling error allows would be an artefact, not information."""
    se = float(se_log_rr)
    x, s, c = _as_vectors(control_log_rr, control_se, cov_with_controls)
    keep = np.isfinite(x) & np.isfinite(s) & (np.abs(x) <= _EXTREME_LOG_RR)
    if int(keep.sum()) != null.n_controls:
        raise ValueError(f"{int(keep.sum())} usable control estimate(s) given, the null was fitted "
                         f"on {null.n_controls}")
    s, c = s[keep], c[keep]
    if control_cov is None:
        C = np.diag(s**2)
    else:
        C = np.asarray(control_cov, dtype=float)
        if C.shape != (x.size, x.size):
            raise ValueError(f"control_cov must be {x.size} x {x.size}, got {C.shape}")
        C = C[np.ix_(keep, keep)]
    w = 1.0 / (s**2 + null.sd**2)
    a = w / w.sum()
    var_mu = float(a @ (C + null.sd**2 * np.eye(a.size)) @ a)
    var = se**2 + var_mu - 2.0 * float(a @ c)
    return math.sqrt(max(var, MIN_VARIANCE_SHARE * se**2))


def calibrate_p(null: EmpiricalNull, log_rr, se_log_rr, two_sided: bool = True, *,
                upper: bool = True):
    """Calibrated p-value(s) of estimates against the empirical null, as R's ``calibrateP``
    (asymptotic version): z = (log_rr - mean) / sqrt(sd^2 + se^2). One-sided: `upper` tests
    for an effect above the null, else below. NaN for non-finite inputs. Returns a float for
    a scalar input, else an array."""
    scalar = np.ndim(log_rr) == 0 and np.ndim(se_log_rr) == 0
    x, se = _as_vectors(log_rr, se_log_rr)
    denom = np.sqrt(null.sd**2 + se**2)
    p_upper = norm.cdf((null.mean - x) / denom)
    p_lower = norm.cdf((x - null.mean) / denom)
    if two_sided:
        p = 2 * np.minimum(p_upper, p_lower)
    else:
        p = p_upper if upper else p_lower
    p = np.where(np.isfinite(x) & np.isfinite(se), p, np.nan)
    return float(p[0]) if scalar else p


def fit_systematic_error_model(log_rr, se_log_rr, true_log_rr, *,
                               min_controls: int = MIN_CONTROLS) -> SystematicErrorModel:
    """Fit the systematic error model, as R's ``fitSystematicErrorModel`` (legacy = FALSE).

    With negative controls only (`true_log_rr` all 0) the model is R's
    ``convertNullToErrorModel(fitNull(...))``: intercepts from `fit_null`, mean slope 1 and
    sd slope 0 (see the module docstring). Non-finite estimates are dropped with a warning."""
    log_rr, se, true = _as_vectors(log_rr, se_log_rr, true_log_rr)
    if not np.all(np.isfinite(true)):
        raise ValueError("true_log_rr must be finite (the controls' known effect sizes)")
    if true.size and np.all(true == 0):
        null = fit_null(log_rr, se, min_controls=min_controls)
        note = ("negative controls only: slopes not identified; model = the empirical null "
                "with mean slope 1 and sd slope 0 (R's convertNullToErrorModel)")
        return SystematicErrorModel(mean_intercept=null.mean, mean_slope=1.0,
                                    sd_intercept=null.sd, sd_slope=0.0,
                                    n_controls=null.n_controls, n_dropped=null.n_dropped,
                                    converged=null.converged, notes=(*null.notes, note))
    if true.size and np.ptp(true) == 0:
        raise ValueError("all true_log_rr are equal but not 0: the error model's intercept and "
                         "slope cannot be separated; pass negative controls with true_log_rr 0")
    n_in = log_rr.size
    (log_rr, se, true), notes = _clean(log_rr, se, [true], drop_extreme=False)
    _check_count(log_rr.size, min_controls)
    xs, ss, ts = log_rr.tolist(), se.tolist(), true.tolist()
    theta, _, converged = _bfgs(lambda th: _minus_ll_error_model(th, xs, ss, ts),
                                [0.0, 1.0, 0.1, 0.0])
    if not converged:
        notes.append("BFGS reached 100 iterations without converging (as R's optim would)")
    return SystematicErrorModel(mean_intercept=theta[0], mean_slope=theta[1],
                                sd_intercept=theta[2], sd_slope=theta[3],
                                n_controls=log_rr.size, n_dropped=n_in - log_rr.size,
                                converged=converged, notes=tuple(notes))


def _calibrated_bound(z: float, x: float, se: float, m: SystematicErrorModel) -> float:
    # Root in the true effect t of z + (mean(t) - x) / sqrt(sd(t)^2 + se^2), as R's logBound
    def opt(t: float) -> float:
        mean = m.mean_intercept + m.mean_slope * t
        sd = m.sd_intercept + m.sd_slope * abs(t)
        num = mean - x
        den = math.sqrt(sd * sd + se * se)
        if math.isinf(den):
            return z + 1e-10 if num > 0 else z - 1e-10
        return z + num / den

    lo, hi = opt(-100.0), opt(100.0)
    if (lo < 0 and hi < 0) or (lo > 0 and hi > 0):
        return math.nan
    # R's zeroin stops at tol_act = 2 eps |b| + tol / 2, which is brentq's xtol + rtol |b| / 2
    return brentq(opt, -100.0, 100.0, xtol=_UNIROOT_TOL, rtol=4 * np.finfo(float).eps,
                  maxiter=1000)


def calibrate_confidence_interval(log_rr, se_log_rr, model: SystematicErrorModel,
                                  ci_width: float = 0.95) -> CalibratedConfidenceInterval:
    """Calibrated point estimate(s), interval(s) and standard error(s) on the log scale, as
    R's ``calibrateConfidenceInterval``. NaN where an input is not finite or a bound has no
    root in [-100, 100] (R's NA)."""
    if not 0 < ci_width < 1:
        raise ValueError(f"ci_width must be in (0, 1), got {ci_width}")
    x, se = _as_vectors(log_rr, se_log_rr)
    n = x.size
    est, lb, ub = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    z = norm.ppf((1 - ci_width) / 2)  # negative
    if math.isfinite(model.mean_intercept):
        for i in range(n):
            if not (math.isfinite(x[i]) and math.isfinite(se[i])):
                continue
            est[i] = _calibrated_bound(0.0, x[i], se[i], model)
            lb[i] = _calibrated_bound(-z, x[i], se[i], model)
            ub[i] = _calibrated_bound(z, x[i], se[i], model)
    se_cal = (lb - ub) / (2 * z)
    return CalibratedConfidenceInterval(log_rr=est, log_lb=lb, log_ub=ub, se_log_rr=se_cal,
                                        ci_width=ci_width)


def expected_absolute_systematic_error(null: EmpiricalNull) -> float:
    """EASE = E|X|, X ~ N(mean, sd), as R's ``computeExpectedAbsoluteSystematicError``.

    R uses the closed form (the folded-normal mean), written as integrals of x * phi:
    E|X| = mean * (1 - 2 Phi(-mean / sd)) + 2 sd^2 phi(0; mean, sd)."""
    mu, sigma = float(null.mean), float(null.sd)
    if mu == 0 and sigma == 0:
        return 0.0
    if sigma == 0:
        return abs(mu)
    return mu * (1 - 2 * norm.cdf(0.0, mu, sigma)) + 2 * sigma**2 * norm.pdf(0.0, mu, sigma)
