"""Planning mode: could this evaluation detect the effect? Minimum detectable rate ratio (MDRR)
of the matched difference-in-differences of counts, and the treated people needed to detect a
given reduction (issue 16, part 5).

The estimator (`evaluation.did.estimate_poisson_did`) is a conditional Poisson DiD with person
fixed effects, cluster-robust on the matched set. With whole-period exposures its estimate is
the log of a ratio of ratios of event totals,

    beta_hat = log(T1 / T0) - log(C1 / C0)        (T: treated, C: ATT-weighted controls;
                                                   1: post months, 0: comparison period)

so by the delta method, summing over people (independent between matched sets),

    Var(beta_hat) = phi * (V_T1 + V_T0 + V_C1 + V_C0),   V_g = sum w^2 E[y] / (sum w E[y])^2,

V_g being the Poisson variance of the log of a weighted event total (1 / expected events for
the treated; for k controls per treated person, each weighted 1/k, 1 / (k x the treated's
expected events)). A person's time-constant frailty cancels: it scales their pre and post
counts alike (its variance and the pre-post covariance cancel in the delta method), which is
what the person fixed effects buy. What does not cancel is a person's month-to-month
variation beyond Poisson (spells of illness, several bed days per admission): ``phi`` >= 1,
the variance of the pre/post contrast over its Poisson variance. For Poisson-gamma months
(monthly rate r x frailty nu x gamma noise of shape a) phi = 1 + r E[nu^2] / a exactly; for bed
days (a stay of L days per admission) about E[L^2] / E[L]. Planning from a site's numbers,
phi is an input (default 1: Poisson, optimistic, said so in the output); from a run it is
estimated from the data (`design_from_panel`).

Under a rate ratio rho the treated post events are rho times the expected count without an
effect, so V_T1 grows by 1 / rho; the Wald test the pipeline reports rejects with power

    P(rho) = Phi(|log rho| / se(rho) - z_{1-alpha/2}) + Phi(-|log rho| / se(rho) - z_{1-alpha/2}).

The MDRR is the rho < 1 closest to 1 with P(rho) = power (80%; 5% two-sided): a reduction, as
the business case needs one. Treated people needed: Var is proportional to 1 / n at fixed rates
and matching ratio, so n = n0 Var(rho; n0) ((z_{1-alpha/2} + z_{power}) / log rho)^2.

Reference: with an infinitely long comparison period (V_T0 = V_C0 = 0), phi = 1 and the
variance at rho = 1 this is CohortMethod's `computeMdrr` (Schoenfeld 1983: Var = 1 / (E p (1 - p)),
E events, p = 1 / (1 + k) the treated share); tests/evaluation/test_power.py checks it.

Assumptions (stated in the output): every treated person has the planned pre and post months
(deaths and deregistrations shorten them: from a run, the exposure observed is used); treated
and controls have the same rate in the comparison period and controls' post rate is
``post_change`` x it (no effect); no correlation between a treated person and their controls
beyond what matching on the selection window builds in (positive correlation would make the
real SE smaller: the planner errs on the side of too few detectable effects).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from core.contract import outcome_label

ALPHA = 0.05
POWER = 0.80
TARGET_RATE_RATIO = 0.85  # the 15% reduction the business case asks about
SMALLEST_RATE_RATIO = 1e-3  # below this no reduction is looked for (power need not reach 80%)


@dataclass(frozen=True)
class OutcomeDesign:
    """The precision of the DiD for one outcome: per treated person, the Poisson variance terms
    (``v_*`` = n_treated x V_g) and the dispersion. Without an effect the treated post events are
    ``1 / v_treated_post`` per treated person; an effect rho divides that term by rho."""

    outcome: str
    n_treated: float
    v_treated_post: float
    v_treated_pre: float
    v_control_post: float
    v_control_pre: float
    dispersion: float = 1.0
    dispersion_source: str = "assumed 1 (Poisson)"

    def variance(self, rate_ratio: float = 1.0, n_treated: float | None = None) -> float:
        """Var(log rate ratio) of the DiD under ``rate_ratio``, with ``n_treated`` people."""
        n = self.n_treated if n_treated is None else n_treated
        per_person = (self.v_treated_post / rate_ratio + self.v_treated_pre
                      + self.v_control_post + self.v_control_pre)
        return self.dispersion * per_person / n

    def se(self, rate_ratio: float = 1.0, n_treated: float | None = None) -> float:
        return math.sqrt(self.variance(rate_ratio, n_treated))


def power_at(design: OutcomeDesign, rate_ratio: float, alpha: float = ALPHA,
             n_treated: float | None = None, variance_at: str = "alternative") -> float:
    """Power of the two-sided Wald test at ``rate_ratio`` (both tails). ``variance_at``:
    "alternative" (the SE the estimator would report under that effect; default) or "null"."""
    z = stats.norm.ppf(1 - alpha / 2)
    se = design.se(rate_ratio if variance_at == "alternative" else 1.0, n_treated)
    d = abs(math.log(rate_ratio)) / se
    return float(stats.norm.cdf(d - z) + stats.norm.cdf(-d - z))


def mdrr(design: OutcomeDesign, alpha: float = ALPHA, power: float = POWER,
         variance_at: str = "alternative") -> float:
    """The minimum detectable rate ratio (a reduction, < 1): the largest rho < 1 with power
    ``power``; NaN when no reduction reaches it (too few events: under the alternative the SE
    grows as events vanish)."""
    if not (design.n_treated > 0 and np.isfinite(design.variance())):
        return float("nan")
    if variance_at == "null":  # closed form: the SE does not depend on rho
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
        return float(math.exp(-z * design.se()))

    def gap(log_rho: float) -> float:
        return power_at(design, math.exp(log_rho), alpha) - power

    # power rises from alpha as rho falls from 1, and may fall again for drastic reductions
    # (few events left): the first crossing is the MDRR; scan, then solve
    grid = np.linspace(0.0, math.log(SMALLEST_RATE_RATIO), 400)  # gap(0) = alpha - power < 0
    for before, log_rho in zip(grid[:-1], grid[1:]):
        if gap(log_rho) >= 0:
            return float(math.exp(optimize.brentq(gap, log_rho, before, xtol=1e-12)))
    return float("nan")


def treated_needed(design: OutcomeDesign, rate_ratio: float = TARGET_RATE_RATIO, alpha: float = ALPHA,
                   power: float = POWER, variance_at: str = "alternative") -> float:
    """Treated people needed for ``power`` at ``rate_ratio`` (same rates, matching ratio and
    dispersion): the variance is proportional to 1 / n. The other tail's probability (below
    1e-5 at 80% power) is left out. NaN if the design has no events. ``variance_at``: as
    `power_at`."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    per_person = design.variance(rate_ratio if variance_at == "alternative" else 1.0, n_treated=1.0)
    if not np.isfinite(per_person):
        return float("nan")
    return float(math.ceil(per_person * (z / math.log(rate_ratio)) ** 2))


