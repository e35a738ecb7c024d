"""Matplotlib figures for the report (Agg backend; no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.contract import outcome_label  # noqa: E402
from core.figures import fig_to_data_uri  # noqa: E402,F401  (the report's figures: one definition)
from evaluation.reporting.formatting import gbp  # noqa: E402


def plot_event_study(result, ax=None):
    """Rate ratio (treated vs matched controls, relative to the reference month) by relative
    month; the selection window (shaded amber) is where referral follows a spell of high use."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    c = result.coefs
    colours = c["period"].map({"pre": "#4d4d4d", "selection": "#b36b00", "transition": "#999999",
                               "post": "#005eb8"})
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axvspan(-0.5, 0.5, color="#eeeeee", zorder=0)
    sel = c[c["period"] == "selection"]
    if len(sel):
        ax.axvspan(sel["first_month"].min() - 0.5, sel["last_month"].max() + 0.5,
                   color="#fff1dc", zorder=0)
    ax.vlines(c["rel_month"], c["lo95"], c["hi95"], colors=colours, lw=1.4)
    ax.scatter(c["rel_month"], c["rate_ratio"], c=colours, s=18, zorder=3)
    ax.set_yscale("log")
    ref = c.loc[c["reference"]].iloc[0]
    ref_txt = (f"{int(ref['first_month'])}" if ref["first_month"] == ref["last_month"]
               else f"{int(ref['first_month'])} to {int(ref['last_month'])}")
    bins = "" if result.bin_months == 1 else f", {result.bin_months}-month bins"
    shaded = "; amber = selection window, not in the DiD" if len(sel) else ""
    ax.set_xlabel(f"Months relative to index month (reference {ref_txt}{bins}; grey = transition"
                  f"{shaded})", fontsize=8)
    ax.set_ylabel("Rate ratio (95% CI)")
    p = "not estimable" if np.isnan(result.pretrend_p) else f"{result.pretrend_p:.2f}"
    ax.set_title(f"{outcome_label(result.outcome)}: pre-trend p = {p}",
                 fontsize=10)
    if c["rate_ratio"].notna().sum() <= 1:
        ax.text(0.5, 0.5, "not estimable: too few events", transform=ax.transAxes, ha="center")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.figure.tight_layout()
    return ax


def plot_love(balance: pd.DataFrame, threshold: float = 0.1, ax=None):
    """Love plot: absolute standardised mean difference by covariate, before and after matching;
    covariates shown but not matched on (column matched_on false) get open markers."""
    b = balance.copy()
    b["abs_smd"] = b["smd"].astype(float).abs()
    b["not_matched_on"] = ~b["matched_on"].astype(bool) if "matched_on" in b else False
    b["covariate"] = np.where(b["not_matched_on"], b["covariate"] + " (not matched on)", b["covariate"])
    wide = b.pivot_table(index="covariate", columns="stage", values="abs_smd", aggfunc="first")
    order = wide.get("before", wide.iloc[:, 0]).sort_values().index
    wide = wide.loc[order]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.28 * len(wide) + 1.2))
    ys = np.arange(len(wide))
    styles = {"before": ("o", "#999999", "Before matching"), "after": ("s", "#005eb8", "After matching")}
    open_ = b.groupby("covariate")["not_matched_on"].first().reindex(wide.index).to_numpy(dtype=bool)
    for stage, (marker, colour, label) in styles.items():
        if stage in wide:
            ax.scatter(wide[stage][~open_], ys[~open_], marker=marker, color=colour, label=label, zorder=3)
            if open_.any():
                ax.scatter(wide[stage][open_], ys[open_], marker=marker, facecolors="none",
                           edgecolors=colour, zorder=3)
    ax.axvline(threshold, color="#d5281b", ls="--", lw=1, label=f"|SMD| = {threshold}")
    ax.set_yticks(ys)
    ax.set_yticklabels(wide.index, fontsize=8)
    ax.set_xlabel("Absolute standardised mean difference")
    ax.legend(fontsize=8, loc="lower right")
    ax.figure.tight_layout()
    return ax


def _gbp_axis(ax, axis="x"):
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: gbp(v))
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(fmt)


