"""Matplotlib figures for the report (Agg backend; no display needed)."""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.panel import OUTCOME_LABELS  # noqa: E402


def plot_event_study(result, ax=None):
    """Rate ratio (treated vs matched controls, relative to rel_month -1) by relative month."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    c = result.coefs
    colours = c["period"].map({"pre": "#4d4d4d", "transition": "#999999", "post": "#005eb8"})
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axvspan(-0.5, 0.5, color="#eeeeee", zorder=0)
    ax.vlines(c["rel_month"], c["lo95"], c["hi95"], colors=colours, lw=1.4)
    ax.scatter(c["rel_month"], c["rate_ratio"], c=colours, s=18, zorder=3)
    ax.set_yscale("log")
    ref = c.loc[c["reference"]].iloc[0]
    ref_txt = (f"{int(ref['first_month'])}" if ref["first_month"] == ref["last_month"]
               else f"{int(ref['first_month'])} to {int(ref['last_month'])}")
    bins = "" if result.bin_months == 1 else f", {result.bin_months}-month bins"
    ax.set_xlabel(f"Months relative to index month (reference {ref_txt}{bins}; grey = transition)",
                  fontsize=8)
    ax.set_ylabel("Rate ratio (95% CI)")
    p = "not estimable" if np.isnan(result.pretrend_p) else f"{result.pretrend_p:.2f}"
    ax.set_title(f"{OUTCOME_LABELS.get(result.outcome, result.outcome)}: pre-trend p = {p}",
                 fontsize=10)
    if c["rate_ratio"].notna().sum() <= 1:
        ax.text(0.5, 0.5, "not estimable: too few events", transform=ax.transAxes, ha="center")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.figure.tight_layout()
    return ax


def plot_love(balance: pd.DataFrame, threshold: float = 0.1, ax=None):
    """Love plot: absolute standardised mean difference by covariate, before and after matching."""
    b = balance.copy()
    b["abs_smd"] = b["smd"].astype(float).abs()
    wide = b.pivot_table(index="covariate", columns="stage", values="abs_smd", aggfunc="first")
    order = wide.get("before", wide.iloc[:, 0]).sort_values().index
    wide = wide.loc[order]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.28 * len(wide) + 1.2))
    y = range(len(wide))
    styles = {"before": ("o", "#999999", "Before matching"), "after": ("s", "#005eb8", "After matching")}
    for stage, (marker, colour, label) in styles.items():
        if stage in wide:
            ax.scatter(wide[stage], list(y), marker=marker, color=colour, label=label, zorder=3)
    ax.axvline(threshold, color="#d5281b", ls="--", lw=1, label=f"|SMD| = {threshold}")
    ax.set_yticks(list(y))
    ax.set_yticklabels(wide.index, fontsize=8)
    ax.set_xlabel("Absolute standardised mean difference")
    ax.legend(fontsize=8, loc="lower right")
    ax.figure.tight_layout()
    return ax


def fig_to_data_uri(fig) -> str:
    """Encode a figure as an inline PNG data URI (and close it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
