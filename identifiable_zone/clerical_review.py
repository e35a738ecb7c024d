"""Clerical review of the linkage (GUILD, Gilbert et al. 2018; issue 17): a stratified sample of
candidate pairs around the threshold for reviewers with access to the identifiable zone, and
their decisions read back into observed precision and missed-match estimates with intervals.

**Unit.** Links are made per distinct identifier tuple of a source (``link_records``): every
record with the same standardised identifiers gets the same decision. A *pair* is one such
tuple of one source and its best-scoring spine record (``candidate_record_id``); the sample is
of pairs, so a reviewer decides each pair once, and ``records`` says how many records share it.
Estimates are per record (as ``link.linkage_metrics`` counts them): a pair's decision counts
once for each of its records.

**Strata** (``strata_edges``): probabilistic links and rejected candidates (unlinked records
whose best candidate was scored) apart, each cut by match probability at ``PROBABILITY_EDGES``
and the run's threshold. Rejected candidates at or above the threshold are ties between persons.
Unlinked records with no scored candidate have no pair to review and are not covered: misses
that no blocking rule proposed are not estimated.

**Estimator.** Within a stratum the share of records that are true matches is the ratio
estimator sum(records x match) / sum(records) over the decided pairs (a simple random sample
of the stratum's pairs); strata are combined weighted by their population of records. Its
variance is the linearised variance of a ratio with the finite-population correction; a
stratum whose decided pairs all agree (all matches, or none) has none in its sample, so its
variance is the ratio's at half a pair more of the other kind (Jeffreys: p = (x + 0.5) / (n + 1),
variance p(1 - p) mean(records^2) / (n mean(records)^2) with the correction; pairs sharing many
records widen it, as they should: a few pairs then hold most of the records). The 95%
interval is a stratified Wilson interval (after Korn and Graubard 1998): Wilson's score interval
for the estimate at the effective sample size p(1 - p) / variance, p with those half pairs; a
census of every stratum gives the exact share.
tests/identifiable_zone/test_clerical_review.py checks its coverage by simulation.
'unsure' decisions and pairs left blank are left out, as if missing at random within their
stratum. Deterministic links (valid NHS number and date of birth) are taken as correct: recall
is (deterministic + true probabilistic links) / (that + missed matches among rejected
candidates); its interval combines the two intervals at their extremes (conservative).

Files, all in ``identifiable/clerical_review/<run_id>/`` (private: 0700 folders, 0600 files):
``sample.csv`` (for the reviewers: identifiers side by side and an empty decision column),
``sample_records.parquet`` (the records of each sampled pair), ``manifest.json`` (strata,
populations and sample sizes, threshold, run id, export id) and, after import, ``estimate.json``.
Nothing here prints or returns identifiers.
"""
from __future__ import annotations

import csv
import hashlib
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import LtcevalError
from core.files import private_folder, read_json, sha256_file, write_json_atomic
from core.settings import Paths
from core.spreadsheets import write_csv
from identifiable_zone import link as lk
from identifiable_zone.sources import SPINE, load_sources_config

REVIEW_FOLDER = "clerical_review"
SAMPLE_FILE, RECORDS_FILE, MANIFEST_FILE, ESTIMATE_FILE = (
    "sample.csv", "sample_records.parquet", "manifest.json", "estimate.json")
# the strata's match-probability edges; the run's threshold is added (``strata_edges``)
PROBABILITY_EDGES = (0.5, 0.8, 0.99, 0.999)
KINDS = ("link", "rejected")  # probabilistic links; unlinked records' best scored candidates
DECISIONS = ("match", "non-match", "unsure")
DEFAULT_PER_STRATUM = 30
Z95 = 1.959963984540054
# published in the IG report: no person's name in it (the identifier scans look for surnames,
# and the method's author shares one with the synthetic extracts)
INTERVAL_METHOD = ("stratified score interval: the score interval of a share at the effective sample size p(1-p)/variance of "
                   "the stratified ratio estimator (finite-population corrected; a stratum whose decisions all "
                   "agree gets the variance at (x + 0.5) / (n + 1))")
_PAIR_ID = re.compile(r"^([0-9a-f]{8})-(\d{4,})$")
MAX_ERRORS_SHOWN = 20

