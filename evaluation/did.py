"""Difference-in-differences on the matched (stacked) person-month panel, plus the NAIVE
before/after figure that sites used to publish, for contrast.

All estimators take a panel prepared by `evaluation.panel.prepare_panel` (one row per matched
person and relative month with exposure > 0, ATT `weight`, `period`).

Count outcomes (`estimate_poisson_did`)
    log E[y_it] = log(exposure_it) + alpha_i + gamma_rel(t) + beta * treated_i * post_t,
    fitted by conditional Poisson likelihood (person fixed effects alpha_i conditioned out,
    see `evaluation.methods.poisson_fe`), on the comparison period (period "pre": rel -12..-7 with the
    default 6-month selection window, -12..-1 without one) and post (rel 1..12) months; the
    selection window (the months before the index in which people are referred after a spell
    of high use, and on which controls are matched) and the transition month rel 0 are left
    out (see `evaluation.panel`). exp(beta) is the rate ratio for treated people in
    the 12 months after the index month against their matched controls' change. Standard
    errors: sandwich clustered on matched_set_id. The relative-month effects gamma are common to
    treated and controls; because each set shares one index month (stacked design), they
    absorb calendar time and the pre-referral rise and fall that matching builds into the
    control group. Absolute change per treated person-year = 12 * r1 * (1 - 1/RR), where r1
    is the treated people's observed post-period rate per person-month; 95% interval by the
    delta method on the joint cluster-level influence functions of (beta, r1).
    `estimate_poisson_dids` fits several outcomes of one panel (or of a subset of its rows,
    with the panel's `evaluation.panel.PanelCodes`) at once: the same fits, the shared work
    (rows, design, id codes) done once.

Costs and other continuous outcomes (`estimate_linear_did`)
    Each person's rate per person-year is collapsed to pre and post periods (Bertrand, Duflo
    and Mullainathan 2004: collapsing avoids serial-correlation bias); the DiD is the
    weighted OLS coefficient of treated in  (post rate - pre rate) ~ 1 + treated, which equals a
    two-period linear model with person and period fixed effects; cluster-robust on set.

Event study (`estimate_event_study`)
    As the count DiD but with treated x rel_month for every rel_month except the reference (the
    last month of the comparison period: rel -7 by default, -1 without a selection window),
    including the selection window and rel 0; joint Wald test (cluster-robust) that the
    comparison-period coefficients are 0. Selection-window coefficients are shown, not tested:
    they hold the pre-referral peak by design.

NAIVE before/after (`estimate_naive`)
    Treated people only: post rate minus the rate of the whole year before the index (comparison
    period and selection window) per person-year. Biased by regression to the mean (people are
    referred near a peak), shown only to compare with published figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import sparse, stats

from core.contract import POST_MONTHS, outcome_label
from evaluation.panel import ID_COLUMNS, PanelCodes, comparison_months, period_of, reference_month
from evaluation.methods.common import Z95
from evaluation.methods.poisson_fe import PoissonFEFit, fit_poisson_fe


# --------------------------------------------------------------------------- count DiD


@dataclass(frozen=True, eq=False)
class CountDiDResult:
    """Poisson DiD for one count outcome. Rates are per person-year."""

    outcome: str
    rate_ratio: float
    rate_ratio_ci: tuple[float, float]
    log_rate_ratio: float
    se_log_rate_ratio: float
    p_value: float
    abs_change_per_py: float  # treated post rate minus counterfactual rate, per person-year
    abs_change_ci: tuple[float, float]
    se_abs_change: float
    treated_post_rate_py: float
    counterfactual_post_rate_py: float
    n_treated: int
    n_controls: int
    n_sets: int
    n_person_months: int
    treated_post_person_years: float
    method: str
    # cluster (matched_set_id) influence values of abs_change_per_py, for joint delta-method
    # intervals of sums across outcomes (costing); not published
    abs_change_influence: pd.Series = field(repr=False, default_factory=pd.Series)
    # cluster (matched_set_id) influence values of log_rate_ratio, scaled by the square root of
    # the small-sample factor G/(G-1) of se_log_rate_ratio, so that sum(v**2) == se**2 and, for
    # two outcomes of the same panel, sum(v_i * v_j) (over the union of their clusters, missing =
    # 0) is the cluster-robust covariance of their log rate ratios (the empirical calibration's
    # correlation-aware SE, `evaluation.calibration`); empty when not estimable; not published
    log_rate_ratio_influence: pd.Series = field(repr=False, default_factory=pd.Series)
    fit: PoissonFEFit | None = field(repr=False, default=None)

    def tidy(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "outcome": self.outcome,
            "label": outcome_label(self.outcome),
            "estimator": "matched DiD (conditional Poisson, person FE)",
            "rate_ratio": self.rate_ratio,
            "rate_ratio_lo95": self.rate_ratio_ci[0],
            "rate_ratio_hi95": self.rate_ratio_ci[1],
            "p_value": self.p_value,
            "abs_change_per_person_year": self.abs_change_per_py,
            "abs_change_lo95": self.abs_change_ci[0],
            "abs_change_hi95": self.abs_change_ci[1],
            "treated_post_rate_per_person_year": self.treated_post_rate_py,
            "counterfactual_post_rate_per_person_year": self.counterfactual_post_rate_py,
            "n_treated": self.n_treated,
            "n_controls": self.n_controls,
            "n_matched_sets": self.n_sets,
        }])


def _ratio_influence(num: pd.Series, den: pd.Series) -> tuple[float, pd.Series]:
    """Ratio estimator R = sum(num)/sum(den) over clusters and its influence values."""
    R = float(num.sum() / den.sum())
    return R, (num - R * den) / float(den.sum())


def _small_sample(n: int) -> float:
    return n / (n - 1) if n > 1 else 1.0


def _did_design(rel_month: pd.Series, rel_levels: list[int], treated_post: pd.Series) -> tuple[sparse.csc_matrix, list[str]]:
    """The count DiD's design, sparse: rel_<m> is 1 in the rows of relative month m (no column
    for the reference month), treated_post as the panel has it. Fitted ``like_frame``, it gives
    the fit of the frame of these columns; a frame of 3.4 million rows took 0.5 GB and a dense
    copy of its rows kept per fit as much."""
    n = len(rel_month)
    column = pd.Series(np.arange(len(rel_levels)), index=rel_levels).reindex(rel_month.to_numpy()).to_numpy()
    rel_rows = np.flatnonzero(np.isfinite(column))
    tp = treated_post.to_numpy().astype(float)
    tp_rows = np.flatnonzero(tp != 0)
    rows = np.concatenate([rel_rows, tp_rows])
    cols = np.concatenate([column[rel_rows].astype(np.intp), np.full(len(tp_rows), len(rel_levels), dtype=np.intp)])
    data = np.concatenate([np.ones(len(rel_rows)), tp[tp_rows]])
    design = sparse.csc_matrix((data, (rows, cols)), shape=(n, len(rel_levels) + 1))
    return design, [f"rel_{m}" for m in rel_levels] + ["treated_post"]


def _event_time_design(first: pd.Series, levels: list, is_treated: np.ndarray) -> tuple[sparse.csr_matrix, list[str]]:
    """The event study's indicators as a sparse matrix: c_<m> (controls) and t_<m> (treated) is
    1 where the row's event-time bin starts at month m; the reference bin has none. Dense, the
    design of 3.4 million panel rows at 2 million people took 1.3 GB, and each copy as much."""
    column = first.map({m: i for i, m in enumerate(levels)}).to_numpy(dtype=float)
    treated = np.asarray(is_treated, dtype=float)
    if not np.isin(treated, (0.0, 1.0)).all():
        raise ValueError("is_treated must be 0 or 1 on every panel row")
    rows = np.flatnonzero(np.isfinite(column))
    cols = column[rows].astype(np.intp) + len(levels) * treated[rows].astype(np.intp)
    design = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(first), 2 * len(levels)))
    return design, [f"c_{m}" for m in levels] + [f"t_{m}" for m in levels]


def _not_estimable_did(outcome: str, n_treated: int, n_controls: int, n_sets: int,
                       n_person_months: int, treated_post_months: float, reason: str) -> CountDiDResult:
    nan2 = (float("nan"), float("nan"))
    return CountDiDResult(
        outcome=outcome, rate_ratio=float("nan"), rate_ratio_ci=nan2,
        log_rate_ratio=float("nan"), se_log_rate_ratio=float("nan"), p_value=float("nan"),
        abs_change_per_py=float("nan"), abs_change_ci=nan2, se_abs_change=float("nan"),
        treated_post_rate_py=float("nan"), counterfactual_post_rate_py=float("nan"),
        n_treated=n_treated, n_controls=n_controls, n_sets=n_sets, n_person_months=n_person_months,
        treated_post_person_years=float(treated_post_months / 12),
        method=reason, abs_change_influence=pd.Series(dtype=float, name=outcome),
        log_rate_ratio_influence=pd.Series(dtype=float, name=outcome),
    )


# the columns of a prepared panel the count DiD reads besides the outcomes and the text ids
# (unit_id, cluster_id, matched_set_id, or their PanelCodes)
POISSON_DID_COLUMNS = ("is_treated", "rel_month", "period", "exposure_months", "weight", "treated_post")


def estimate_poisson_did(panel: pd.DataFrame, outcome: str) -> CountDiDResult:
    """Matched DiD for a count outcome; see the module docstring for the model."""
    return estimate_poisson_dids(panel, (outcome,))[outcome]


def estimate_poisson_dids(panel: pd.DataFrame, outcomes, codes: PanelCodes | None = None) -> dict[str, CountDiDResult]:
    """`estimate_poisson_did` of each outcome, the same results: the rows, the design, the
    unit and cluster codes and the counts of people and sets are made once for all of them,
    from the columns the model reads only (the sensitivity analyses fit four outcomes on each
    of up to a hundred subsets of the panel). ``codes``: the `PanelCodes` of ``panel``'s rows,
    when made already (``panel`` then needs none of the text ids)."""
    outcomes = list(dict.fromkeys(outcomes))
    columns = [*POISSON_DID_COLUMNS, *(o for o in outcomes if o not in POISSON_DID_COLUMNS)]
    rows = panel["period"].isin(["pre", "post"]).to_numpy()
    whole = bool(rows.all())
    df = panel[columns] if whole else panel.loc[rows, columns]  # a copy only when rows go
    if codes is None:
        codes = PanelCodes.of(panel[list(ID_COLUMNS[:3])] if whole else panel.loc[rows, list(ID_COLUMNS[:3])],
                              persons=False)
    elif not whole:
        codes = PanelCodes(codes.units.take(rows), codes.clusters.take(rows), codes.sets.take(rows))
    pre_months = comparison_months(df)
    rel_levels = [m for m in (*pre_months, *POST_MONTHS) if m != pre_months[-1]]
    X, names = _did_design(df["rel_month"], rel_levels, df["treated_post"])
    units, clusters = codes.units, codes.clusters
    exposure, weight = df["exposure_months"].to_numpy(), df["weight"].to_numpy()
    # each unit's first row, as df.drop_duplicates("unit_id") keeps it
    is_treated = df["is_treated"].to_numpy()[~pd.Series(units.codes).duplicated().to_numpy()]
    counts = dict(n_treated=int((is_treated == 1).sum()), n_controls=int((is_treated == 0).sum()),
                  n_sets=len(codes.sets.uniques), n_person_months=int(len(df)))  # nunique: ids are never missing
    tp_rows = ((df["is_treated"] == 1) & (df["period"] == "post")).to_numpy()
    tp = df[tp_rows]
    treated_post_months = tp["exposure_months"].sum()
    # grouped by cluster code: the groups, their order (the ids' sorted order) and sums of grouping
    # by the text id, which then names them
    by_cluster = tp[list(dict.fromkeys([*outcomes, "exposure_months"]))].groupby(clusters.codes[tp_rows]).sum()
    labels = clusters.uniques[by_cluster.index.to_numpy()]
    by_cluster.index = pd.Index(labels, dtype=getattr(labels, "dtype", object), name="cluster_id")
    n_c = len(clusters.uniques)
    out = {}
    for outcome in outcomes:
        fit = fit_poisson_fe(df[outcome].to_numpy(), X, exposure, units, clusters, weight, names=names,
                             like_frame=True)
        if "treated_post" in fit.dropped:
            out[outcome] = _not_estimable_did(
                outcome, **counts, treated_post_months=treated_post_months,
                reason="not estimable: no events among treated people after the index month, or no events at all")
            continue
        out[outcome] = _did_result(outcome, fit, by_cluster, n_c, pre_months, counts, treated_post_months)
    return out


def _did_result(outcome: str, fit: PoissonFEFit, by_cluster: pd.DataFrame, n_c: int, pre_months,
                counts: dict, treated_post_months: float) -> CountDiDResult:
    b = float(fit.params["treated_post"])
    if_b = fit.influence["treated_post"]
    r1, if_r1 = _ratio_influence(by_cluster[outcome], by_cluster["exposure_months"])

    clusters = if_b.index.union(if_r1.index)
    if_b = if_b.reindex(clusters, fill_value=0.0)
    if_r1 = if_r1.reindex(clusters, fill_value=0.0)
    se_b = float(np.sqrt(np.sum(if_b**2) * _small_sample(n_c)))
    rr = float(np.exp(b))
    abs_py = 12 * r1 * (1 - np.exp(-b))
    if_abs = 12 * np.exp(-b) * r1 * if_b + 12 * (1 - np.exp(-b)) * if_r1
    se_abs = float(np.sqrt(np.sum(if_abs**2) * _small_sample(n_c)))
    return CountDiDResult(
        outcome=outcome,
        rate_ratio=rr,
        rate_ratio_ci=(float(np.exp(b - Z95 * se_b)), float(np.exp(b + Z95 * se_b))),
        log_rate_ratio=b,
        se_log_rate_ratio=se_b,
        p_value=float(2 * stats.norm.sf(abs(b) / se_b)),
        abs_change_per_py=float(abs_py),
        abs_change_ci=(float(abs_py - Z95 * se_abs), float(abs_py + Z95 * se_abs)),
        se_abs_change=se_abs,
        treated_post_rate_py=12 * r1,
        counterfactual_post_rate_py=12 * r1 / rr,
        **counts,
        treated_post_person_years=float(treated_post_months / 12),
        method=(
            "Conditional Poisson (person fixed effects), relative-month effects, "
            f"log exposure offset, treated x post (rel 1..12 vs {pre_months[0]}..{pre_months[-1]}; "
            f"{'selection window and ' if pre_months[-1] < -1 else ''}rel 0 excluded), "
            "ATT weights, cluster-robust SEs on matched set (sets sharing a person: one cluster); absolute change by delta method."
        ),
        abs_change_influence=if_abs.rename(outcome),
        log_rate_ratio_influence=(if_b * np.sqrt(_small_sample(n_c))).rename(outcome),
        fit=fit,
    )


# --------------------------------------------------------------------------- linear DiD


@dataclass(frozen=True, eq=False)
class LinearDiDResult:
    """Linear DiD on per-person pre/post rates (per person-year), e.g. costs in GBP."""

    outcome: str
    estimate_per_py: float
    ci: tuple[float, float]
    se: float
    p_value: float
    treated_pre_py: float
    treated_post_py: float
    control_pre_py: float
    control_post_py: float
    n_treated: int
    n_controls: int
    n_sets: int
    method: str

    def tidy(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "outcome": self.outcome,
            "label": outcome_label(self.outcome),
            "estimator": "matched DiD (linear, person pre/post collapse)",
            "did_per_person_year": self.estimate_per_py,
            "did_lo95": self.ci[0],
            "did_hi95": self.ci[1],
            "p_value": self.p_value,
            "treated_pre_per_person_year": self.treated_pre_py,
            "treated_post_per_person_year": self.treated_post_py,
            "control_pre_per_person_year": self.control_pre_py,
            "control_post_per_person_year": self.control_post_py,
            "n_treated": self.n_treated,
            "n_controls": self.n_controls,
            "n_matched_sets": self.n_sets,
        }])


def person_period_rates(panel: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """One row per person: pre and post rate per person-year (persons at risk in both)."""
    df = panel[panel["period"].isin(["pre", "post"])]
    agg = df.groupby(["matched_set_id", "cluster_id", "unit_id", "is_treated", "weight", "period"])[
        [outcome, "exposure_months"]].sum().unstack("period")
    agg = agg.dropna()
    agg = agg[(agg[("exposure_months", "pre")] > 0) & (agg[("exposure_months", "post")] > 0)]
    out = pd.DataFrame({
        "pre": 12 * agg[(outcome, "pre")] / agg[("exposure_months", "pre")],
        "post": 12 * agg[(outcome, "post")] / agg[("exposure_months", "post")],
    }).reset_index()
    out["diff"] = out["post"] - out["pre"]
    return out


def estimate_linear_did(panel: pd.DataFrame, outcome: str) -> LinearDiDResult:
    """Linear DiD per person-year; see the module docstring."""
    pp = person_period_rates(panel, outcome)
    t, c = pp[pp["is_treated"] == 1], pp[pp["is_treated"] == 0]
    est = se = float("nan")
    if len(t) and len(c) and pp["cluster_id"].nunique() > 1:
        X = sm.add_constant(pp["is_treated"].astype(float), has_constant="add")
        groups = pd.factorize(pp["cluster_id"])[0]
        res = sm.WLS(pp["diff"], X, weights=pp["weight"]).fit(
            cov_type="cluster", cov_kwds={"groups": groups})
        est = float(res.params["is_treated"])
        se = float(res.bse["is_treated"])

    def avg(d: pd.DataFrame, col: str) -> float:
        return float(np.average(d[col], weights=d["weight"])) if len(d) else float("nan")

    return LinearDiDResult(
        outcome=outcome,
        estimate_per_py=est,
        ci=(est - Z95 * se, est + Z95 * se),
        se=se,
        p_value=float(2 * stats.norm.sf(abs(est) / se)) if se > 0 else float("nan"),
        treated_pre_py=avg(t, "pre"),
        treated_post_py=avg(t, "post"),
        control_pre_py=avg(c, "pre"),
        control_post_py=avg(c, "post"),
        n_treated=len(t),
        n_controls=len(c),
        n_sets=int(pp["matched_set_id"].nunique()),
        method=(
            "Weighted OLS of (post - pre) person rate on treated (equivalent to two-period "
            "person and period fixed effects), ATT weights, cluster-robust SEs on matched set (sets sharing a person: one cluster); "
            "people not at risk in both periods are left out."
        ),
    )


# --------------------------------------------------------------------------- event study


@dataclass(frozen=True, eq=False)
class EventStudyResult:
    outcome: str
    coefs: pd.DataFrame  # rel_month, log_rr, se, rate_ratio, lo95, hi95 (reference row: 1)
    pretrend_chi2: float
    pretrend_df: int
    pretrend_p: float
    not_estimable: tuple[int, ...]  # first months of bins with no events in a group: NaN
    bin_months: int  # 1 = monthly event study; 3 = quarterly bins
    n_sets: int
    method: str
    # cluster-robust covariance of log_rr across the non-reference bins, indexed both ways by the
    # bins' first month (NaN where not estimable): the parallel-trends sensitivity
    # (evaluation.methods.honest) needs the joint covariance, not only the standard errors
    cov: pd.DataFrame | None = field(repr=False, default=None)

    def tidy(self) -> pd.DataFrame:
        t = self.coefs.copy()
        t.insert(0, "outcome", self.outcome)
        t["pretrend_chi2"] = self.pretrend_chi2
        t["pretrend_df"] = self.pretrend_df
        t["pretrend_p"] = self.pretrend_p
        return t


def event_time_bins(width: int, selection_window: int = 0) -> dict[int, tuple[int, int]]:
    """Map rel_month -> (first, last) month of its bin. Months are grouped in bins of `width`
    counted away from the index month, separately in the post period, in the selection window
    (rel -1..-selection_window) and in the comparison period (from rel -(selection_window + 1)
    down), so no bin straddles two periods and the reference bin ends at the reference month;
    the transition month 0 is always its own bin."""
    w = int(selection_window)
    bins = {0: (0, 0)}
    for m in range(1, 13):
        lo = 1 + ((m - 1) // width) * width
        bins[m] = (lo, min(lo + width - 1, 12))
    # counted down from the top of each period: the selection window, then the comparison period
    for top, bottom in ((-1, -w), (-(w + 1), -12)):
        for m in range(bottom, top + 1):
            hi = top - ((top - m) // width) * width
            bins[m] = (max(hi - width + 1, bottom), hi)
    return bins


def _auto_bin_width(panel: pd.DataFrame, outcome: str, min_events: int = 5) -> int:
    """Monthly if every month has at least `min_events` events among treated people and among
    controls; otherwise quarterly bins (rare outcomes, small cohorts)."""
    cells = panel.groupby(["is_treated", "rel_month"])[outcome].sum()
    return 1 if len(cells) and cells.min() >= min_events else 3


def estimate_event_study(panel: pd.DataFrame, outcome: str,
                         bin_months: int | None = None) -> EventStudyResult:
    """Treated x event-time rate ratios (reference: the bin ending at the last month of the
    comparison period) and a joint pre-trend test on the comparison period.

    Fitted with group-specific event-time effects, log mu = alpha_i + c_b (controls) or t_b
    (treated), b != reference, which is the same model as event-time effects plus treated x
    event time (d_b = t_b - c_b) but shows separation cell by cell: a bin in which the
    treated (or the controls) have no events has no finite estimate, so its d_b is reported
    as not estimable and left out of the pre-trend test. `bin_months` None chooses monthly
    bins when every month has >= 5 events in each group, else 3-month bins.
    """
    df = panel
    width = bin_months or _auto_bin_width(df, outcome)
    reference = reference_month(df)
    bins = event_time_bins(width, selection_window=-1 - reference)
    ref = bins[reference]
    keys = sorted(set(bins.values()))
    levels = [k for k in keys if k != ref]
    first = df["rel_month"].map({m: b[0] for m, b in bins.items()})
    design, names = _event_time_design(first, [k[0] for k in levels], df["is_treated"].to_numpy())
    in_ref = first == ref[0]
    ref_empty = any(df.loc[in_ref & (df["is_treated"] == g), outcome].sum() == 0 for g in (0, 1))
    if ref_empty:
        fit = None
        d = np.full(len(levels), np.nan)
        V = np.full((len(levels), len(levels)), np.nan)
        bad = [k[0] for k in levels]
    else:
        fit = fit_poisson_fe(
            df[outcome].to_numpy(), design, df["exposure_months"].to_numpy(),
            df["unit_id"].to_numpy(), df["cluster_id"].to_numpy(), df["weight"].to_numpy(), names=names,
        )
        # contrasts d_b = t_b - c_b and their covariance
        params = fit.params.fillna(0.0)
        cov = fit.cov.fillna(0.0)
        L = np.zeros((len(levels), len(params)))
        for i, k in enumerate(levels):
            L[i, params.index.get_loc(f"t_{k[0]}")] = 1.0
            L[i, params.index.get_loc(f"c_{k[0]}")] = -1.0
        d = L @ params.to_numpy()
        V = L @ cov.to_numpy() @ L.T
        bad = [k[0] for k in levels if f"t_{k[0]}" in fit.dropped or f"c_{k[0]}" in fit.dropped]
    ok = np.array([k[0] not in bad for k in levels])
    d[~ok] = np.nan
    se = np.sqrt(np.diag(V)).copy()
    se[~ok] = np.nan
    coefs = pd.DataFrame({"first_month": [k[0] for k in levels], "last_month": [k[1] for k in levels],
                          "log_rr": d, "se": se})
    coefs = pd.concat([coefs, pd.DataFrame(
        {"first_month": [ref[0]], "last_month": [ref[1]], "log_rr": [0.0], "se": [0.0]})])
    coefs = coefs.sort_values("first_month").reset_index(drop=True)
    coefs.insert(0, "rel_month", (coefs["first_month"] + coefs["last_month"]) / 2)
    coefs["rate_ratio"] = np.exp(coefs["log_rr"])
    coefs["lo95"] = np.exp(coefs["log_rr"] - Z95 * coefs["se"])
    coefs["hi95"] = np.exp(coefs["log_rr"] + Z95 * coefs["se"])
    coefs["period"] = period_of(coefs["last_month"], -1 - reference)
    coefs["reference"] = coefs["first_month"] == ref[0]

    pre = [i for i, k in enumerate(levels) if k[1] < ref[0] and ok[i]]
    bp = d[pre]
    Vp = V[np.ix_(pre, pre)]
    chi2, rank = float("nan"), 0
    if pre and np.all(np.isfinite(Vp)):
        # pseudo-inverse: with very sparse data the covariance can be (near) singular; the
        # test then has as many degrees of freedom as the covariance has rank
        chi2 = float(bp @ np.linalg.pinv(Vp) @ bp)
        rank = int(np.linalg.matrix_rank(Vp))
    return EventStudyResult(
        outcome=outcome,
        coefs=coefs,
        pretrend_chi2=chi2,
        pretrend_df=rank,
        pretrend_p=float(stats.chi2.sf(chi2, rank)) if rank else float("nan"),
        not_estimable=tuple(bad),
        bin_months=width,
        n_sets=int(df["matched_set_id"].nunique()),
        cov=_bin_covariance(V, [k[0] for k in levels], ok),
        method=(
            "Conditional Poisson (person FE), event-time effects by group, treated x event time "
            f"in {'monthly' if width == 1 else f'{width}-month'} bins (reference: the bin ending "
            f"at rel {reference}, the last month of the comparison period), cluster-robust on "
            "matched set; joint Wald test that the comparison-period coefficients are zero "
            "(selection-window coefficients shown, not tested: they hold the pre-referral peak)."
        ),
    )


def _bin_covariance(V: np.ndarray, first_months: list[int], ok: np.ndarray) -> pd.DataFrame:
    cov = np.array(V, dtype=float, copy=True)
    cov[~ok, :] = np.nan
    cov[:, ~ok] = np.nan
    index = pd.Index(first_months, name="first_month")
    return pd.DataFrame(cov, index=index, columns=index)


# --------------------------------------------------------------------------- naive


@dataclass(frozen=True, eq=False)
class NaiveResult:
    """NAIVE before/after for treated people only (no comparison group)."""

    outcome: str
    pre_rate_py: float
    post_rate_py: float
    change_per_py: float
    change_ci: tuple[float, float]
    pct_change: float
    n_treated: int
    label: str = "NAIVE before/after (treated only, no comparison group: biased by regression to the mean)"

    def tidy(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "outcome": self.outcome,
            "label": outcome_label(self.outcome),
            "estimator": "NAIVE before/after (treated only)",
            "pre_rate_per_person_year": self.pre_rate_py,
            "post_rate_per_person_year": self.post_rate_py,
            "change_per_person_year": self.change_per_py,
            "change_lo95": self.change_ci[0],
            "change_hi95": self.change_ci[1],
            "pct_change": self.pct_change,
            "n_treated": self.n_treated,
        }])


def estimate_naive(panel: pd.DataFrame, outcome: str) -> NaiveResult:
    """Post-period minus pre-period rate per person-year among treated people (NAIVE); the
    pre-period is the whole year before the index (selection window included), as a site
    comparing the year before referral with the year after would do."""
    t = panel[(panel["is_treated"] == 1) & panel["period"].isin(["pre", "selection", "post"])]
    t = t.assign(period=t["period"].replace({"selection": "pre"}))
    agg = t.groupby(["person_id", "period"])[[outcome, "exposure_months"]].sum().unstack(
        "period", fill_value=0.0)
    r_pre, if_pre = _ratio_influence(agg[(outcome, "pre")], agg[("exposure_months", "pre")])
    r_post, if_post = _ratio_influence(agg[(outcome, "post")], agg[("exposure_months", "post")])
    change = 12 * (r_post - r_pre)
    se = float(np.sqrt(np.sum((12 * (if_post - if_pre)) ** 2) * _small_sample(len(agg))))
    return NaiveResult(
        outcome=outcome,
        pre_rate_py=12 * r_pre,
        post_rate_py=12 * r_post,
        change_per_py=change,
        change_ci=(change - Z95 * se, change + Z95 * se),
        pct_change=(r_post / r_pre - 1) if r_pre > 0 else float("nan"),
        n_treated=len(agg),
    )


# --------------------------------------------------------------------------- bundle


@dataclass(frozen=True, eq=False)
class OutcomeEstimates:
    """Everything estimated for one count outcome."""

    outcome: str
    did: CountDiDResult
    linear_did: LinearDiDResult
    event_study: EventStudyResult
    naive: NaiveResult

    def tidy(self) -> pd.DataFrame:
        """One row: NAIVE and matched DiD side by side (the report's outcome table)."""
        d, n, lin = self.did.tidy().iloc[0], self.naive.tidy().iloc[0], self.linear_did.tidy().iloc[0]
        return pd.DataFrame([{
            "outcome": self.outcome,
            "label": outcome_label(self.outcome),
            "naive_pre_per_person_year": n["pre_rate_per_person_year"],
            "naive_post_per_person_year": n["post_rate_per_person_year"],
            "naive_change_per_person_year": n["change_per_person_year"],
            "naive_change_lo95": n["change_lo95"],
            "naive_change_hi95": n["change_hi95"],
            "naive_pct_change": n["pct_change"],
            "did_rate_ratio": d["rate_ratio"],
            "did_rate_ratio_lo95": d["rate_ratio_lo95"],
            "did_rate_ratio_hi95": d["rate_ratio_hi95"],
            "did_p_value": d["p_value"],
            "did_abs_change_per_person_year": d["abs_change_per_person_year"],
            "did_abs_change_lo95": d["abs_change_lo95"],
            "did_abs_change_hi95": d["abs_change_hi95"],
            "linear_did_per_person_year": lin["did_per_person_year"],
            "linear_did_lo95": lin["did_lo95"],
            "linear_did_hi95": lin["did_hi95"],
            "pretrend_p": self.event_study.pretrend_p,
            "n_treated": d["n_treated"],
            "n_controls": d["n_controls"],
            "n_matched_sets": d["n_matched_sets"],
        }])


def estimate_outcome(panel: pd.DataFrame, outcome: str,
                     treated_panel: pd.DataFrame | None = None) -> OutcomeEstimates:
    """Run the NAIVE, Poisson DiD, linear DiD and event study for one count outcome. The
    NAIVE uses ``treated_panel`` (all eligible treated people, matched or not) when given."""
    return OutcomeEstimates(
        outcome=outcome,
        did=estimate_poisson_did(panel, outcome),
        linear_did=estimate_linear_did(panel, outcome),
        event_study=estimate_event_study(panel, outcome),
        naive=estimate_naive(panel if treated_panel is None else treated_panel, outcome),
    )