# --------------------------------------------------------------------------- from site numbers


@dataclass(frozen=True)
class SitePlan:
    """A site's expected numbers (`ltceval plan` flags or file)."""

    treated_per_year: float
    years: float
    rates: dict[str, float]  # events per person-month in the comparison period, per outcome
    matching_ratio: float = 1.0  # controls per treated person
    pre_months: int = 6  # comparison period (rel -12..-7 with the default 6-month selection window)
    post_months: int = 12
    matched_share: float = 1.0  # of treated people who find a control and enter the analysis
    dispersion: dict[str, float] | None = None  # phi per outcome (default 1)
    post_change: dict[str, float] | None = None  # controls' post rate / comparison-period rate

    @property
    def n_treated(self) -> float:
        return self.treated_per_year * self.years * self.matched_share

    def designs(self) -> list[OutcomeDesign]:
        out = []
        for outcome, r in self.rates.items():
            g = (self.post_change or {}).get(outcome, 1.0)
            phi = (self.dispersion or {}).get(outcome)
            k = self.matching_ratio
            out.append(OutcomeDesign(
                outcome=outcome, n_treated=self.n_treated,
                v_treated_post=1 / (r * g * self.post_months), v_treated_pre=1 / (r * self.pre_months),
                v_control_post=1 / (k * r * g * self.post_months), v_control_pre=1 / (k * r * self.pre_months),
                dispersion=1.0 if phi is None else float(phi),
                dispersion_source="assumed 1 (Poisson: optimistic)" if phi is None else "given"))
        return out

    def check(self) -> None:
        """ValueError naming the first input that makes no sense."""
        for name in ("treated_per_year", "years", "matching_ratio", "pre_months", "post_months"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not 0 < self.matched_share <= 1:
            raise ValueError(f"matched_share must be in (0, 1], got {self.matched_share!r}")
        if not self.rates:
            raise ValueError("no outcome rates given (events per person-month)")
        for kind, values, ok, want in (("rate", self.rates, lambda v: v > 0, "a positive number"),
                                       ("dispersion", self.dispersion or {}, lambda v: v >= 1, "at least 1"),
                                       ("post_change", self.post_change or {}, lambda v: v > 0, "a positive number")):
            for o, v in values.items():
                if not (isinstance(v, (int, float)) and math.isfinite(v) and ok(v)):
                    raise ValueError(f"{kind} of {o} must be {want}, got {v!r}")
        extra = set(self.dispersion or {}).union(self.post_change or {}) - set(self.rates)
        if extra:
            raise ValueError(f"dispersion or post_change given for outcomes without a rate: {sorted(extra)}")


# --------------------------------------------------------------------------- from a run's panel


def design_from_panel(panel: pd.DataFrame, outcomes) -> list[OutcomeDesign]:
    """The designs of a prepared evaluation panel (`evaluation.panel.prepare_panel`), estimated
    blind to the treated people's post-period outcomes: their events without an effect are
    their post exposure x their comparison-period rate x the controls' post / comparison rate
    ratio (the DiD's own counterfactual); the dispersion phi comes from the controls alone, as
    the matched-set cluster-robust variance of their log post / comparison rate ratio over its
    Poisson variance (at least 1: fewer than Poisson would be chance). Treated people and
    controls are taken to share phi (matching makes them alike)."""
    # masks over the panel's rows, no copy of it (at 2 million people it is gigabytes)
    period = panel["period"].to_numpy()
    post, pre = period == "post", period == "pre"
    treated = panel["is_treated"].to_numpy() == 1
    w = panel["weight"].to_numpy(dtype=float)
    e = panel["exposure_months"].to_numpy(dtype=float)
    n_treated = int(panel.loc[treated & (pre | post), "unit_id"].nunique())
    clusters = pd.factorize(panel["cluster_id"])[0]
    n_c = int(clusters.max()) + 1 if len(clusters) else 0
    out = []
    for outcome in outcomes:
        y = panel[outcome].to_numpy(dtype=float)

        def total(mask, values):
            return float(values[mask].sum())

        cells = {}
        for name, mask in (("tp", treated & post), ("t0", treated & pre),
                           ("cp", ~treated & post), ("c0", ~treated & pre)):
            cells[name] = dict(y=total(mask, w * y), y2=total(mask, w * w * y), e=total(mask, w * e))
        t0, cp, c0, tp = cells["t0"], cells["cp"], cells["c0"], cells["tp"]
        if min(t0["y"], cp["y"], c0["y"]) <= 0 or n_treated == 0:
            out.append(OutcomeDesign(outcome, n_treated, *(float("inf"),) * 4, float("nan"),
                                     "not estimable: no events in a group or period"))
            continue
        expected_tp = tp["e"] * (t0["y"] / t0["e"]) * (cp["y"] / cp["e"]) / (c0["y"] / c0["e"])
        v_c = {k: cells[k]["y2"] / cells[k]["y"] ** 2 for k in ("cp", "c0")}
        # controls' log(post rate / comparison rate): influence value of each cluster
        ctrl = ~treated & (pre | post)
        infl = np.zeros(n_c)
        for mask, sign, cell in ((ctrl & post, 1.0, cp), (ctrl & pre, -1.0, c0)):
            infl += sign * (np.bincount(clusters[mask], weights=(w * y)[mask], minlength=n_c) / cell["y"]
                            - np.bincount(clusters[mask], weights=(w * e)[mask], minlength=n_c) / cell["e"])
        g = int(np.count_nonzero(np.bincount(clusters[ctrl], minlength=n_c)))
        robust = float(np.sum(infl ** 2)) * (g / (g - 1) if g > 1 else 1.0)
        phi = max(1.0, robust / (v_c["cp"] + v_c["c0"]))
        out.append(OutcomeDesign(
            outcome=outcome, n_treated=n_treated,
            v_treated_post=n_treated / expected_tp, v_treated_pre=n_treated * t0["y2"] / t0["y"] ** 2,
            v_control_post=n_treated * v_c["cp"], v_control_pre=n_treated * v_c["c0"],
            dispersion=phi, dispersion_source="estimated from the controls (matched-set cluster-robust / Poisson)"))
    return out


def treated_per_year(panel: pd.DataFrame) -> float | None:
    """Treated people analysed per year of index months (first to last, inclusive)."""
    if "index_month" not in panel.columns or not panel["index_month"].notna().any():
        return None
    t = panel[panel["is_treated"] == 1]
    months = pd.to_datetime(t["index_month"])
    span = (months.max().year - months.min().year) * 12 + months.max().month - months.min().month + 1
    return t["unit_id"].nunique() / (span / 12)


# --------------------------------------------------------------------------- the table


def plan_table(designs, alpha: float = ALPHA, power: float = POWER,
               target_rate_ratio: float = TARGET_RATE_RATIO, per_year: float | None = None) -> pd.DataFrame:
    """Per outcome: MDRR, the SE at it and under no effect, power at the target, treated people
    needed for the target (and years at ``per_year`` treated people a year), the inputs."""
    rows = []
    for d in designs:
        m = mdrr(d, alpha, power)
        need = treated_needed(d, target_rate_ratio, alpha, power)
        rows.append({
            "outcome": d.outcome, "label": outcome_label(d.outcome),
            "n_treated": d.n_treated, "mdrr": m,
            "se_log_rr_null": d.se() if np.isfinite(d.variance()) else float("nan"),
            "se_log_rr_at_mdrr": d.se(m) if np.isfinite(m) else float("nan"),
            "target_rate_ratio": target_rate_ratio,
            "power_at_target": power_at(d, target_rate_ratio, alpha) if np.isfinite(d.variance()) else float("nan"),
            "treated_needed_for_target": need,
            "years_needed_for_target": need / per_year if per_year and np.isfinite(need) else float("nan"),
            "treated_post_events_expected": d.n_treated / d.v_treated_post if d.v_treated_post > 0 else float("nan"),
            "dispersion": d.dispersion, "dispersion_source": d.dispersion_source,
        })
    return pd.DataFrame(rows)


def mdrr_column(panel: pd.DataFrame, outcomes, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """The report's column: MDRR per outcome of the evaluated (matched) cohort, and the treated
    people needed for a 15% reduction."""
    return plan_table(design_from_panel(panel, outcomes), alpha, power)[
        ["outcome", "mdrr", "treated_needed_for_target", "dispersion"]]


def design_dict(d: OutcomeDesign) -> dict:
    return asdict(d)


# --------------------------------------------------------------------------- site file


SITE_KEYS = {"treated_per_year", "years", "matching_ratio", "pre_months", "post_months", "matched_share", "outcomes"}
OUTCOME_KEYS = {"rate_per_person_year", "dispersion", "post_change"}


def site_plan_from_mapping(doc: dict, known_outcomes) -> SitePlan:
    """A `SitePlan` from a site file's contents (YAML or JSON)::

        treated_per_year: 300
        years: 2
        matching_ratio: 1        # optional (1); pre_months (6), post_months (12), matched_share (1)
        outcomes:
          ae_attendances: 0.7    # events per person a year, or:
          emergency_admissions: {rate_per_person_year: 0.3, dispersion: 1.1, post_change: 0.9}

    Rates are per person a year (the planner works per month: / 12). ValueError naming the
    first key or value at fault."""
    if not isinstance(doc, dict):
        raise ValueError("expected a mapping of keys (treated_per_year, years, outcomes, ...)")
    unknown = set(doc) - SITE_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; expected {sorted(SITE_KEYS)}")
    outcomes = doc.get("outcomes") or {}
    if not isinstance(outcomes, dict):
        raise ValueError("outcomes must map each outcome to its rate per person a year")
    rates, dispersion, post_change = {}, {}, {}
    for o, v in outcomes.items():
        if o not in known_outcomes:
            raise ValueError(f"unknown outcome {o!r}; expected one of {', '.join(known_outcomes)}")
        if isinstance(v, dict):
            bad = set(v) - OUTCOME_KEYS
            if bad:
                raise ValueError(f"outcome {o}: unknown key(s) {sorted(bad)}; expected {sorted(OUTCOME_KEYS)}")
            if "rate_per_person_year" not in v:
                raise ValueError(f"outcome {o}: rate_per_person_year missing")
            rate = v["rate_per_person_year"]
            if "dispersion" in v:
                dispersion[o] = _number(v["dispersion"], f"outcome {o}: dispersion")
            if "post_change" in v:
                post_change[o] = _number(v["post_change"], f"outcome {o}: post_change")
        else:
            rate = v
        rates[o] = _number(rate, f"outcome {o}: rate_per_person_year") / 12
    fields = {k: _number(doc[k], k) for k in SITE_KEYS - {"outcomes"} if k in doc}
    for k in ("treated_per_year", "years"):
        if k not in fields:
            raise ValueError(f"{k} missing")
    plan = SitePlan(rates=rates, dispersion=dispersion, post_change=post_change, **fields)
    plan.check()
    return plan


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} must be a number, got {v!r}")
    return float(v)
