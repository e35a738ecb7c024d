"""Group-time average treatment effects for staggered adoption (Callaway and Sant'Anna 2021),
with doubly robust covariate adjustment (Sant'Anna and Zhao 2020), influence-function standard
errors, a multiplier bootstrap for uniform bands, the four standard aggregations and a joint
pre-trend test.

Why: with staggered start dates and effects that change with time since treatment, two-way
fixed-effects regression compares later-treated units with already-treated ones ("forbidden
comparisons") and can be badly biased, even of the wrong sign. ATT(g,t) only ever compares
cohort g with clean controls.

Data
    A long panel: one row per unit and integer period, with the unit's cohort (first period
    treated; 0, NaN or empty = never treated), the outcome and optional covariates. The
    estimator works on the balanced panel: units lacking the outcome in any period are dropped
    (counted in `notes`). Cohort must not vary within unit. Cohorts first treated in or before
    the first observed period have no pre-period and are dropped (as in the R package `did`);
    cohorts first treated after the last observed period are untreated throughout the window
    and are treated as never treated. No anticipation is allowed for.

Cells and base periods ("varying" base period, the default of the R package `did`)
    For every cohort g and every period t after the first: post-treatment cells (t >= g) compare
    t with the last period before g (base g-1); pre-treatment cells (t < g) compare t with the
    period just before it (base t-1), so each pre-period estimate is a one-period placebo
    "effect" and should be zero under parallel trends (no anticipation). Event time e = t - g.

Control groups
    never   units never treated (in the window).
    notyet  never-treated units plus units not yet treated in either period compared, i.e.
            with G > max(t, base), excluding cohort g itself. For post-treatment cells this is
            G > max(t, g-1) = t, the paper's not-yet-treated group; for pre-treatment cells
            (base t-1) it is G > t, exactly as the R package `did` defines it.
    Cells without treated or control units are not estimated (listed in `notes`).

Estimator for one cell (panel data; dY = Y_t - Y_base)
    No covariates: ATT(g,t) = mean(dY | G = g) - mean(dY | control), the 2x2 DiD of means.
    Covariates (time-invariant; values at the cell's base period): the doubly robust estimator
    of Sant'Anna and Zhao (2020, "traditional" DR of DRDID::drdid_panel): propensity score
    p(X) by logit (statsmodels) of being in cohort g versus control within the cell's sample,
    outcome regression m(X) by OLS of dY on X among the controls, and
        ATT = mean_treated(dY - m(X)) - sum_c w_c (dY - m(X)) / sum_c w_c,  w_c = p/(1-p),
    with control propensities trimmed at 0.995 (w_c = 0 above it, as DRDID). Consistent if
    either model is right. With no covariates the DR formula reduces to the difference of means.

Inference
    Each cell's influence function psi_i (one value per unit, scaled to the full sample of n
    units, so that att_hat - att ~ (1/n) sum_i psi_i) includes the estimation of the propensity
    score and outcome regression. Analytic variances: V = sum_c Psi_c Psi_c' / n^2 with Psi_c
    the sum of psi over the units of cluster c (unit by default, i.e. clustered by unit: all
    periods of a unit are one observation); no small-sample factor (as the R package).
    Multiplier bootstrap (Mammen's two-point weights by default, or Rademacher): draws
    (1/n) sum_c v_c Psi_c; bootstrap SE = IQR / 1.349; uniform (simultaneous) 95% bands
    att +/- c * se_boot where c is the 95% quantile of max_k |draw_k| / se_boot_k over the
    cells (or event times, groups, periods) of the table. Pointwise 95% CIs use the analytic
    SEs; the uniform bands use the bootstrap.

Aggregations (Callaway and Sant'Anna 2021, section 3; as `did::aggte`)
    simple    sum over post cells of P(G=g) ATT(g,t) / sum P(G=g): group-size weights.
    dynamic   theta(e) = sum over cells with t-g = e of P(G=g) ATT(g,t) / sum P(G=g), every e;
              overall = mean of theta(e) over e >= 0.
    group     theta(g) = mean of ATT(g,t) over t >= g; overall = sum_g P(G=g) theta(g) / sum.
    calendar  theta(t) = sum over g <= t of P(G=g) ATT(g,t) / sum P(G=g); overall = mean.
    P(G=g) is the share of all n units in cohort g. Where weights involve estimated cohort
    shares, their influence function is added ("wif" in the paper), so SEs account for the
    estimated weights; equal weights (means over t, e or calendar periods) are fixed.

Pre-trend test
    Wald chi-square that all estimated pre-treatment ATT(g,t) are zero, using their joint
    influence-function covariance (pseudo-inverse; df = its rank).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from evaluation.methods.common import Z95, json_safe

CONTROL_GROUPS = ("never", "notyet")
AGGREGATIONS = ("simple", "dynamic", "group", "calendar")
MULTIPLIERS = ("mammen", "rademacher")
PS_TRIM = 0.995
_IQR_NORMAL = float(stats.norm.ppf(0.75) - stats.norm.ppf(0.25))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class PretrendTest:
    """Joint Wald test that all pre-treatment ATT(g,t) are zero."""

    statistic: float
    df: int
    p_value: float
    n_cells: int

    def to_dict(self) -> dict:
        return json_safe({"statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                       "n_cells": self.n_cells,
                       "null": "all pre-treatment ATT(g,t) are zero (varying base period)"})


@dataclass(frozen=True, eq=False)
class AggregatedATT:
    """One aggregation of the group-time effects. `table` has one row per event time, group or
    calendar period (empty for `simple`); `overall` is the single summary parameter."""

    kind: str
    outcome: str
    estimate: float
    se: float
    ci: tuple[float, float]
    table: pd.DataFrame
    weights: str
    # unit-level influence function of `estimate` (full-sample scaling); not published
    influence: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    # n_units x rows of `table`: the influence functions of the table's estimates, for their
    # joint covariance (parallel-trends sensitivity, evaluation.methods.honest); not published
    table_influence: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    def tidy(self) -> pd.DataFrame:
        head = pd.DataFrame([{"kind": self.kind, "level": "overall", "value": np.nan,
                              "estimate": self.estimate, "se": self.se,
                              "ci_lo": self.ci[0], "ci_hi": self.ci[1]}])
        if self.table.empty:
            return head
        key = self.table.columns[0]
        rows = self.table.rename(columns={key: "value"}).assign(kind=self.kind, level=key)
        return pd.concat([head, rows[[c for c in rows.columns if c in head.columns or
                                      c.startswith("cband") or c == "se_boot"]]],
                         ignore_index=True)

    def to_dict(self) -> dict:
        return json_safe({"kind": self.kind, "estimate": self.estimate, "se": self.se,
                       "ci95": list(self.ci), "weights": self.weights,
                       "table": self.table.to_dict(orient="records")})


@dataclass(frozen=True, eq=False)
class StaggeredDiDResult:
    """Group-time ATTs (Callaway and Sant'Anna 2021); see the module docstring for the method.

    `cells` has one row per estimated (group, time) cell. `influence` is the n_units x n_cells
    matrix of unit-level influence functions (full-sample scaling), `clusters` maps each unit
    (row of `influence`) to its cluster code, `cohort_of_unit` gives each unit's cohort (0 =
    never treated)."""

    outcome: str
    control: str
    covariates: tuple[str, ...]
    cells: pd.DataFrame
    pretrend: PretrendTest
    n_units: int
    n_clusters: int
    periods: tuple[int, ...]
    cohorts: tuple[int, ...]
    cohort_sizes: dict
    bootstrap: int
    multiplier: str
    seed: int | None
    crit_uniform: float
    method: str
    notes: tuple[str, ...]
    influence: np.ndarray = field(repr=False)
    clusters: np.ndarray = field(repr=False)
    cohort_of_unit: np.ndarray = field(repr=False)

    # ---------------------------------------------------------------- data

    def tidy(self) -> pd.DataFrame:
        return self.cells.copy()

    def to_dict(self) -> dict:
        return json_safe({
            "method": self.method,
            "outcome": self.outcome,
            "control_group": self.control,
            "covariates": list(self.covariates),
            "base_period": "varying",
            "n_units": self.n_units,
            "n_clusters": self.n_clusters,
            "periods": list(self.periods),
            "cohort_sizes": {str(k): v for k, v in self.cohort_sizes.items()},
            "inference": {
                "se": ("analytic, from influence functions, clustered by "
                       + ("unit" if self.n_clusters == self.n_units else f"cluster ({self.n_clusters} clusters)")),
                "ci95": "pointwise, estimate +/- 1.96 analytic SE",
                "uniform_band": (f"multiplier bootstrap ({self.bootstrap} draws, {self.multiplier} "
                                 f"weights, seed {self.seed}): estimate +/- critical value x "
                                 "bootstrap SE") if self.bootstrap else None,
                "crit_uniform_group_time": self.crit_uniform,
            },
            "group_time": self.cells.to_dict(orient="records"),
            "aggregations": {k: self.aggregate(k).to_dict() for k in AGGREGATIONS},
            "pretrend_test": self.pretrend.to_dict(),
            "notes": list(self.notes),
        })

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # ---------------------------------------------------------------- inference helpers

    def _cluster_sum(self, inf: np.ndarray) -> np.ndarray:
        """Sum unit-level influence values (n x k) within clusters -> (n_clusters x k)."""
        inf = np.asarray(inf, dtype=float).reshape(self.n_units, -1)
        if self.n_clusters == self.n_units:
            return inf
        out = np.zeros((self.n_clusters, inf.shape[1]))
        np.add.at(out, self.clusters, inf)
        return out

    def _se(self, inf: np.ndarray) -> np.ndarray:
        psi = self._cluster_sum(inf)
        return np.sqrt((psi**2).sum(axis=0)) / self.n_units

    def _boot(self, inf: np.ndarray) -> tuple[np.ndarray, float]:
        """Bootstrap SEs and the uniform critical value for the columns of `inf`."""
        psi = self._cluster_sum(inf)
        draws = _bootstrap_draws(psi, self.bootstrap, self.multiplier, self.seed) / self.n_units
        q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
        se_b = (q75 - q25) / _IQR_NORMAL
        ok = np.isfinite(se_b) & (se_b > 1e-10 * max(1.0, float(np.nanmax(se_b))))
        if not ok.any():
            return np.where(ok, se_b, np.nan), float("nan")
        tmax = np.max(np.abs(draws[:, ok]) / se_b[ok], axis=1)
        crit = float(np.quantile(tmax, 0.95))
        return np.where(ok, se_b, np.nan), crit

    def _table(self, key: str, values, est: np.ndarray, inf: np.ndarray) -> pd.DataFrame:
        se = self._se(inf)
        tab = pd.DataFrame({key: list(values), "estimate": est, "se": se,
                            "ci_lo": est - Z95 * se, "ci_hi": est + Z95 * se})
        if self.bootstrap and len(est):
            se_b, crit = self._boot(inf)
            tab["se_boot"] = se_b
            tab["cband_lo"] = est - crit * se_b
            tab["cband_hi"] = est + crit * se_b
        return tab

    # ---------------------------------------------------------------- aggregation

    def aggregate(self, kind: str = "simple") -> AggregatedATT:
        """Aggregate ATT(g,t): 'simple', 'dynamic' (event time), 'group' or 'calendar'."""
        if kind not in AGGREGATIONS:
            raise ValueError(f"aggregate: kind must be one of {', '.join(AGGREGATIONS)}, got {kind!r}")
        c = self.cells
        att = c["att"].to_numpy(float)
        grp = c["group"].to_numpy()
        tim = c["time"].to_numpy()
        evt = c["event_time"].to_numpy()
        post = c["post"].to_numpy(bool)
        inf = self.influence
        n = self.n_units
        share = {g: self.cohort_sizes[g] / n for g in self.cohorts}
        pg = np.array([share[g] for g in grp])
        ind = {g: (self.cohort_of_unit == g).astype(float) for g in self.cohorts}

        def weighted(keep: np.ndarray, w_groups=None) -> tuple[float, np.ndarray]:
            """sum_k pg_k att_k / sum pg over cells `keep`, with the influence function of the
            estimated cohort shares (wif) added."""
            idx = np.flatnonzero(keep)
            p = pg[idx]
            s = p.sum()
            w = p / s
            est = float(w @ att[idx])
            if_att = inf[:, idx] @ w
            # wif: d/d pg of sum(pg att)/sum(pg)
            dev = np.column_stack([ind[grp[k]] - pg[k] for k in idx])  # n x K
            if1 = dev / s
            if2 = dev.sum(axis=1, keepdims=True) * (p / s**2)[None, :]
            return est, if_att + (if1 - if2) @ att[idx]

        def equal(ests: np.ndarray, infs: np.ndarray) -> tuple[float, np.ndarray]:
            return float(ests.mean()), infs.mean(axis=1)

        if kind == "simple":
            if not post.any():
                raise ValueError("aggregate: no post-treatment cells")
            est, if_o = weighted(post)
            infs = np.zeros((n, 0))
            table = pd.DataFrame()
            weights = ("post-treatment cells weighted by cohort size P(G=g); estimated weights' "
                       "influence included")
        elif kind == "dynamic":
            es = np.sort(np.unique(evt))
            pairs = [weighted(evt == e) for e in es]
            ests = np.array([p[0] for p in pairs])
            infs = np.column_stack([p[1] for p in pairs])
            table = self._table("event_time", es, ests, infs)
            pos = es >= 0
            est, if_o = equal(ests[pos], infs[:, pos])
            weights = ("theta(e): cells with t-g=e weighted by P(G=g) (estimated weights' influence "
                       "included); overall: equal-weight mean of theta(e), e >= 0")
        elif kind == "group":
            gs = np.array(self.cohorts)
            ests, infs, keep_g = [], [], []
            for g in gs:
                k = (grp == g) & post
                if not k.any():
                    continue
                e_, i_ = equal(att[k], inf[:, k])
                ests.append(e_)
                infs.append(i_)
                keep_g.append(g)
            ests = np.array(ests)
            infs = np.column_stack(infs)
            table = self._table("group", keep_g, ests, infs)
            p = np.array([share[g] for g in keep_g])
            s = p.sum()
            est = float(p @ ests / s)
            dev = np.column_stack([ind[g] - share[g] for g in keep_g])
            wif = dev / s - dev.sum(axis=1, keepdims=True) * (p / s**2)[None, :]
            if_o = infs @ (p / s) + wif @ ests
            weights = ("theta(g): equal-weight mean over t >= g; overall: theta(g) weighted by "
                       "P(G=g) (estimated weights' influence included)")
        else:  # calendar
            ts = np.sort(np.unique(tim[post]))
            pairs = [weighted(post & (tim == t)) for t in ts]
            ests = np.array([p[0] for p in pairs])
            infs = np.column_stack([p[1] for p in pairs])
            table = self._table("time", ts, ests, infs)
            est, if_o = equal(ests, infs)
            weights = ("theta(t): cohorts treated by t weighted by P(G=g) (estimated weights' "
                       "influence included); overall: equal-weight mean over calendar periods")
        se = float(self._se(if_o)[0])
        return AggregatedATT(kind=kind, outcome=self.outcome, estimate=est, se=se,
                             ci=(est - Z95 * se, est + Z95 * se), table=table,
                             weights=weights, influence=if_o, table_influence=infs)

    def covariance(self, influence: np.ndarray) -> np.ndarray:
        """Joint analytic covariance of estimates with unit-level influence functions
        ``influence`` (n_units x k), clustered as the standard errors are."""
        psi = self._cluster_sum(influence)
        return psi.T @ psi / self.n_units**2


# --------------------------------------------------------------------------- estimation


def _bootstrap_draws(psi: np.ndarray, draws: int, kind: str, seed: int | None) -> np.ndarray:
    """sum_c v_c Psi_c for `draws` multiplier vectors v (Mammen or Rademacher), generated in
    blocks of rows to bound memory; the stream of uniforms is the same whatever the block size,
    so results depend only on the seed."""
    rng = np.random.default_rng(seed)
    n = psi.shape[0]
    s5 = math.sqrt(5.0)
    if kind == "rademacher":
        lo, hi, p_lo = -1.0, 1.0, 0.5
    else:  # Mammen: mean 0, variance 1, third moment 1
        lo, hi, p_lo = (1 - s5) / 2, (1 + s5) / 2, (s5 + 1) / (2 * s5)
    out = np.empty((draws, psi.shape[1]))
    block = max(1, min(draws, 4_000_000 // max(n, 1)))
    for start in range(0, draws, block):
        k = min(block, draws - start)
        v = np.where(rng.random((k, n)) < p_lo, lo, hi)
        out[start:start + k] = v @ psi
    return out


def _did_means(dy: np.ndarray, treat: np.ndarray, ctrl: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    """2x2 DiD of mean changes and its full-sample influence function."""
    p1 = treat.sum() / n
    p0 = ctrl.sum() / n
    m1 = dy[treat].mean()
    m0 = dy[ctrl].mean()
    psi = np.zeros(n)
    psi[treat] = (dy[treat] - m1) / p1
    psi[ctrl] = -(dy[ctrl] - m0) / p0
    return float(m1 - m0), psi


def _did_dr(dy: np.ndarray, X: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """Sant'Anna & Zhao (2020) locally efficient doubly robust DiD for panel data (the
    'traditional' DR of DRDID::drdid_panel) on one cell's sample: d = 1 treated, 0 control; X
    includes the intercept. Returns the ATT and its influence function on this sample."""
    n = len(dy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.Logit(d, X).fit(disp=0, method="newton", maxiter=100)
    ps = np.minimum(fit.predict(X), 1 - 1e-6)
    W = ps * (1 - ps)
    hess_inv = np.linalg.pinv((X * W[:, None]).T @ X / n)  # (X'WX/n)^-1
    lin_ps = ((d - ps)[:, None] * X) @ hess_inv  # asymptotic linear representation of the logit
    ctrl = d == 0
    Xc = X[ctrl]
    beta = np.linalg.lstsq(Xc, dy[ctrl], rcond=None)[0]
    m = X @ beta
    trim = np.where(ctrl, ps < PS_TRIM, True)
    w1 = d.astype(float)
    w0 = trim * ps * (1 - d) / (1 - ps)
    att1 = w1 * (dy - m)
    att0 = w0 * (dy - m)
    eta1 = att1.mean() / w1.mean()
    eta0 = att0.mean() / w0.mean()
    # OLS linear representation
    wols = (1 - d)[:, None] * X
    xpx_inv = np.linalg.pinv(wols.T @ X / n)
    lin_ols = (wols * (dy - m)[:, None]) @ xpx_inv
    inf_t = (att1 - w1 * eta1 - lin_ols @ (w1[:, None] * X).mean(axis=0)) / w1.mean()
    m2 = (w0 * (dy - m - eta0))[:, None] * X
    inf_c = (att0 - w0 * eta0 + lin_ps @ m2.mean(axis=0)
             - lin_ols @ (w0[:, None] * X).mean(axis=0)) / w0.mean()
    return float(eta1 - eta0), inf_t - inf_c


def _cohort_codes(s: pd.Series, name: str) -> pd.Series:
    """Cohort as float: 0 = never treated (0, NaN, empty, inf)."""
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        s = s.astype("string").str.strip().replace("", pd.NA)
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        raise ValueError(f"cohort column {name!r}: non-numeric value {s[bad].iloc[0]!r}")
    num = num.astype(float).fillna(0.0).replace([np.inf], 0.0)
    if (num < 0).any() or (num != np.round(num)).any():
        raise ValueError(f"cohort column {name!r}: cohorts must be whole periods >= 0 (0 = never treated)")
    return num


def estimate_att_gt(
    data: pd.DataFrame,
    *,
    unit: str,
    time: str,
    cohort: str,
    outcome: str,
    control: str = "never",
    covariates: list[str] | tuple[str, ...] | None = None,
    cluster: str | None = None,
    bootstrap: int = 999,
    seed: int | None = 20240501,
    multiplier: str = "mammen",
) -> StaggeredDiDResult:
    """Callaway & Sant'Anna (2021) group-time ATTs; see the module docstring.

    data       long panel, one row per unit and period
    unit, time, cohort, outcome  column names; time must be integer periods; cohort is the first
               treated period (0/NaN/empty = never treated)
    control    'never' or 'notyet'
    covariates time-invariant numeric columns (values at each cell's base period are used);
               triggers the doubly robust estimator
    cluster    optional column constant within unit (e.g. practice) for clustered SEs; default unit
    bootstrap  multiplier-bootstrap draws for uniform bands (0 = none)
    """
    covariates = tuple(covariates or ())
    if control not in CONTROL_GROUPS:
        raise ValueError(f"control must be one of {', '.join(CONTROL_GROUPS)}, got {control!r}")
    if multiplier not in MULTIPLIERS:
        raise ValueError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, got {multiplier!r}")
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    needed = [unit, time, cohort, outcome, *covariates] + ([cluster] if cluster else [])
    missing = [c for c in dict.fromkeys(needed) if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) not found: {', '.join(missing)}")
    if len(data) == 0:
        raise ValueError("panel has no rows")
    df = data[list(dict.fromkeys(needed))].copy()
    tnum = pd.to_numeric(df[time], errors="coerce")
    if tnum.isna().any() or (tnum != np.round(tnum)).any():
        raise ValueError(f"time column {time!r}: periods must be whole numbers, none missing")
    df[time] = tnum.astype(np.int64)
    df[cohort] = _cohort_codes(df[cohort], cohort)
    for c in (outcome, *covariates):
        if not pd.api.types.is_numeric_dtype(df[c]):
            conv = pd.to_numeric(df[c], errors="coerce")
            if conv.isna().sum() > df[c].isna().sum():
                raise ValueError(f"column {c!r}: non-numeric values")
            df[c] = conv
        df[c] = df[c].astype(float)
    if df.duplicated([unit, time]).any():
        raise ValueError(f"more than one row per {unit!r} and {time!r}")
    if (df.groupby(unit)[cohort].nunique() > 1).any():
        raise ValueError(f"cohort column {cohort!r} varies within {unit!r}")
    if cluster and (df.groupby(unit)[cluster].nunique(dropna=False) > 1).any():
        raise ValueError(f"cluster column {cluster!r} varies within {unit!r}")

    notes: list[str] = []
    periods = np.sort(df[time].unique())
    if len(periods) < 2:
        raise ValueError(f"time column {time!r}: need at least two periods")
    Y = df.pivot(index=unit, columns=time, values=outcome).reindex(columns=periods)
    complete = Y.notna().all(axis=1)
    if (~complete).any():
        notes.append(f"{int((~complete).sum())} unit(s) without the outcome in every period dropped "
                     "(balanced panel)")
    units = Y.index[complete]
    Y = Y.loc[units].to_numpy(float)
    first = df.drop_duplicates(unit).set_index(unit).loc[units]
    G = first[cohort].to_numpy(float)
    early = (G > 0) & (G <= periods[0])
    if early.any():
        notes.append(f"{int(early.sum())} unit(s) treated in or before the first period "
                     f"({periods[0]}) dropped: no pre-treatment period")
    late = G > periods[-1]
    if late.any():
        notes.append(f"{int(late.sum())} unit(s) first treated after the last period "
                     f"({periods[-1]}) treated as never treated")
        G = np.where(late, 0.0, G)
    keep = ~early
    Y, G, units = Y[keep], G[keep], units[keep]
    first = first.loc[units]
    n = len(units)
    if n == 0:
        raise ValueError("no units left to analyse")
    Xw = {}
    for c in covariates:
        Xw[c] = (df.pivot(index=unit, columns=time, values=c).reindex(index=units, columns=periods)
                 .to_numpy(float))
    if cluster:
        clusters = pd.factorize(first[cluster])[0]
        n_clusters = int(clusters.max()) + 1
    else:
        clusters = np.arange(n)
        n_clusters = n

    cohorts = tuple(int(g) for g in np.sort(np.unique(G[G > 0])))
    if not cohorts:
        raise ValueError(f"cohort column {cohort!r}: no treated cohort with a pre-treatment period")
    never = G == 0
    if control == "never" and not never.any():
        raise ValueError(f"cohort column {cohort!r}: no never-treated units; use control 'notyet'")
    sizes = {0: int(never.sum()), **{g: int((G == g).sum()) for g in cohorts}}

    rows, infs, skipped = [], [], []
    col = {int(t): j for j, t in enumerate(periods)}
    for g in cohorts:
        before = periods[periods < g]
        base_post = int(before[-1])
        for j, t in enumerate(periods[1:], start=1):
            t = int(t)
            b = base_post if t >= g else int(periods[j - 1])
            treat = G == g
            if control == "never":
                ctrl = never.copy()
            else:
                ctrl = never | ((G > max(t, b)) & (G != g))
            if not treat.any() or not ctrl.any():
                skipped.append(f"g={g} t={t}")
                continue
            dy = Y[:, col[t]] - Y[:, col[b]]
            if covariates:
                sub = treat | ctrl
                Xs = np.column_stack([np.ones(sub.sum())] + [Xw[c][sub, col[b]] for c in covariates])
                if np.isnan(Xs).any():
                    raise ValueError(f"covariate(s) {', '.join(covariates)}: missing values at period {b}")
                try:
                    att, psi_s = _did_dr(dy[sub], Xs, treat[sub].astype(float))
                except np.linalg.LinAlgError as e:
                    raise ValueError(f"cell g={g} t={t}: propensity score model failed ({e}); "
                                     "covariates collinear or constant?") from None
                psi = np.zeros(n)
                psi[sub] = psi_s * n / sub.sum()
            else:
                att, psi = _did_means(dy, treat, ctrl, n)
            rows.append({"group": g, "time": t, "base_period": b, "event_time": t - g,
                         "post": t >= g, "att": att,
                         "n_treated": int(treat.sum()), "n_control": int(ctrl.sum())})
            infs.append(psi)
    if skipped:
        notes.append(f"cells without treated or control units not estimated: {', '.join(skipped)}")
    if not rows:
        raise ValueError("no estimable group-time cell")
    cells = pd.DataFrame(rows)
    inf = np.column_stack(infs)

    res = StaggeredDiDResult(
        outcome=outcome, control=control, covariates=covariates, cells=cells,
        pretrend=PretrendTest(float("nan"), 0, float("nan"), 0),
        n_units=n, n_clusters=n_clusters, periods=tuple(int(p) for p in periods),
        cohorts=cohorts, cohort_sizes=sizes, bootstrap=int(bootstrap), multiplier=multiplier,
        seed=seed, crit_uniform=float("nan"), method="", notes=tuple(notes),
        influence=inf, clusters=clusters, cohort_of_unit=G.astype(int),
    )
    att = cells["att"].to_numpy(float)
    se = res._se(inf)
    cells["se"] = se
    cells["ci_lo"] = att - Z95 * se
    cells["ci_hi"] = att + Z95 * se
    with np.errstate(divide="ignore", invalid="ignore"):
        cells["p_value"] = 2 * stats.norm.sf(np.abs(att / se))
    crit = float("nan")
    if bootstrap:
        se_b, crit = res._boot(inf)
        cells["se_boot"] = se_b
        cells["cband_lo"] = att - crit * se_b
        cells["cband_hi"] = att + crit * se_b

    pre = (~cells["post"].to_numpy(bool)) & (se > 0)
    if pre.any():
        theta = att[pre]
        psi = res._cluster_sum(inf[:, pre])
        V = psi.T @ psi / n**2
        rank = int(np.linalg.matrix_rank(V))
        W = float(theta @ np.linalg.pinv(V) @ theta)
        pretrend = PretrendTest(W, rank, float(stats.chi2.sf(W, rank)), int(pre.sum()))
    else:
        pretrend = PretrendTest(float("nan"), 0, float("nan"), 0)

    est = ("doubly robust DiD (Sant'Anna & Zhao 2020: logit propensity score, OLS outcome "
           f"regression on control changes; covariates {', '.join(covariates)} at the base period)"
           if covariates else "2x2 DiD of mean changes")
    method = (f"Callaway & Sant'Anna (2021) group-time ATTs; {est}; control group "
              f"{'never treated' if control == 'never' else 'not yet treated (G > max(t, base)) and never treated'}; "
              "varying base period (g-1 for t >= g, t-1 for t < g); analytic SEs from influence "
              f"functions clustered by {'unit' if not cluster else cluster}"
              + (f"; uniform 95% bands by multiplier bootstrap ({bootstrap} draws, {multiplier})"
                 if bootstrap else ""))
    object.__setattr__(res, "pretrend", pretrend)
    object.__setattr__(res, "crit_uniform", crit)
    object.__setattr__(res, "method", method)
    return res
