"""Propensity-score matching of a user's table (``ltceval match``): the table's columns checked
and coerced, ``evaluation.methods.matching.match`` run on it, and the JSON document of counts,
balance before and after, and the matched ATT. Errors are one line naming the file and column.

Its defaults are the pipeline's matching (``dbt_project/dbt_project.yml`` vars: ratio,
caliper, refinement and its target |SMD|), read from that file so they cannot drift apart; and
it judges balance by the pipeline's diagnostics thresholds (``evaluation.diagnostics``):
``balance_warnings`` in the JSON (and a warning on standard error) name the covariates whose
|SMD| after matching is at or above 0.1 or whose variance ratio is outside 0.5-2.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.contract import SEEDS
from core.errors import LtcevalError
from core.dbt import matching_defaults
from evaluation.diagnostics import THRESHOLDS
from core.tables import read_table, require_columns
from evaluation.methods.common import json_safe
from evaluation.methods.matching import match, matched_att


_DEFAULTS = matching_defaults()


@dataclass(frozen=True)
class MatchSettings:
    treatment: str
    covariates: tuple[str, ...] = ()  # empty: every numeric column not otherwise named
    exact: tuple[str, ...] = ()
    group: str | None = None
    id: str | None = None
    ratio: int = _DEFAULTS["ratio"]
    caliper: float = _DEFAULTS["caliper"]  # SDs of the logit of the score; 0 = none
    refine: bool = _DEFAULTS["refine"]
    refine_target_smd: float = _DEFAULTS["refine_target_smd"]  # 0: until no swap helps
    outcome: str | None = None
    seed: int = SEEDS.matching


@dataclass(frozen=True)
class TableMatch:
    document: dict  # what ``ltceval match --json`` writes
    n_treated: int
    n_matched_treated: int
    att: dict | None  # the matched ATT as estimated (NaN kept), None without an outcome


def match_table(path: Path, s: MatchSettings) -> TableMatch:
    """Read ``path`` (CSV or Parquet), check and coerce its columns, match, summarise."""
    path = Path(path)
    df = read_table(path, "data file")
    exact, group, unit = list(s.exact), s.group, s.id
    named = [s.treatment, *s.covariates, *exact, *([s.outcome] if s.outcome else []),
             *([group] if group else []), *([unit] if unit else [])]
    require_columns(df, named, f"data file {path}")
    treat = df[s.treatment]
    if pd.api.types.is_bool_dtype(treat):
        df[s.treatment] = treat.astype(int)
    elif not set(treat.dropna().unique()) <= {0, 1}:
        bad = [v for v in treat.dropna().unique() if v not in (0, 1)][:3]
        raise LtcevalError(f"data file {path}: treatment column {s.treatment!r} must be 0/1, found {bad}")
    n_treated = int((df[s.treatment] == 1).sum())
    if n_treated == 0:
        raise LtcevalError(f"data file {path}: no treated rows ({s.treatment} = 1)")
    if int((df[s.treatment] == 0).sum()) == 0:
        raise LtcevalError(f"data file {path}: no control rows ({s.treatment} = 0)")
    not_covariate = {s.treatment, s.outcome, group, unit, *exact}
    covariates = list(s.covariates) or [
        c for c in df.columns
        if c not in not_covariate and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    if not covariates:
        raise LtcevalError(f"data file {path}: no numeric covariates; name them with --covariates")
    for c in [*covariates, *([s.outcome] if s.outcome else [])]:
        if pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].astype(int)
        elif not pd.api.types.is_numeric_dtype(df[c]):
            example = df[c].dropna().astype(str).head(1).tolist()
            what = "outcome" if c == s.outcome else "covariate"
            raise LtcevalError(f"data file {path}: {what} {c!r} is not numeric (e.g. {example[0]!r})"
                               if example else f"data file {path}: {what} {c!r} has no values")
    n_rows = len(df)
    if s.outcome:
        df = df[df[s.outcome].notna()]
    caliper = s.caliper if s.caliper > 0 else None
    try:
        res = match(df, s.treatment, covariates, exact=exact or None, ratio=s.ratio, caliper=caliper,
                    group=group, id_col=unit, seed=s.seed, refine=s.refine, refine_target_smd=s.refine_target_smd)
    except (ValueError, KeyError, ArithmeticError) as e:
        raise LtcevalError(f"data file {path}: matching failed ({str(e).strip().splitlines()[0][:200]})") from None
    except Exception as e:  # the propensity model failing on these data: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise LtcevalError(f"data file {path}: matching failed ({type(e).__name__}: {first})") from None

    bal = res.balance
    balance = []
    for cov, g in bal.groupby("covariate", sort=False):
        entry = {"covariate": cov}
        for _, r in g.iterrows():
            entry[r["stage"]] = {k: json_safe(r[k]) for k in ("mean_treated", "mean_control", "smd",
                                                              "variance_ratio", "n_treated", "n_control")}
        entry["sd_pooled_before"] = json_safe(g["sd_pooled"].iloc[0])
        balance.append(entry)
    after = bal[(bal["stage"] == "after") & (bal["covariate"] != "propensity_logit")]
    att = matched_att(res.matched, s.treatment, s.outcome) if s.outcome else None
    doc = {
        "data": str(path),
        "rows": n_rows,
        "rows_without_outcome_dropped": n_rows - len(df),
        "settings": {"treatment": s.treatment, "covariates": covariates, "exact": exact, "group": group,
                     "id": unit, "ratio": s.ratio, "caliper_sd_logit": caliper,
                     "refine": s.refine, "refine_target_smd": s.refine_target_smd if s.refine else None,
                     "seed": s.seed, "outcome": s.outcome},
        "smd_denominator": "pooled SD before matching, sqrt((var_treated + var_control) / 2), for both stages",
        "caliper_width_logit": json_safe(res.info["caliper_width_logit"]),
        "propensity_coefficients": json_safe(res.info["coefficients"]),
        "counts": json_safe(res.counts.to_dict("records")),
        "balance": balance,
        "max_abs_smd_after": json_safe(float(after["smd"].abs().max())) if len(after) else None,
        "balance_thresholds": {"max_abs_smd": THRESHOLDS.max_abs_smd,
                               "variance_ratio": [THRESHOLDS.variance_ratio_low, THRESHOLDS.variance_ratio_high],
                               "reasons": {k: THRESHOLDS.reasons[k] for k in ("max_abs_smd", "variance_ratio")}},
        "balance_warnings": balance_warnings(bal),
        "equipoise": json_safe(res.info["equipoise"]),
        "att": json_safe(att) if att else None,
    }
    return TableMatch(doc, n_treated, int((res.matched[s.treatment] == 1).sum()), att)


def balance_warnings(balance: pd.DataFrame) -> list[dict]:
    """Balance after matching judged by the pipeline's gates (evaluation.diagnostics): one entry
    per failed check, naming the covariates (the propensity logit included, as in mart_balance)."""
    after = balance[balance["stage"] == "after"]
    out = []
    smd = after[after["smd"].abs() >= THRESHOLDS.max_abs_smd]
    if len(smd):
        out.append({"check": "max_abs_smd", "threshold": f"|SMD| below {THRESHOLDS.max_abs_smd:g}",
                    "covariates": [{"covariate": c, "smd": json_safe(v)} for c, v in zip(smd["covariate"], smd["smd"])]})
    vr = after["variance_ratio"]
    bad = after[vr.notna() & ((vr < THRESHOLDS.variance_ratio_low) | (vr > THRESHOLDS.variance_ratio_high))]
    if len(bad):
        out.append({"check": "variance_ratio",
                    "threshold": f"within {THRESHOLDS.variance_ratio_low:g}-{THRESHOLDS.variance_ratio_high:g}",
                    "covariates": [{"covariate": c, "variance_ratio": json_safe(v)}
                                   for c, v in zip(bad["covariate"], bad["variance_ratio"])]})
    return out


def warning_text(warnings: list[dict]) -> str:
    """One line per failed balance check, for standard error."""
    lines = []
    for w in warnings:
        key = "smd" if w["check"] == "max_abs_smd" else "variance_ratio"
        named = ", ".join(f"{c['covariate']} {c[key]:.3g}" for c in w["covariates"])
        what = "|SMD| after matching" if key == "smd" else "variance ratio after matching"
        lines.append(f"balance not achieved: {what} fails the threshold ({w['threshold']}) for {named}")
    return "\n".join(lines)
