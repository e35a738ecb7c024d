"""The report's robustness section: beside each matched-DiD rate ratio, its E-value (how strong
an unmeasured confounder would have to be to explain it away) and how far parallel trends could
fail before its conclusion changes (Rambachan and Roth robust intervals of the event study's
post-referral average), in plain English, with one sensitivity plot.

Self-contained: `robustness_section` turns the saved `evaluation.robustness.outcome_robustness`
results into plain template values; the template includes them only when given. Everything
shown is derived from published rate ratios and their intervals (no counts)."""
from __future__ import annotations

import math

import numpy as np

from core.contract import outcome_label
from evaluation.reporting.formatting import fmt_ci, num
from evaluation.reporting.plots import fig_to_data_uri


def _ratio(log_value: float) -> float:
    return math.exp(log_value) if math.isfinite(log_value) else float("nan")


def _direction(lo: float, hi: float) -> str | None:
    """'reduction' / 'increase' when the usual 95% interval of the rate ratio excludes 1."""
    if hi < 1:
        return "reduction"
    if lo > 1:
        return "increase"
    return None


def _grid_sentence(sens, direction: str | None) -> str:
    """Plain English for the relative-magnitude breakdown of the post-referral average."""
    rm = sens.relative_magnitudes
    if direction is None:
        return ("The usual 95% interval already includes no effect, so there is no conclusion "
                "about a change for differing trends to overturn.")
    if not len(rm):
        return ("Too few pre-referral periods to bound post-referral trends by the pre-referral "
                "ones; " + (sens.notes[0] if sens.notes else "") + ".")
    grid = sorted(float(m) for m in rm["mbar"])
    b = sens.breakdown_mbar
    if b is None:
        return (f"The {direction} holds even if post-referral trends differ by up to {grid[-1]:g} times "
                "the largest month-to-month difference between the groups before referral "
                "(the largest bound tested).")
    held = [m for m in grid if m < b]
    if not held:
        return (f"The {direction} holds only if trends are exactly parallel: allowing post-referral "
                f"trends to differ by {b:g} times the largest pre-referral difference already "
                "brings no effect into the robust interval.")
    return (f"The conclusion (a {direction}) holds unless post-referral trends differ by more than "
            f"{held[-1]:g} times the largest pre-referral difference between the groups (at {b:g} "
            "times, the robust interval includes no effect).")


def _smoothness_sentence(sens, direction: str | None, unit: str) -> str:
    sd = sens.smoothness
    if direction is None or not len(sd):
        return ""
    b = sens.breakdown_m
    top = float(sd["m"].max())
    if b is None:
        return (f" Bending a straight-line extrapolation of the pre-referral trend by up to "
                f"{top:.1%} a {unit} (the largest tested) does not change it either.")
    if b == 0:
        return (" Extrapolating the pre-referral trend in a straight line already brings no effect "
                "into the robust interval.")
    return (f" Under smoothness bounds it holds while the trend's slope changes by less than "
            f"{b:.1%} a {unit} (breakdown M = {b:g} on the log scale).")


def robustness_section(robustness: dict | None, estimates: dict) -> dict | None:
    """Template values: rows per outcome, sentences, the sensitivity figure; None when no
    robustness results were saved."""
    if not robustness:
        return None
    rows, sentences, series = [], [], []
    for outcome, rob in robustness.items():
        did = estimates[outcome].did
        ev = rob["evalues"]
        label = outcome_label(outcome)
        rr = f"{num(did.rate_ratio)} ({fmt_ci(*did.rate_ratio_ci)})" if math.isfinite(did.rate_ratio) else "n/a"
        evalue = "n/a" if not math.isfinite(ev.evalue_estimate) else num(ev.evalue_estimate)
        evalue_ci = "n/a" if not math.isfinite(ev.evalue_limit) else num(ev.evalue_limit)
        honest = rob.get("honest") or {}
        avg = honest.get("post_average")
        direction = _direction(*did.rate_ratio_ci) if math.isfinite(did.rate_ratio) else None
        if avg is None:
            why = rob.get("honest_skipped") or "; ".join(honest.get("notes", [])) or "not computed"
            breakdown = f"not computed ({why})"
            sentence = f"{label}: parallel-trends sensitivity not computed ({why})."
        else:
            avg_direction = _direction(_ratio(avg.ci[0]), _ratio(avg.ci[1]))
            breakdown = ("no conclusion to overturn" if avg_direction is None
                         else "beyond 2" if avg.breakdown_mbar is None else f"{avg.breakdown_mbar:g}")
            unit = "month" if getattr(estimates[outcome].event_study, "bin_months", 1) == 1 else "bin"
            sentence = (f"{label} (event-study average after referral, rate ratio "
                        f"{num(_ratio(avg.estimate))}): {_grid_sentence(avg, avg_direction)}"
                        f"{_smoothness_sentence(avg, avg_direction, unit)}")
            if len(avg.relative_magnitudes):
                series.append((label, avg))
        rows.append([label, rr, evalue, evalue_ci, breakdown])
        sentences.append(sentence)
    figure = _sensitivity_figure(series) if series else None
    return {"rows": rows, "sentences": sentences, "figure": figure}


def _sensitivity_figure(series) -> str:
    """Robust 95% intervals of the post-referral average rate ratio against Mbar, one panel per
    outcome, the usual interval at the left (as the R package's sensitivity plot)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    n = len(series)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (label, sens) in zip(axes.ravel(), series):
        rm = sens.relative_magnitudes.sort_values("mbar")
        x = rm["mbar"].to_numpy(float)
        step = (x[1] - x[0]) if len(x) > 1 else 0.5
        ax.vlines([x[0] - step], _ratio(sens.ci[0]), _ratio(sens.ci[1]), colors="#4d4d4d", lw=2)
        ax.vlines(x, np.exp(rm["lb"].to_numpy(float)), np.exp(rm["ub"].to_numpy(float)), colors="#005eb8", lw=2)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.set_xticks([x[0] - step, *x], ["usual", *(f"{v:g}" for v in x)], fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("Mbar (x largest pre-referral difference)", fontsize=8)
        ax.set_ylabel("rate ratio, robust 95% interval", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig_to_data_uri(fig)