def plot_attrition(attrition: pd.DataFrame, ax=None):
    """Attrition flow: people remaining at each step (published, rounded counts; * hidden)."""
    a = attrition.sort_values("step_order").copy()
    a["label"] = a["step"].astype(str)
    if "cohort" in a:
        a["label"] = a["cohort"].astype(str) + ": " + a["label"]
    vals = [v if not isinstance(v, str) else np.nan for v in a["n_persons"]]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.6, 0.32 * len(a) + 1.0))
    y = np.arange(len(a))[::-1]
    colours = ["#005eb8" if str(c) == "treated" else "#768692"
               for c in a.get("cohort", pd.Series(["treated"] * len(a)))]
    ax.barh(y, vals, color=colours)
    ax.set_xscale("log")
    finite = [v for v in vals if np.isfinite(v) and v > 0]
    ax.set_xlim(1, 8 * max(finite) if finite else 10)
    for yi, v, raw in zip(y, vals, a["n_persons"]):
        ax.text(v if np.isfinite(v) and v > 0 else 1, yi, f" {raw:,}" if not isinstance(raw, str) else " *",
                va="center", fontsize=7)
    ax.set_yticks(y)
    import textwrap
    ax.set_yticklabels([textwrap.fill(x, 48) for x in a["label"]], fontsize=7)
    ax.set_xlabel("People (log scale; rounded to 5, 1-7 shown as *)", fontsize=8)
    ax.set_title("From referrals to the matched cohort", fontsize=10)
    ax.figure.tight_layout()
    return ax


def plot_naive_vs_did(table: pd.DataFrame, ax=None):
    """Per outcome: NAIVE before/after % change vs matched DiD % change (rate ratio - 1)."""
    t = table.reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.6))
    y = np.arange(len(t))[::-1]
    naive = 100 * t["naive_pct_change"].astype(float)
    did = 100 * (t["did_rate_ratio"].astype(float) - 1)
    lo = 100 * (t["did_rate_ratio_lo95"].astype(float) - 1)
    hi = 100 * (t["did_rate_ratio_hi95"].astype(float) - 1)
    ax.axvline(0, color="black", lw=0.8)
    ax.scatter(naive, y + 0.15, marker="D", color="#ed8b00", label="NAIVE before/after (biased)",
               zorder=3)
    ax.errorbar(did, y - 0.15, xerr=[did - lo, hi - did], fmt="o", color="#005eb8",
                label="Matched DiD (95% CI)", zorder=3)
    ax.set_yticks(y)
    ax.set_yticklabels([outcome_label(o) for o in t["outcome"]], fontsize=8)
    ax.set_xlabel("Change in use after the index month (%)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("NAIVE before/after vs matched difference-in-differences", fontsize=10)
    ax.figure.tight_layout()
    return ax


def plot_waterfall(lines: pd.DataFrame, followup_years: float, therapy_cost: float,
                   persistence_factor: float = 0.0, ax=None):
    """Savings waterfall per treated person: saving by activity, therapy cost, net."""
    steps = [(outcome_label(r.outcome),
              r.saving_gbp_per_person_year * (followup_years + persistence_factor))
             for r in lines.itertuples()]
    steps.append(("Therapy cost", -therapy_cost))
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.6))
    cum = 0.0
    for i, (label, v) in enumerate(steps):
        colour = "#007f3b" if v >= 0 else "#d5281b"
        ax.bar(i, v, bottom=cum, color=colour)
        ax.text(i, cum + v + (0 if v >= 0 else 0), gbp(v),
                ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
        cum += v
    ax.bar(len(steps), cum, color="#005eb8")
    ax.text(len(steps), cum, gbp(cum), ha="center",
            va="bottom" if cum >= 0 else "top", fontsize=8, fontweight="bold")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(steps) + 1))
    ax.set_xticklabels([s[0] for s in steps] + ["Net saving"], fontsize=7, rotation=20, ha="right")
    _gbp_axis(ax, "y")
    ax.set_ylabel("GBP per treated person")
    ax.margins(y=0.15)
    ax.set_title("Savings waterfall per treated person (point estimates)", fontsize=10, pad=12)
    ax.figure.tight_layout()
    return ax


def plot_tornado(scenarios: pd.DataFrame, ax=None):
    """Tornado: net saving per treated person under each scenario against the base case."""
    base = float(scenarios.iloc[0]["net_saving_per_person"])
    s = scenarios.iloc[1:].copy()
    s["delta"] = s["net_saving_per_person"] - base
    s = s.reindex(s["delta"].abs().sort_values().index)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.6, 0.38 * len(s) + 1.3))
    y = np.arange(len(s))
    colours = ["#007f3b" if d >= 0 else "#d5281b" for d in s["delta"]]
    ax.barh(y, s["delta"], left=base, color=colours, alpha=0.85)
    ax.hlines(y, s["lo95"], s["hi95"], color="#4c6272", lw=1)
    ax.axvline(base, color="#005eb8", lw=1.2, label=f"Base case £{base:,.0f}")
    ax.axvline(0, color="black", lw=0.8, ls=":")
    ax.set_yticks(y)
    import textwrap
    ax.set_yticklabels([textwrap.fill(f"{g}: {l}", 38) for g, l in zip(s["group"], s["label"])],
                       fontsize=7)
    _gbp_axis(ax, "x")
    ax.set_xlabel("Net saving per treated person (bar: scenario; line: its 95% CI)", fontsize=8)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Sensitivity of the net saving", fontsize=10)
    ax.figure.tight_layout()
    return ax