_private_zone = private_folder(lambda paths, *args, **kwargs: paths.identifiable)


class ClericalReviewError(LtcevalError):
    """The review cannot go on (message names the file, line and field; never an identifier)."""


def review_dir(paths: Paths, run_id: str) -> Path:
    return paths.identifiable / REVIEW_FOLDER / re.sub(r"[^A-Za-z0-9._-]", "_", str(run_id))


def strata_edges(threshold: float) -> list[float]:
    """Inner and outer edges of the probability bins: 0, ``PROBABILITY_EDGES`` and the threshold, 1."""
    inner = sorted({*PROBABILITY_EDGES, float(threshold)} - {0.0, 1.0})
    return [0.0, *inner, 1.0]


def stratum_labels(kind: str, edges: list[float]) -> list[str]:
    """One label per bin [lo, hi) of ``edges`` (the last bin holds 1.0)."""
    return [f"{kind} {lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:])]


def assign_strata(kind: pd.Series, probability: pd.Series, edges: list[float]) -> pd.Series:
    """Each pair's stratum label from its kind and match probability."""
    inner = np.asarray(edges[1:-1])
    pos = np.searchsorted(inner, probability.to_numpy(dtype=float), side="right")
    lows, highs = np.asarray(edges[:-1]), np.asarray(edges[1:])
    return pd.Series([f"{k} {lows[i]:g}-{highs[i]:g}" for k, i in zip(kind.tolist(), pos.tolist())],
                     index=kind.index, dtype=object)


# -- export --------------------------------------------------------------------------------------

def _run_record(paths: Paths) -> dict:
    run_file = paths.identifiable / "run.json"
    if not run_file.is_file():
        raise ClericalReviewError(f"no identifiable-zone run at {paths.identifiable} (run.json missing): "
                                  "run the pipeline first")
    return read_json(run_file)


def _scored_records(paths: Paths) -> tuple[pd.DataFrame, dict[str, int]]:
    """The records with a reviewable pair: probabilistic links and unlinked records whose best
    candidate was scored (source, record_id, rule, match_probability, match_weight,
    candidate_record_id), and the record counts by rule."""
    import duckdb

    rp = paths.identifiable / "links" / "record_person.parquet"
    if not rp.is_file():
        raise ClericalReviewError(f"no linkage at {rp}: run the identifiable zone's link step first")
    with duckdb.connect() as con:
        scored = con.execute(
            "SELECT source, record_id, rule, match_probability, match_weight, candidate_record_id "
            "FROM read_parquet(?) WHERE source <> ? AND (rule = 'probabilistic' OR "
            "(rule = 'unlinked' AND candidate_record_id IS NOT NULL))", [str(rp), SPINE]).df()
        counts = dict(con.execute(
            "SELECT CASE WHEN rule = 'unlinked' AND candidate_record_id IS NULL THEN 'unlinked_not_scored' "
            "WHEN rule = 'unlinked' THEN 'unlinked_scored' ELSE rule END, count(*) "
            "FROM read_parquet(?) WHERE source <> ? GROUP BY ALL", [str(rp), SPINE]).fetchall())
    return scored, {k: int(v) for k, v in counts.items()}


def _identifiers(paths: Paths, spec, record_ids: pd.Series) -> pd.DataFrame:
    """record_id, the standardised identifiers (as the model compared them: ``link.ID_COLS``)
    and the identifiers as received (``<field>_received``) of the given records of one
    source's accepted extract; only those rows are read and standardised."""
    import duckdb

    path = paths.identifiable / "accepted" / f"{spec.table}.parquet"
    if not path.is_file():
        raise ClericalReviewError(f"accepted extract {path} is missing: the run's files are incomplete")
    columns = list(dict.fromkeys([spec.record_id, *spec.identifiers.values()]))
    select = ", ".join(f'CAST(a."{c}" AS VARCHAR) AS "{c}"' for c in columns)
    with duckdb.connect() as con:
        con.register("wanted", pd.DataFrame({"rid": record_ids.astype(str).unique()}))
        acc = con.execute(f'SELECT {select} FROM read_parquet(?) a JOIN wanted w ON CAST(a."{spec.record_id}" '
                          f"AS VARCHAR) = w.rid", [str(path)]).df()
    acc = acc.astype(object).where(acc.notna(), None)
    ids = lk.standardise_identifiers(acc, spec)
    for role, col in spec.identifiers.items():
        ids[f"{lk.FIELD_COLS[lk.ROLE_FIELDS[role]]}_received"] = acc[col].to_numpy()
    ids["record_id"] = ids["record_id"].astype(str)
    return ids


def _pairs(paths: Paths, cfg, scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(record -> pair, pairs with the first record's identifiers, spine candidates' identifiers)."""
    frames = []
    for source, grp in scored.groupby("source", sort=True):
        ids = _identifiers(paths, cfg[source], grp["record_id"])
        frames.append(grp.merge(ids, on="record_id", how="left", validate="one_to_one"))
    recs = pd.concat(frames, ignore_index=True) if frames else scored.assign(**{c: None for c in lk.ID_COLS})
    key = ["source", *lk.ID_COLS, "candidate_record_id"]
    # one pair per identifier tuple and candidate (nulls equal, as link_records joins them)
    recs = recs.sort_values(["source", "record_id"], kind="stable").reset_index(drop=True)
    recs["pair_row"] = recs.groupby(key, dropna=False, sort=True).ngroup()
    first = recs.drop_duplicates("pair_row").set_index("pair_row").sort_index()
    pairs = first.assign(records=recs.groupby("pair_row").size())
    spine = _identifiers(paths, cfg[SPINE], pairs["candidate_record_id"]) if len(pairs) else None
    return recs, pairs.reset_index(), spine


def _export_id(run_id: str, record_person_sha: str, seed: int, per_stratum: int) -> str:
    return hashlib.sha256(f"{run_id}|{record_person_sha}|{seed}|{per_stratum}".encode()).hexdigest()[:8]


def export_sample(paths: Paths, per_stratum: int = DEFAULT_PER_STRATUM, seed: int = 1) -> dict:
    """Draw the stratified sample of pairs and write it for the reviewers (module docstring).
    Returns where it went and the counts per stratum (no identifiers)."""
    if per_stratum < 1:
        raise ClericalReviewError(f"--per-stratum must be 1 or more, got {per_stratum}")
    return _export(paths, _run_record(paths), per_stratum, seed)  # no zone folder made for a wrong --out


@_private_zone
def _export(paths: Paths, run: dict, per_stratum: int, seed: int) -> dict:
    run_id = str(run.get("run_id"))
    summary_file = paths.identifiable / "link_summary.json"
    if not summary_file.is_file():
        raise ClericalReviewError(f"no link summary at {summary_file}: run the identifiable zone's link step first")
    summary = read_json(summary_file)
    if summary.get("mode") == "upstream_pseudonymised":
        raise ClericalReviewError("this run's extracts were pseudonymised upstream: no identifiers and no "
                                  "probabilistic links, nothing to review")
    threshold = float(summary["threshold"])
    folder = review_dir(paths, run_id)
    if (folder / ESTIMATE_FILE).exists():
        raise ClericalReviewError(f"{folder / ESTIMATE_FILE} already holds the estimate of this run's review; "
                                  "move that folder away to export a new sample")
    cfg = load_sources_config(run.get("sources_config"))
    scored, counts = _scored_records(paths)
    recs, pairs, spine = _pairs(paths, cfg, scored)
    edges = strata_edges(threshold)
    pairs["kind"] = np.where(pairs["rule"] == "probabilistic", "link", "rejected")
    pairs["stratum"] = assign_strata(pairs["kind"], pairs["match_probability"], edges)
    rng = np.random.default_rng(seed)
    chosen, strata = [], []
    for kind in KINDS:
        for label, lo, hi in zip(stratum_labels(kind, edges), edges, edges[1:]):
            rows = np.flatnonzero(pairs["stratum"].to_numpy() == label)
            take = np.sort(rng.choice(rows, size=min(per_stratum, len(rows)), replace=False)) if len(rows) else rows
            chosen.append(take)
            strata.append({"stratum": label, "kind": kind, "probability_from": lo, "probability_below": hi,
                           "population_pairs": int(len(rows)),
                           "population_records": int(pairs["records"].to_numpy()[rows].sum()),
                           "sample_pairs": int(len(take)),
                           "sample_records": int(pairs["records"].to_numpy()[take].sum())})
    rp_sha = sha256_file(paths.identifiable / "links" / "record_person.parquet")
    export_id = _export_id(run_id, rp_sha, seed, per_stratum)
    sample = pairs.iloc[np.concatenate(chosen)].copy() if chosen else pairs.iloc[:0].copy()
    sample["pair_id"] = [f"{export_id}-{i:04d}" for i in range(1, len(sample) + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    _write_sample_csv(folder / SAMPLE_FILE, sample, spine)
    members = recs.merge(sample[["pair_row", "pair_id", "stratum"]], on="pair_row")
    pq.write_table(pa.table({"pair_id": members["pair_id"].astype(str).to_numpy(),
                             "stratum": members["stratum"].astype(str).to_numpy(),
                             "source": members["source"].astype(str).to_numpy(),
                             "record_id": members["record_id"].astype(str).to_numpy()}), folder / RECORDS_FILE)
    manifest = {
        "run_id": run_id, "export_id": export_id, "record_person_sha256": rp_sha,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threshold": threshold, "seed": seed, "per_stratum": per_stratum,
        "unit": "pair: one source's distinct standardised identifier tuple and its best-scoring spine record; "
                "records counts the records sharing it (estimates are per record)",
        "strata": strata,
        "records": {"deterministic_links": sum(n for r, n in counts.items() if r.startswith("deterministic")),
                    "probabilistic_links": counts.get("probabilistic", 0),
                    "unlinked_scored": counts.get("unlinked_scored", 0),
                    "unlinked_not_scored": counts.get("unlinked_not_scored", 0)},
    }
    write_json_atomic(folder / MANIFEST_FILE, manifest)
    return {"folder": str(folder), "sample": str(folder / SAMPLE_FILE), "export_id": export_id,
            "strata": [{k: s[k] for k in ("stratum", "population_pairs", "sample_pairs")} for s in strata]}


def _write_sample_csv(path: Path, sample: pd.DataFrame, spine: pd.DataFrame | None) -> None:
    """Pair id, source, stratum, probability and weight, the record's and the candidate spine
    record's identifiers side by side (standardised, then as received), an empty decision."""
    received = [f"{c}_received" for c in lk.ID_COLS]
    cand = (spine.drop_duplicates("record_id").set_index("record_id") if spine is not None
            else pd.DataFrame(columns=[*lk.ID_COLS, *received]))
    out = pd.DataFrame({"pair_id": sample["pair_id"].to_numpy(), "source": sample["source"].to_numpy(),
                        "stratum": sample["stratum"].to_numpy(),
                        "match_probability": sample["match_probability"].to_numpy(),
                        "match_weight": sample["match_weight"].to_numpy(),
                        "records": sample["records"].to_numpy(),
                        "record_id": sample["record_id"].to_numpy(),
                        "candidate_record_id": sample["candidate_record_id"].to_numpy()})
    c_ids = sample["candidate_record_id"].astype(str)
    for col in [*lk.ID_COLS, *received]:
        out[f"record_{col}"] = sample[col].to_numpy() if col in sample else None
        out[f"candidate_{col}"] = c_ids.map(cand[col]).to_numpy() if col in cand else None
    out["decision"] = ""
    write_csv(out, path)  # a name a spreadsheet would take for a formula is written as text


# -- import --------------------------------------------------------------------------------------

def read_decisions(path: Path, export_id: str, pair_ids: set[str]) -> dict[str, str]:
    """pair id -> decision from the reviewers' CSV (``pair_id`` and ``decision`` columns; any
    others are ignored). Every bad line is reported at once, naming the file, line and field;
    field values are quoted only when they are pair ids of the export's form."""
    path = Path(path)
    if not path.is_file():
        raise ClericalReviewError(f"decisions file {path} not found")
    errors, out, seen = [], {}, {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("pair_id", "decision") if c not in (reader.fieldnames or [])]
        if missing:
            raise ClericalReviewError(f"{path}: line 1: no {' or '.join(missing)} column (the sample's header "
                                      "must be kept)")
        for row in reader:
            line = reader.line_num
            pid = (row.get("pair_id") or "").strip()
            decision = (row.get("decision") or "").strip().lower()
            m = _PAIR_ID.match(pid)
            if not pid:
                errors.append(f"{path}: line {line}: field pair_id is empty")
                continue
            if not m:
                errors.append(f"{path}: line {line}: field pair_id is not a pair id of a clerical-review sample")
                continue
            if m.group(1) != export_id:
                errors.append(f"{path}: line {line}: field pair_id {pid} is from another export "
                              f"({m.group(1)}; this run's export is {export_id})")
                continue
            if pid not in pair_ids:
                errors.append(f"{path}: line {line}: field pair_id {pid} is unknown: not in export {export_id}")
                continue
            if pid in seen:
                errors.append(f"{path}: line {line}: field pair_id {pid} is also on line {seen[pid]}")
                continue
            seen[pid] = line
            if decision not in DECISIONS:
                what = "is not one of" if decision else "is empty: give one of"
                errors.append(f"{path}: line {line}: field decision of {pid} {what} {', '.join(DECISIONS)}")
                continue
            out[pid] = decision
    if errors:
        more = f"\n... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise ClericalReviewError(f"{len(errors)} bad line(s) in the decisions file:\n"
                                  + "\n".join(errors[:MAX_ERRORS_SHOWN]) + more)
    return out


def wilson(p: float, n_eff: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a share ``p`` at (effective) sample size ``n_eff``."""
    if n_eff <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p), 0.0) / n_eff + z * z / (4 * n_eff * n_eff))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def stratified_share(decided: pd.DataFrame, population: dict[str, tuple[int, int]]) -> dict | None:
    """Share of records that are true matches over the strata of ``population`` (stratum ->
    (pairs, records) in it; strata without records are left out), from ``decided`` (stratum,
    records, match: one row per decided sampled pair, a simple random sample of the stratum's
    pairs): the stratified ratio estimate, its variance (finite-population corrected) and the
    stratified Wilson 95% interval (module docstring). None when no stratum has records."""
    total = sum(records for _, records in population.values() if records > 0)
    if not total:
        return None
    share, smoothed, var, n = 0.0, 0.0, 0.0, 0
    for stratum, (pairs, records) in population.items():
        if records <= 0:
            continue
        grp = decided[decided["stratum"] == stratum]
        if grp.empty:
            raise ClericalReviewError(f"stratum {stratum} has no pair decided match or non-match: review at least "
                                      "one of its pairs")
        m = grp["records"].to_numpy(dtype=float)
        y = grp["match"].to_numpy(dtype=float)
        k, w_h = len(m), records / total
        r_h = float((m * y).sum() / m.sum())
        fpc = 1 - k / pairs
        if 0 < y.sum() < k:
            p_h = r_h
            v_h = fpc * (m * (y - r_h)).var(ddof=1) / (k * m.mean() ** 2) if k > 1 else 0.0
        else:  # every decided pair agrees: the ratio's variance at half a pair more of the other kind
            p_h = (y.sum() + 0.5) / (k + 1)  # (Jeffreys), pairs of unequal size widening it as above
            v_h = fpc * p_h * (1 - p_h) * (m ** 2).mean() / (k * m.mean() ** 2)
        share += w_h * r_h
        smoothed += w_h * p_h
        var += w_h ** 2 * v_h
        n += k
    if var > 0:
        n_eff = smoothed * (1 - smoothed) / var
        lo, hi = wilson(share, n_eff)
    else:  # a census of every stratum: the exact share
        n_eff, lo, hi = math.inf, share, share
    return {"estimate": float(share), "ci95": [float(lo), float(hi)], "variance": float(var),
            "effective_n": float(n_eff) if math.isfinite(n_eff) else None, "decided_pairs": int(n)}


def estimate(manifest: dict, samples: pd.DataFrame, decisions: dict[str, str]) -> dict:
    """The review's estimates (module docstring) from the export's manifest, its sampled pairs
    (pair_id, stratum, records) and the decisions."""
    strata = {s["stratum"]: s for s in manifest["strata"]}
    pairs = samples.assign(decision=samples["pair_id"].map(decisions).fillna("not reviewed"))
    decided = pairs[pairs["decision"].isin(["match", "non-match"])].assign(
        match=lambda d: d["decision"] == "match")
    pop = {kind: {s: (v["population_pairs"], v["population_records"]) for s, v in strata.items()
                  if v["kind"] == kind} for kind in KINDS}
    precision = stratified_share(decided, pop["link"])
    missed_share = stratified_share(decided, pop["rejected"])
    rec = manifest["records"]
    det, prob, rejected = (rec["deterministic_links"], rec["probabilistic_links"],
                            sum(records for _, records in pop["rejected"].values()))
    p, (p_lo, p_hi) = (precision["estimate"], precision["ci95"]) if precision else (1.0, (1.0, 1.0))
    q, (q_lo, q_hi) = (missed_share["estimate"], missed_share["ci95"]) if missed_share else (0.0, (0.0, 0.0))
    links = det + prob

    def missed_rate(p_, q_):  # missed / (true links + missed), deterministic links taken as right
        true_links, missed = det + prob * p_, rejected * q_
        return missed / (true_links + missed) if true_links + missed > 0 else None

    def false_rate(p_):
        return prob * (1 - p_) / links if links else None

    mr, mr_lo, mr_hi = missed_rate(p, q), missed_rate(p_hi, q_lo), missed_rate(p_lo, q_hi)
    by_stratum = []
    for s in manifest["strata"]:
        grp = pairs[pairs["stratum"] == s["stratum"]]
        counts = grp["decision"].value_counts()
        by_stratum.append({**s, **{d: int(counts.get(d, 0)) for d in (*DECISIONS, "not reviewed")}})
    return {
        "run_id": manifest["run_id"], "export_id": manifest["export_id"], "threshold": manifest["threshold"],
        "estimated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "interval": INTERVAL_METHOD,
        "assumptions": ["deterministic links (valid NHS number and date of birth) are correct",
                        "unsure and unreviewed pairs are missing at random within their stratum",
                        "missed matches are counted among rejected scored candidates only: records no blocking "
                        "rule paired with a spine record are not covered (recall is an upper bound for them)"],
        "decided_pairs": int(len(decided)), "unsure_pairs": int((pairs["decision"] == "unsure").sum()),
        "not_reviewed_pairs": int((pairs["decision"] == "not reviewed").sum()),
        "records": rec,
        "precision_probabilistic": precision,
        "false_match_rate_probabilistic": None if precision is None else
        {"estimate": 1 - p, "ci95": [1 - p_hi, 1 - p_lo]},
        "false_match_rate": {"estimate": false_rate(p), "ci95": [false_rate(p_hi), false_rate(p_lo)]},
        "rejected_true_match_share": missed_share,
        "missed_matches": {"estimate": rejected * q, "ci95": [rejected * q_lo, rejected * q_hi]},
        "missed_match_rate": {"estimate": mr, "ci95": [mr_lo, mr_hi]},
        "recall": {"estimate": None if mr is None else 1 - mr,
                   "ci95": [None if mr_hi is None else 1 - mr_hi, None if mr_lo is None else 1 - mr_lo]},
        "strata": by_stratum,
    }


def import_decisions(paths: Paths, decisions_file: Path) -> dict:
    """Read the reviewers' decisions for this run's export and write ``estimate.json``."""
    return _import(paths, str(_run_record(paths).get("run_id")), Path(decisions_file))


@_private_zone
def _import(paths: Paths, run_id: str, decisions_file: Path) -> dict:
    folder = review_dir(paths, run_id)
    if not (folder / MANIFEST_FILE).is_file():
        raise ClericalReviewError(f"no clerical-review export for run {run_id} at {folder}: run "
                                  "`ltceval clerical-review export` first")
    manifest = read_json(folder / MANIFEST_FILE)
    samples = (pd.read_parquet(folder / RECORDS_FILE).groupby(["pair_id", "stratum"], sort=True)
               .size().rename("records").reset_index())
    decisions = read_decisions(Path(decisions_file), manifest["export_id"], set(samples["pair_id"]))
    result = estimate(manifest, samples, decisions)
    write_json_atomic(folder / ESTIMATE_FILE, result)
    return {**result, "estimate_file": str(folder / ESTIMATE_FILE)}


def load_estimate(paths: Paths, run_id: str) -> dict | None:
    """The run's clerical-review estimate, if one was recorded."""
    f = review_dir(paths, run_id) / ESTIMATE_FILE
    return read_json(f) if f.is_file() else None
