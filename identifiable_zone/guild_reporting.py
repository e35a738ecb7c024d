"""Linkage quality a reviewer expects (GUILD: Gilbert et al. 2018, "GUILD: GUidance for
Information about Linking Data sets", J Public Health 40(1):191-198), without ground truth.

- Linked versus unlinked records of each source compared on each characteristic (age band,
  sex, ethnic category, IMD decile): each group's share of the linked and of the unlinked
  records and the standardised difference of the two (the balance measure of matching, for a
  category: (p_linked - p_unlinked) / sqrt((p_linked(1 - p_linked) + p_unlinked(1 - p_unlinked)) / 2)).
  A group whose share of the unlinked records is larger by more than ``UNDER_LINKED_SMD`` is
  under-linked: its records are missing from the linked data more often than others', which
  biases any estimate for it.
- Expected linkage errors from the model's own match probabilities: among the probabilistic
  links, sum(1 - p) false matches are expected; among the unlinked records whose best candidate
  was scored (probability 0.01 or more), sum(p) missed matches. Deterministic links (valid NHS
  number and date of birth agreeing) count as correct; records with no candidate scored at 0.01
  could hide at most 0.01 missed matches each, given as an upper bound.
- Observed rates from a clerical review (``identifiable_zone.clerical_review``) beside the
  model's expected ones over all sources, or "no clerical review recorded".

Practice is a many-valued characteristic (hundreds of practices in an ICB): published, each
source shows the ``PRACTICES_SHOWN`` practices whose shares differ most (largest absolute
standardised difference, from the rounded counts; then the largest where a source has no unlinked
records to compare with), the records with no practice ("not
recorded", "not in source"), and every other practice pooled in one row ("other practices (k)")
whose counts are the pooled exact counts rounded; each practice's own counts are still rounded
and 1-7 suppressed. The practice is the record's own GP practice field: the practice of the
linked person is unknown for an unlinked record.

Counts come in; the published figures are computed from counts rounded as every published count
is (``core.disclosure``), so that no figure gives a small count away.
"""
from __future__ import annotations

import math

from core.disclosure import MAX_SUPPRESSED, SUPPRESSED, round_count, significant

UNDER_LINKED_SMD = 0.1  # as the balance threshold of matching (evaluation.diagnostics): a small difference
PRACTICE = "practice"
PRACTICES_SHOWN = 10  # practices shown by name per source in the published report
NO_PRACTICE = ("not recorded", "not in source")


def standardised_difference(p_linked: float, p_unlinked: float) -> float | None:
    """Standardised difference of one category's share among linked and unlinked records."""
    pooled = (p_linked * (1 - p_linked) + p_unlinked * (1 - p_unlinked)) / 2
    if pooled <= 0:
        return None if p_linked == p_unlinked else math.copysign(math.inf, p_linked - p_unlinked)
    return (p_linked - p_unlinked) / math.sqrt(pooled)


def linked_unlinked_differences(rows: list[dict], dim: str, rounded: bool) -> list[dict]:
    """Per source and group of ``dim``: shares of the linked and unlinked records and their
    standardised difference. ``rows``: {source, <dim>, records, linked} (exact counts);
    ``rounded``: compute from published counts (a source with a group of 1-7 records, linked or
    unlinked, gets no figures for that group: "*")."""
    out = []
    for src in dict.fromkeys(r["source"] for r in rows):
        groups = [r for r in rows if r["source"] == src]
        linked = {r[dim]: r["linked"] for r in groups}
        unlinked = {r[dim]: r["records"] - r["linked"] for r in groups}
        if rounded:
            linked = {g: round_count(n) for g, n in linked.items()}
            unlinked = {g: round_count(n) for g, n in unlinked.items()}
        # totals of what is shown (suppressed groups left out of both)
        n_l = sum(n for n in linked.values() if n != SUPPRESSED)
        n_u = sum(n for n in unlinked.values() if n != SUPPRESSED)
        for g in linked:
            row = {"source": src, "characteristic": dim, "group": g}
            if SUPPRESSED in (linked[g], unlinked[g]) or not n_l or not n_u:
                out.append({**row, "linked_pct": SUPPRESSED if n_l and n_u else None,
                            "unlinked_pct": SUPPRESSED if n_l and n_u else None, "std_difference": None})
                continue
            p_l, p_u = linked[g] / n_l, unlinked[g] / n_u
            smd = standardised_difference(p_l, p_u)
            out.append({**row, "linked_pct": significant(100 * p_l), "unlinked_pct": significant(100 * p_u),
                        "std_difference": None if smd is None or not math.isfinite(smd) else round(smd, 3)})
    return out


