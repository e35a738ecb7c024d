"""The business case's table "How the estimates move with the linkage threshold"
(evaluation.linkage_sensitivity): per outcome the rate ratio (95% CI) and the net saving per
treated person (interval) with links at the stricter threshold, the main one and the looser one,
with each threshold and its expected precision (six significant figures). Estimates only, at three significant figures:
no count of persons or records, so the three cohorts cannot be differenced."""
from __future__ import annotations

import pandas as pd

from core.contract import outcome_label
from core.disclosure import significant
from evaluation.linkage_sensitivity import ORDER, LinkageSensitivity
from evaluation.reporting.formatting import NOT_ESTIMABLE, fmt_ci, gbp, num

NOT_RUN = "The linkage sensitivity was not run for this report."
READING = ("Each column re-estimates the main result with the A&E, admitted-patient and outpatient records "
           "attributed to people by links made at that threshold; who is treated, the matched sets and the index "
           "months are held fixed. Estimates that barely move mean the result does not hinge on the linkage "
           "threshold; rate ratios are before the negative-control calibration in every column.")
HEADINGS = {"stricter": "Stricter links", "main": "Main result", "looser": "Looser links"}
SAVING = "net_saving_per_treated_person"


def published_linkage_sensitivity(result: LinkageSensitivity) -> pd.DataFrame:
    """The long table (`LinkageSensitivity.frame`) with every estimate to three significant
    figures, and the thresholds and expected precisions to the six the report shows."""
    t = result.frame()
    for c in ("estimate", "lo95", "hi95"):
        t[c] = [significant(v) for v in t[c]]
    for c in ("threshold", "expected_precision"):
        t[c] = [significant(v, 6) for v in t[c]]
    return t


def _precision(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.6g}"


def _cell(r: pd.Series, money: bool = False) -> str:
    """"estimate (lo to hi)"; "not estimable" where the scenario left too few events."""
    if pd.isna(r["estimate"]):
        return NOT_ESTIMABLE
    return f"{gbp(r['estimate']) if money else num(r['estimate'])} ({fmt_ci(r['lo95'], r['hi95'], money=money)})"


def linkage_section(result: LinkageSensitivity | None) -> dict:
    """The template's values: ``note`` alone when the table is not shown, else the header,
    rows and how to read them."""
    if result is None:
        return {"note": NOT_RUN, "rows": []}
    if not result.estimated:
        return {"note": result.note, "rows": []}
    t = published_linkage_sensitivity(result).set_index(["quantity", "scenario"])
    by = {s.scenario: s for s in result.scenarios}
    header = ["", *(HEADINGS[s] for s in ORDER)]
    rows = [["Target expected precision", *(_precision(by[s].target_expected_precision) if s != "main"
                                             else "fixed threshold" for s in ORDER)],
            ["Match-probability threshold", *(_precision(by[s].threshold) for s in ORDER)],
            ["Expected precision of the links", *(_precision(by[s].expected_precision) for s in ORDER)]]
    outcomes = [q[len("rate_ratio_"):] for q in dict.fromkeys(t.index.get_level_values(0)) if q.startswith("rate_ratio_")]
    for o in outcomes:
        rows.append([f"Rate ratio: {outcome_label(o)}", *(_cell(t.loc[(f"rate_ratio_{o}", s)]) for s in ORDER)])
    rows.append(["Net saving per treated person", *(_cell(t.loc[(SAVING, s)], money=True) for s in ORDER)])
    reps = (f" The scenarios' saving intervals come from {result.bootstrap_reps} bootstrap replicates."
            if result.bootstrap_reps else "")
    return {"note": READING + reps, "header": header, "rows": rows}
