"""Business-case arithmetic: price the DiD changes in utilisation and set them against the
cost of therapy.

Gross saving per treated person-year = -sum_k (absolute change_k per person-year x unit cost_k)
over the costed outcomes. Double counting: an emergency admission is priced at the
non-elective tariff in `unit_costs` (activity `emergency_admission`, else
`emergency_admission_short_stay`: 824 GBP 2024/25), which already pays for the stay, so bed days are NOT
costed by default (they are reported as an outcome). Pass `costed_outcomes` including
`bed_days` to price them at the excess-bed-day cost instead, and then leave admissions out.

Net saving per treated person = gross saving per person-year x mean follow-up years of treated
people (at most 1: the 12-month post period) - therapy cost per course (activity
`iapt_course`, one course per treated person). ROI = net saving / therapy cost (return per
pound spent, after getting the pound back); break-even therapy cost = gross saving per treated
person.

Intervals (95%), two methods, the report says which is used:
- delta method: each outcome's absolute change comes with cluster-level
(matched set) influence values from the DiD fit; the gross saving's influence values are the
unit-cost-weighted sum over outcomes, so correlation between outcomes (the same people, the
same sets) is kept. Unit costs and therapy cost are treated as fixed. Net saving and ROI are
linear in the gross saving, so their intervals follow from it.
- cluster bootstrap (`evaluation.bootstrap.cluster_bootstrap`): matched sets resampled with
  replacement, every costed outcome re-estimated on the same replicate (one Newton step from
  the full-sample estimate, linear in the cohort's size), percentile intervals of
  gross, net, ROI and break-even (default for the report: it makes no linearisation of
  exp(beta) and the ratio estimator; the delta interval is shown beside it as a check).

Unit costs (`prepare_unit_costs`): the versioned `unit_costs` seed, optionally overridden row by
row by a site's local tariff file (CSV: activity, unit_cost_gbp, price_year, source), then
re-based to one price year with the NHS cost inflation index in
`evaluation/data/nhs_cost_inflation_index.csv` (cost x index[target] / index[price year]); the
therapy cost per course can be set directly. `unit_cost_version` hashes the final table so
that a report can say exactly which costs it used.

Projection: per-person figures times a stated annual caseload (treated people a year; by
default the cohort's own average number a year), caseload treated as fixed.

Effect persistence (a stated assumption, 0 by default): the saving per person-year is assumed to
continue for `persistence_years` further years, multiplied by `persistence_decay` each year and
discounted at `discount_rate` (HM Treasury Green Book 3.5%); nothing is extrapolated unless
asked for.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.contract import SEEDS
from core.disclosure import round_count
from core.settings import env_value
from evaluation.did import CountDiDResult
from evaluation.methods.common import Z95

DATA_DIR = Path(__file__).resolve().parent / "data"
PRICE_INDEX_PATH = DATA_DIR / "nhs_cost_inflation_index.csv"
REFERENCE_2016_17_PATH = DATA_DIR / "unit_costs_reference_2016_17.csv"
DEFAULT_PRICE_YEAR = "2024/25"
GREEN_BOOK_DISCOUNT = 0.035

# activity names in `unit_costs` for each outcome, first match wins (the seed may hold the
# short-stay and long-stay non-elective tariffs separately; without a length-of-stay model
# admissions are priced at the short-stay figure)
OUTCOME_ACTIVITIES = {
    "ae_attendances": ("ae_attendance",),
    "emergency_admissions": ("emergency_admission", "emergency_admission_short_stay"),
    "bed_days": ("excess_bed_day",),
    "outpatient_attendances": ("outpatient_attendance",),
    "gp_appointments": ("gp_appointment",),
}
THERAPY_ACTIVITY = "iapt_course"
DEFAULT_COSTED_OUTCOMES = (
    "ae_attendances", "emergency_admissions", "outpatient_attendances", "gp_appointments",
)


def unit_cost_lookup(unit_costs: pd.DataFrame) -> pd.DataFrame:
    """Index the `unit_costs` seed by activity, checking its columns and uniqueness."""
    need = {"activity", "unit_cost_gbp", "price_year", "source"}
    if not need <= set(unit_costs.columns):
        raise ValueError(f"unit_costs needs columns {sorted(need)}")
    uc = unit_costs.copy()
    if uc["activity"].duplicated().any():
        raise ValueError("unit_costs has more than one row for an activity")
    uc["unit_cost_gbp"] = uc["unit_cost_gbp"].astype(float)
    return uc.set_index("activity")


def activity_for(outcome: str, uc: pd.DataFrame) -> str:
    """The `unit_costs` activity that prices an outcome (uc indexed by activity)."""
    for act in OUTCOME_ACTIVITIES[outcome]:
        if act in uc.index:
            return act
    raise ValueError(f"unit_costs lacks an activity for {outcome}: one of {OUTCOME_ACTIVITIES[outcome]}")


def unit_costs_by_outcome(unit_costs: pd.DataFrame,
                          outcomes=DEFAULT_COSTED_OUTCOMES) -> dict[str, float]:
    uc = unit_cost_lookup(unit_costs)
    return {o: float(uc.loc[activity_for(o, uc), "unit_cost_gbp"]) for o in outcomes}


# --------------------------------------------------------------------------- unit costs


def normalise_price_year(value) -> str:
    """'2024/25', '2024-25', '2024/2025' -> '2024/25'. A bare calendar year Y (a cost 'quoted in
    Y') is taken as the financial year starting in April of Y, in which 9 of its 12 months fall."""
    s = str(value).strip()
    m = re.fullmatch(r"(\d{4})\s*[/-]\s*(\d{2}|\d{4})", s)
    if m:
        y = int(m.group(1))
        return f"{y}/{(y + 1) % 100:02d}"
    m = re.fullmatch(r"(\d{4})", s)
    if m:
        y = int(m.group(1))
        return f"{y}/{(y + 1) % 100:02d}"
    raise ValueError(f"not a price year: {value!r}")


def load_price_index(path: Path | str | None = None) -> pd.DataFrame:
    """The price index table (financial_year, index_value, source, status), checked."""
    idx = pd.read_csv(path or PRICE_INDEX_PATH, dtype={"financial_year": str})
    need = {"financial_year", "index_value", "source"}
    if not need <= set(idx.columns):
        raise ValueError(f"price index needs columns {sorted(need)}")
    idx["financial_year"] = idx["financial_year"].map(normalise_price_year)
    if idx["financial_year"].duplicated().any():
        raise ValueError("price index has more than one row for a year")
    if (idx["index_value"].astype(float) <= 0).any():
        raise ValueError("price index values must be positive")
    return idx


def rebase_unit_costs(unit_costs: pd.DataFrame, target_year: str = DEFAULT_PRICE_YEAR,
                      price_index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Re-base every cost to `target_year` prices: cost x index[target] / index[price year].
    Keeps the published figure and year in `original_unit_cost_gbp`, `original_price_year`."""
    idx = load_price_index() if price_index is None else price_index
    values = dict(zip(idx["financial_year"], idx["index_value"].astype(float)))
    target = normalise_price_year(target_year)
    if target not in values:
        raise ValueError(f"price index has no value for {target}")
    uc = unit_costs.copy()
    if "original_unit_cost_gbp" not in uc:
        uc["original_unit_cost_gbp"] = uc["unit_cost_gbp"].astype(float)
        uc["original_price_year"] = uc["price_year"].astype(str)
    years = uc["original_price_year"].map(normalise_price_year)
    missing = sorted(set(years) - set(values))
    if missing:
        raise ValueError(f"price index has no value for {missing}")
    uc["uplift_factor"] = [values[target] / values[y] for y in years]
    uc["unit_cost_gbp"] = uc["original_unit_cost_gbp"] * uc["uplift_factor"]
    uc["price_year"] = target
    return uc


def read_local_tariff(path: Path | str) -> pd.DataFrame:
    """A site's local tariff file: CSV with activity, unit_cost_gbp, price_year, source."""
    t = pd.read_csv(path, dtype={"price_year": str})
    need = ["activity", "unit_cost_gbp", "price_year", "source"]
    if not set(need) <= set(t.columns):
        raise ValueError(f"local tariff {path} needs columns {need}")
    t = t[need].copy()
    if t["activity"].duplicated().any():
        raise ValueError(f"local tariff {path} has more than one row for an activity")
    t["unit_cost_gbp"] = pd.to_numeric(t["unit_cost_gbp"], errors="raise").astype(float)
    if (t["unit_cost_gbp"] < 0).any():
        raise ValueError(f"local tariff {path} has negative costs")
    t["price_year"].map(normalise_price_year)  # raises on a bad year
    t["source"] = "local tariff: " + t["source"].astype(str)
    return t


def override_unit_costs(unit_costs: pd.DataFrame, overrides: pd.DataFrame) -> pd.DataFrame:
    """Replace rows of `unit_costs` by activity with `overrides` (and add new activities)."""
    base = unit_costs[["activity", "unit_cost_gbp", "price_year", "source"]]
    keep = base[~base["activity"].isin(overrides["activity"])]
    out = pd.concat([keep, overrides[["activity", "unit_cost_gbp", "price_year", "source"]]],
                    ignore_index=True)
    out["unit_cost_gbp"] = out["unit_cost_gbp"].astype(float)
    out["price_year"] = out["price_year"].astype(str)
    return out


def unit_cost_version(unit_costs: pd.DataFrame) -> str:
    """A short content hash of a unit-cost table (activity, cost, year, source)."""
    t = unit_costs[["activity", "unit_cost_gbp", "price_year", "source"]].sort_values("activity")
    text = t.to_csv(index=False, float_format="%.6f")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CostingConfig:
    """Costing choices; `from_env` reads them from LTCEVAL_* variables (the DAG's route)."""

    price_year: str | None = DEFAULT_PRICE_YEAR  # None: costs as published, not re-based
    local_tariff: str | None = None  # CSV path
    therapy_cost_gbp: float | None = None  # per course; None: the `iapt_course` row
    therapy_price_year: str | None = None  # price year of therapy_cost_gbp (default: price_year)
    annual_caseload: int | None = None  # treated people a year; None: the cohort's own rate
    interval_method: str = "bootstrap"  # or "delta"
    bootstrap_reps: int = 499
    bootstrap_seed: int = SEEDS.bootstrap
    persistence_years: int = 0
    persistence_decay: float = 0.5
    discount_rate: float = GREEN_BOOK_DISCOUNT
    costed_outcomes: tuple[str, ...] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.costed_outcomes is None:
            object.__setattr__(self, "costed_outcomes", DEFAULT_COSTED_OUTCOMES)
        if self.interval_method not in ("bootstrap", "delta"):
            raise ValueError("interval_method must be 'bootstrap' or 'delta'")

    @classmethod
    def from_env(cls, env=None) -> "CostingConfig":
        def get(name, conv, default):
            v = env_value(f"LTCEVAL_{name}", env)
            return default if v is None else conv(v)

        py = env_value("LTCEVAL_PRICE_YEAR", env) or DEFAULT_PRICE_YEAR
        return cls(
            price_year=None if py.lower() in ("none", "as-published") else py,
            local_tariff=get("LOCAL_TARIFF", str, None),
            therapy_cost_gbp=get("THERAPY_COST_GBP", float, None),
            therapy_price_year=get("THERAPY_PRICE_YEAR", str, None),
            annual_caseload=get("ANNUAL_CASELOAD", int, None),
            interval_method=get("INTERVAL_METHOD", str, "bootstrap"),
            bootstrap_reps=get("BOOTSTRAP_REPS", int, 499),
            persistence_years=get("PERSISTENCE_YEARS", int, 0),
            persistence_decay=get("PERSISTENCE_DECAY", float, 0.5),
        )


_REFIT_TEXT = {"one_step": "one Newton step from the full-sample estimate",
               "exact": "refitted to convergence"}


def prepare_unit_costs(base: pd.DataFrame, config: CostingConfig,
                       price_index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seed -> local tariff overrides -> therapy cost -> re-based to config.price_year."""
    uc = base[["activity", "unit_cost_gbp", "price_year", "source"]].copy()
    uc["price_year"] = uc["price_year"].astype(str)
    if config.local_tariff:
        uc = override_unit_costs(uc, read_local_tariff(config.local_tariff))
    if config.therapy_cost_gbp is not None:
        year = config.therapy_price_year or config.price_year or DEFAULT_PRICE_YEAR
        uc = override_unit_costs(uc, pd.DataFrame([{
            "activity": THERAPY_ACTIVITY, "unit_cost_gbp": float(config.therapy_cost_gbp),
            "price_year": year, "source": "therapy cost per course set for this evaluation"}]))
    if config.price_year:
        uc = rebase_unit_costs(uc, config.price_year, price_index)
    return uc


def persistence_factor(years: int, decay: float, discount_rate: float = GREEN_BOOK_DISCOUNT) -> float:
    """Extra years of saving, in units of the first year's: sum_k decay^k / (1 + r)^k."""
    return float(sum(decay**k / (1 + discount_rate) ** k for k in range(1, int(years) + 1)))


@dataclass(frozen=True, eq=False)
class CostingResult:
    lines: pd.DataFrame  # one row per costed outcome
    gross_saving_per_py: float
    gross_saving_per_py_ci: tuple[float, float]
    mean_followup_years: float
    gross_saving_per_person: float
    gross_saving_per_person_ci: tuple[float, float]
    therapy_cost_per_person: float
    net_saving_per_person: float
    net_saving_per_person_ci: tuple[float, float]
    roi: float
    roi_ci: tuple[float, float]
    break_even_therapy_cost: float
    n_treated: int
    cohort_gross_saving: float
    cohort_gross_saving_ci: tuple[float, float]
    cohort_therapy_cost: float
    cohort_net_saving: float
    cohort_net_saving_ci: tuple[float, float]
    costed_outcomes: tuple[str, ...]
    therapy_cost_source: str
    interval_method: str = (
        "95% intervals by the delta method on matched-set-clustered influence functions "
        "(joint across outcomes); unit costs treated as fixed."
    )
    interval_kind: str = "delta"  # "delta" or "bootstrap"
    delta_net_saving_per_person_ci: tuple[float, float] = (float("nan"), float("nan"))
    annual_caseload: int | None = None
    annual_caseload_basis: str = ""
    caseload_net_saving: float = float("nan")
    caseload_net_saving_ci: tuple[float, float] = (float("nan"), float("nan"))
    caseload_gross_saving: float = float("nan")
    caseload_gross_saving_ci: tuple[float, float] = (float("nan"), float("nan"))
    persistence_years: int = 0
    persistence_decay: float = 0.5
    persistence_factor: float = 0.0
    unit_cost_version: str = ""

    @property
    def break_even_ci(self) -> tuple[float, float]:
        return self.gross_saving_per_person_ci

    def tidy(self) -> pd.DataFrame:
        rows = [
            ("gross_saving_per_treated_person_year", self.gross_saving_per_py,
             *self.gross_saving_per_py_ci),
            ("gross_saving_per_treated_person", self.gross_saving_per_person,
             *self.gross_saving_per_person_ci),
            ("therapy_cost_per_treated_person", self.therapy_cost_per_person,
             self.therapy_cost_per_person, self.therapy_cost_per_person),
            ("net_saving_per_treated_person", self.net_saving_per_person,
             *self.net_saving_per_person_ci),
            ("roi_net_per_gbp_spent", self.roi, *self.roi_ci),
            ("break_even_therapy_cost_per_person", self.break_even_therapy_cost,
             *self.break_even_ci),
            ("cohort_gross_saving", self.cohort_gross_saving, *self.cohort_gross_saving_ci),
            ("cohort_therapy_cost", self.cohort_therapy_cost, self.cohort_therapy_cost,
             self.cohort_therapy_cost),
            ("cohort_net_saving", self.cohort_net_saving, *self.cohort_net_saving_ci),
        ]
        if self.annual_caseload:
            rows += [
                ("annual_caseload_treated_persons", float(self.annual_caseload), np.nan, np.nan),
                ("caseload_gross_saving_per_year", self.caseload_gross_saving,
                 *self.caseload_gross_saving_ci),
                ("caseload_therapy_cost_per_year",
                 self.therapy_cost_per_person * self.annual_caseload,
                 self.therapy_cost_per_person * self.annual_caseload,
                 self.therapy_cost_per_person * self.annual_caseload),
                ("caseload_net_saving_per_year", self.caseload_net_saving,
                 *self.caseload_net_saving_ci),
            ]
        t = pd.DataFrame(rows, columns=["quantity", "estimate", "lo95", "hi95"])
        t["interval_method"] = self.interval_kind
        return t


def _pct(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(x, [2.5, 97.5])
    return (float(lo), float(hi))


def estimate_costs(
    results: dict[str, CountDiDResult],
    unit_costs: pd.DataFrame,
    costed_outcomes=DEFAULT_COSTED_OUTCOMES,
    *,
    bootstrap=None,
    annual_caseload: int | None = None,
    annual_caseload_basis: str = "",
    persistence_years: int = 0,
    persistence_decay: float = 0.5,
    discount_rate: float = GREEN_BOOK_DISCOUNT,
    followup_years: float | None = None,
) -> CostingResult:
    """Price the DiD absolute changes; see the module docstring for the definitions.

    `bootstrap`: an `evaluation.bootstrap.BootstrapDraws` over (at least) the costed outcomes;
    given, the intervals are its percentiles and the delta interval is kept for comparison.
    `followup_years` overrides the observed mean follow-up (e.g. to annualise a 6-month
    window's estimate)."""
    costed_outcomes = tuple(costed_outcomes)
    if "bed_days" in costed_outcomes and "emergency_admissions" in costed_outcomes:
        raise ValueError("cost admissions or bed days, not both (double counting)")
    uc = unit_cost_lookup(unit_costs)
    costs = unit_costs_by_outcome(unit_costs, costed_outcomes)
    if THERAPY_ACTIVITY not in uc.index:
        raise ValueError(f"unit_costs lacks {THERAPY_ACTIVITY!r}")
    therapy = float(uc.loc[THERAPY_ACTIVITY, "unit_cost_gbp"])

    lines, infl = [], []
    for o in costed_outcomes:
        r = results[o]
        c = costs[o]
        act = activity_for(o, uc)
        lines.append({
            "outcome": o,
            "activity": act,
            "unit_cost_gbp": c,
            "price_year": uc.loc[act, "price_year"],
            "source": uc.loc[act, "source"],
            "abs_change_per_person_year": r.abs_change_per_py,
            "abs_change_lo95": r.abs_change_ci[0],
            "abs_change_hi95": r.abs_change_ci[1],
            "saving_gbp_per_person_year": -r.abs_change_per_py * c,
            "saving_lo95": -r.abs_change_ci[1] * c,
            "saving_hi95": -r.abs_change_ci[0] * c,
        })
        infl.append(-c * r.abs_change_influence)
    if_gross = pd.concat(infl, axis=1).fillna(0.0).sum(axis=1)
    n_clusters = len(if_gross)  # matched sets; sets that share a person are one cluster
    se_py = float(np.sqrt(np.sum(if_gross**2) * n_clusters / max(n_clusters - 1, 1)))
    gross_py = float(sum(l["saving_gbp_per_person_year"] for l in lines))
    n_treated = int(results[costed_outcomes[0]].n_treated)
    person_years = results[costed_outcomes[0]].treated_post_person_years
    fu = min(float(person_years) / n_treated, 1.0) if n_treated else 0.0
    if followup_years is not None:
        fu = float(followup_years)
    pf = persistence_factor(persistence_years, persistence_decay, discount_rate)
    years = fu + pf  # first-year follow-up plus assumed persistence
    gross_pp, se_pp = gross_py * years, se_py * years
    net = gross_pp - therapy
    ci = lambda est, se: (est - Z95 * se, est + Z95 * se)  # noqa: E731
    delta_gross_py_ci = ci(gross_py, se_py)
    delta_gross_pp_ci = ci(gross_pp, se_pp)
    delta_net_ci = ci(net, se_pp)
    kind = "delta"
    method = ("95% intervals by the delta method on matched-set-clustered influence functions "
              "(joint across outcomes); unit costs treated as fixed.")
    gross_py_ci, gross_pp_ci, net_ci = delta_gross_py_ci, delta_gross_pp_ci, delta_net_ci
    if bootstrap is not None:
        ab = bootstrap.abs_change_py[list(costed_outcomes)].to_numpy()
        cvec = np.array([costs[o] for o in costed_outcomes])
        g_py_b = -(ab * cvec).sum(axis=1)
        fu_b = (np.full(len(g_py_b), fu) if followup_years is not None
                else np.asarray(bootstrap.followup_years))
        g_pp_b = g_py_b * (fu_b + pf)
        gross_py_ci, gross_pp_ci = _pct(g_py_b), _pct(g_pp_b)
        net_ci = _pct(g_pp_b - therapy)
        n_bad = int((~np.isfinite(g_py_b)).sum())
        kind = "bootstrap"
        method = (f"95% intervals by cluster bootstrap: {bootstrap.reps} replicates resampling "
                  f"about {round_count(bootstrap.n_sets)} clusters of matched sets (sets that share a person are one "
                  f"cluster) with replacement, every costed outcome re-estimated on the same "
                  f"replicate ({_REFIT_TEXT.get(bootstrap.refit, bootstrap.refit)}; percentile intervals"
                  f"{f'; {n_bad} replicates not estimable, left out' if n_bad else ''}); unit "
                  f"costs treated as fixed. Delta-method interval of the net saving for "
                  f"comparison: {delta_net_ci[0]:,.0f} to {delta_net_ci[1]:,.0f} GBP.")
    roi = net / therapy
    cohort = lambda t: tuple(x * n_treated for x in t)  # noqa: E731
    cl = int(annual_caseload) if annual_caseload else None
    return CostingResult(
        lines=pd.DataFrame(lines),
        gross_saving_per_py=gross_py,
        gross_saving_per_py_ci=gross_py_ci,
        mean_followup_years=fu,
        gross_saving_per_person=gross_pp,
        gross_saving_per_person_ci=gross_pp_ci,
        therapy_cost_per_person=therapy,
        net_saving_per_person=net,
        net_saving_per_person_ci=net_ci,
        roi=roi,
        roi_ci=(net_ci[0] / therapy, net_ci[1] / therapy),
        break_even_therapy_cost=gross_pp,
        n_treated=n_treated,
        cohort_gross_saving=gross_pp * n_treated,
        cohort_gross_saving_ci=cohort(gross_pp_ci),
        cohort_therapy_cost=therapy * n_treated,
        cohort_net_saving=net * n_treated,
        cohort_net_saving_ci=cohort(net_ci),
        costed_outcomes=costed_outcomes,
        therapy_cost_source=f"{uc.loc[THERAPY_ACTIVITY, 'source']} ({uc.loc[THERAPY_ACTIVITY, 'price_year']})",
        interval_method=method,
        interval_kind=kind,
        delta_net_saving_per_person_ci=delta_net_ci,
        annual_caseload=cl,
        annual_caseload_basis=annual_caseload_basis,
        caseload_net_saving=net * cl if cl else float("nan"),
        caseload_net_saving_ci=tuple(x * cl for x in net_ci) if cl else (np.nan, np.nan),
        caseload_gross_saving=gross_pp * cl if cl else float("nan"),
        caseload_gross_saving_ci=tuple(x * cl for x in gross_pp_ci) if cl else (np.nan, np.nan),
        persistence_years=int(persistence_years),
        persistence_decay=float(persistence_decay),
        persistence_factor=pf,
        unit_cost_version=unit_cost_version(unit_costs),
    )