def practice_rows_to_publish(rows: list[dict], shown: int = PRACTICES_SHOWN) -> list[dict]:
    """The published practice rows ({source, practice, records, linked}, exact counts) of each
    source: the ``shown`` practices with the largest absolute standardised difference of the
    rounded counts (then the largest, then by code), the rows without a practice, and the rest pooled into one row
    "other practices (k)" (exact sums: rounded where published, like any count)."""
    out = []
    for src in dict.fromkeys(r["source"] for r in rows):
        groups = [r for r in rows if r["source"] == src]
        diffs = {d["group"]: d["std_difference"]
                 for d in linked_unlinked_differences(groups, PRACTICE, rounded=True)}
        practices = [r for r in groups if r[PRACTICE] not in NO_PRACTICE]
        # without a difference (no unlinked records, or counts suppressed): after those with one, largest first
        ranked = sorted(practices, key=lambda r: (diffs[r[PRACTICE]] is None, -abs(diffs[r[PRACTICE]] or 0),
                                                  -r["records"], r[PRACTICE]))
        named = {r[PRACTICE] for r in ranked[:shown]}
        rest = [r for r in practices if r[PRACTICE] not in named]
        out += [r for r in groups if r[PRACTICE] in named]
        if rest:
            out.append({"source": src, PRACTICE: f"other practices ({len(rest)})",
                        "records": sum(r["records"] for r in rest), "linked": sum(r["linked"] for r in rest)})
        out += [r for r in groups if r[PRACTICE] in NO_PRACTICE]
    return out


def under_linked_groups(differences: list[dict], limit: float = UNDER_LINKED_SMD) -> list[dict]:
    """The groups more common among the unlinked than the linked records by more than ``limit``,
    and those with unlinked records but no linked one (no finite difference: e.g. A&E attenders
    on no GP list, the only records without a practice, none of them linked)."""
    def never_linked(d):
        return (d["std_difference"] is None and d["linked_pct"] == 0
                and isinstance(d["unlinked_pct"], (int, float)) and d["unlinked_pct"] > 0)
    return [d for d in differences
            if (d["std_difference"] is not None and d["std_difference"] < -limit) or never_linked(d)]


def expected_errors(links: int, false_links: float, unlinked: int, missed_scored: float,
                    unscored: int) -> dict:
    """Model-estimated false-match and missed-match rates of one source's non-deterministic links.

    ``links``: records linked (deterministically or probabilistically); ``false_links``: sum of
    (1 - p) over the probabilistic links; ``unlinked``: records left unlinked; ``missed_scored``:
    sum of p over the unlinked records' best scored candidates; ``unscored``: unlinked records
    with no candidate at 0.01 or more (each at most 0.01 of a missed match)."""
    true_links = links - false_links
    missed_upper = missed_scored + 0.01 * unscored
    return {
        "false_match_rate": false_links / links if links else None,
        "missed_match_rate": missed_scored / (true_links + missed_scored) if true_links + missed_scored > 0 else None,
        "missed_match_rate_upper": (missed_upper / (true_links + missed_upper)
                                    if true_links + missed_upper > 0 else None),
        "records_unlinked": unlinked,
    }


def published_error_rates(errors: dict) -> dict:
    """Rates as percentages to three significant figures; no counts (the published record counts
    are rounded: the model's expected numbers would refine them)."""
    def pct(x):
        return None if x is None else significant(100 * x)
    return {"false_match_pct": pct(errors["false_match_rate"]),
            "missed_match_pct": pct(errors["missed_match_rate"]),
            "missed_match_pct_upper": pct(errors["missed_match_rate_upper"])}


# -- observed rates from a clerical review (identifiable_zone.clerical_review) beside the model's

NO_CLERICAL_REVIEW = "no clerical review recorded"
# (measure shown, the estimate's key, the model's expected rate's key)
CLERICAL_MEASURES = (("precision of the probabilistic links", "precision_probabilistic", "precision_probabilistic"),
                     ("false-match rate (share of all links)", "false_match_rate", "false_match_rate"),
                     ("missed-match rate (among scored candidates)", "missed_match_rate", "missed_match_rate"),
                     ("recall (deterministic links taken as right)", "recall", "recall"))


def pooled_expected_errors(prob_links: int, false_links: float, det_links: int, unlinked: int,
                           missed_scored: float, unscored: int) -> dict:
    """The model's expected rates over all sources together (``expected_errors``), with the
    expected precision of the probabilistic links and recall, to sit beside a clerical review's."""
    e = expected_errors(prob_links + det_links, false_links, unlinked, missed_scored, unscored)
    return {**e, "precision_probabilistic": 1 - false_links / prob_links if prob_links else None,
            "recall": None if e["missed_match_rate"] is None else 1 - e["missed_match_rate"]}


def published_clerical_review(estimate: dict | None, model: dict | None) -> dict:
    """The clerical review's rates with their 95% intervals and the model's expected rates, as
    percentages to three significant figures, and the number of decided pairs rounded as every
    published count ("*" for 1-7: then no rates either). No counts of records."""
    if not estimate:
        return {"recorded": False, "note": NO_CLERICAL_REVIEW}
    n = round_count(estimate["decided_pairs"])

    def pct(x):
        return None if x is None else (SUPPRESSED if n == SUPPRESSED else significant(100 * x))

    rows = []
    for label, key, model_key in CLERICAL_MEASURES:
        fig = estimate.get(key) or {}
        lo, hi = fig.get("ci95") or (None, None)
        rows.append({"measure": label, "clerical_pct": pct(fig.get("estimate")),
                     "clerical_ci95_pct": [pct(lo), pct(hi)],
                     "model_expected_pct": pct((model or {}).get(model_key))})
    return {"recorded": True, "export_id": estimate.get("export_id"), "estimated_at": estimate.get("estimated_at"),
            "decided_pairs": n, "interval": estimate.get("interval"), "assumptions": estimate.get("assumptions"),
            "rates": rows}


# -- the linkage model as a reviewer reads it: no record values, only its parameters and curves

THRESHOLD_GRID = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)
# the IG report's match-weight bins: their inner edges, and a label for each bin
WEIGHT_EDGES = (0.0, 5.0, 10.0, 15.0, 20.0)
WEIGHT_LABELS = ("<0", *(f"{lo:g}-{hi:g}" for lo, hi in zip(WEIGHT_EDGES, WEIGHT_EDGES[1:])), f">={WEIGHT_EDGES[-1]:g}")


def model_levels(model: dict) -> list[dict]:
    """Each comparison level of a splink model: m and u probabilities and the match weight
    log2(m / u) it adds (the null levels add nothing). Parameters only: no record values."""
    rows = []
    for c in model.get("comparisons", []):
        for lv in c.get("comparison_levels", []):
            if lv.get("is_null_level"):
                continue
            m, u = lv.get("m_probability"), lv.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append({"comparison": c.get("output_column_name"), "level": lv.get("label_for_charts"),
                         "m_probability": significant(m) if m else None,
                         "u_probability": significant(u) if u else None,
                         "match_weight": None if weight is None else round(weight, 2)})
    return rows


def published_precision_curve(rows: list[dict]) -> list[dict]:
    """Expected precision of the probabilistic links a threshold would accept (the mean match
    probability of the records whose best candidate reaches it), shown only where more than
    ``MAX_SUPPRESSED`` records would be accepted; no counts."""
    return [{"threshold": r["threshold"], "expected_precision": significant(r["expected_precision"], 4)}
            for r in rows if r["records"] > MAX_SUPPRESSED]


def _weight_position(weight: float) -> float:
    """Where a match weight falls on the axis of the IG report's weight bins (0 = '<0')."""
    if weight < WEIGHT_EDGES[0]:
        return 0.5
    for i, (lo, hi) in enumerate(zip(WEIGHT_EDGES, WEIGHT_EDGES[1:])):
        if weight < hi:
            return 1 + i + (weight - lo) / (hi - lo)
    return len(WEIGHT_EDGES) + 0.5


def model_charts(levels: list[dict], weight_dist: dict, curve: dict, threshold: float | None) -> dict[str, str]:
    """Three figures (inline PNG): the match weight of each comparison level; the match-weight
    distribution of the scored records of each source (shares of the rounded counts) with the
    threshold; the expected precision against the threshold."""
    import matplotlib.pyplot as plt

    from core.figures import fig_to_data_uri

    charts = {}
    usable = [r for r in levels if r["match_weight"] is not None]
    if usable:
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(usable) + 1.2))
        labels = [f"{r['comparison']}: {r['level']}" for r in usable]
        weights = [r["match_weight"] for r in usable]
        ax.barh(range(len(usable)), weights, color=["#2a7ab9" if w >= 0 else "#c0504d" for w in weights])
        ax.set_yticks(range(len(usable)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("match weight log2(m / u) each level adds")
        fig.tight_layout()
        charts["match_weights"] = fig_to_data_uri(fig)
    if weight_dist and threshold:
        fig, ax = plt.subplots(figsize=(7, 3))
        for src, d in weight_dist.items():
            bins = d.get("probabilistic_links", {})
            unl = d.get("unlinked_best_candidate", {})
            counts = [sum(v for v in (bins.get(k), unl.get(k)) if isinstance(v, int)) for k in bins]
            total = sum(counts)
            if total:
                ax.plot(range(len(counts)), [c / total for c in counts], marker="o", label=src)
        ax.set_xticks(range(len(WEIGHT_LABELS)), WEIGHT_LABELS)
        w = math.log2(threshold / (1 - threshold))
        ax.axvline(_weight_position(w) - 0.5, color="black", ls="--", lw=1)
        ax.text(_weight_position(w) - 0.45, ax.get_ylim()[1] * 0.9, f"threshold {threshold:g}", fontsize=8)
        ax.set_xlabel("match weight of the best candidate (scored records; rounded counts)")
        ax.set_ylabel("share of scored records")
        ax.legend(fontsize=7)
        fig.tight_layout()
        charts["weight_distribution"] = fig_to_data_uri(fig)
    if any(curve.values()):
        fig, ax = plt.subplots(figsize=(7, 3))
        for src, rows in curve.items():
            if rows:
                ax.plot([THRESHOLD_GRID.index(r["threshold"]) for r in rows],
                        [r["expected_precision"] for r in rows], marker="o", label=src)
        ax.set_xticks(range(len(THRESHOLD_GRID)), [f"{t:g}" for t in THRESHOLD_GRID])
        if threshold in THRESHOLD_GRID:
            ax.axvline(THRESHOLD_GRID.index(threshold), color="black", ls="--", lw=1)
        ax.set_xlabel("match probability threshold")
        ax.set_ylabel("expected precision")
        ax.legend(fontsize=7)
        fig.tight_layout()
        charts["precision_by_threshold"] = fig_to_data_uri(fig)
    return charts
