"""Information-governance report of one identifiable-zone run.

Two versions:
- raw (exact counts), kept in the identifiable zone: identifiable/ig_reports/<run_id>.json;
- published, with small-number suppression: reports/ig_report.json and .html.

Suppression (core.disclosure): 0 stays 0; 1-7 -> "*"; other counts rounded to the nearest 5. A
rate is shown only when its numerator and the rest of its denominator are each 0 or more than
7, and is computed from the rounded counts, to three significant figures (from the raw counts
at one decimal it gave the denominator away: records and linked counts could be solved for).
Neither version holds any identifier: counts, rule names, file names, checksums, the key
fingerprint and column names only.
"""
from __future__ import annotations

import html
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from core.disclosure import MAX_SUPPRESSED, round_count, share_of_rounded
from core.settings import Paths
from identifiable_zone.clerical_review import load_estimate
from identifiable_zone.guild_reporting import (NO_CLERICAL_REVIEW, PRACTICE, PRACTICES_SHOWN, THRESHOLD_GRID,
                                               UNDER_LINKED_SMD, WEIGHT_EDGES, WEIGHT_LABELS, expected_errors,
                                               pooled_expected_errors, published_clerical_review,
                                               linked_unlinked_differences, model_charts, model_levels,
                                               practice_rows_to_publish, published_error_rates,
                                               published_precision_curve, under_linked_groups)
from identifiable_zone.mps import MPS_RULE, WAYS

SMALL = MAX_SUPPRESSED
PROB_BINS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0000001]
PROB_LABELS = ["<0.5", "0.5-0.8", "0.8-0.9", "0.9-0.95", "0.95-0.99", "0.99-0.999", ">=0.999"]
RULES = ["deterministic_nhs_dob", "probabilistic", "unlinked"]
RULES_PSEUDONYMISED = ["deterministic_pseudo_key", "unlinked"]
WEIGHT_BINS = [-1e9, *WEIGHT_EDGES, 1e9]  # labels: guild_reporting.WEIGHT_LABELS (its charts read them)
SUBGROUP_DIMS = ("age_band", "sex", "ethnic_category", "imd_decile", PRACTICE)


def _counts_by_bin(values: pd.Series, bins, labels) -> dict[str, int]:
    """How many values fall in each half-open bin [lo, hi), every label present."""
    counts = pd.cut(values, bins, labels=labels, right=False).value_counts().reindex(labels, fill_value=0)
    return {lab: int(n) for lab, n in zip(labels, counts)}


def suppress_count(n):
    """0 -> 0; 1..7 -> '*'; else nearest multiple of 5 (halves round up)."""
    return round_count(int(n))


def suppress_rate(num, den):
    """A percentage of rounded counts; "*" when the numerator or the rest is 1-7."""
    num, den = int(num), int(den)
    if den == 0:
        return None
    rest = den - num
    if (0 < num <= SMALL) or (0 < rest <= SMALL):
        return "*"
    return share_of_rounded(num, den)


def _suppress(obj, key=None):
    """Recursively suppress every int under a key ending in a count-like name."""
    if isinstance(obj, dict):
        return {k: _suppress(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_suppress(v, key) for v in obj]
    if isinstance(obj, bool) or not isinstance(obj, int):
        return obj
    if key in ("bytes", "line", "threshold_pct", "rows_per_file_line"):
        return obj
    return suppress_count(obj)


def _read(p: Path):
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


@dataclass
class LinkFigures:
    """What the IG report counts from record_person (``_link_figures``)."""
    rates: dict = field(default_factory=dict)
    probabilities: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    subgroups: dict = field(default_factory=dict)
    spine: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    precision_by_threshold: dict = field(default_factory=dict)


def _link_figures(path: Path, rules, spill_dir: Path) -> LinkFigures:
    """Link rates, match probability and weight distributions and rates by subgroup of the
    records of every source but the spine, the spine's record count, and each source's
    model-expected linkage errors and expected precision by threshold
    (``identifiable_zone.guild_reporting``), from record_person.

    Counted by DuckDB over the Parquet within its memory limit (at 2 million people 21 million
    records: whole frames and their per-group copies in pandas took 4.3 GiB); only the scored
    records' probabilities and weights (probabilistic links and unlinked records) come to
    pandas for the bins. Record ids and person keys are never read."""
    import pyarrow.parquet as pq

    from identifiable_zone.blocking import connection, sql_path

    names = pq.ParquetFile(path).schema_arrow.names
    rp = f"read_parquet({sql_path(path)})"
    others = "source <> 'gp_patients'"
    link_rates, prob_dist, weight_dist, subgroups = {}, {}, {}, {}
    with connection(spill_dir) as con:
        for src, rule, n in con.execute(f"SELECT source, rule, count(*) FROM {rp} WHERE {others} "
                                        "GROUP BY ALL ORDER BY source, rule").fetchall():
            rates = link_rates.setdefault(src, {"records": 0, **{r: 0 for r in rules}})
            rates["records"] += int(n)
            if rule in rates and rule != "records":
                rates[rule] = int(n)
        weight = "match_weight" if "match_weight" in names else "NULL::DOUBLE AS match_weight"
        scored = con.sql(f"SELECT source, rule, match_probability, {weight} FROM {rp} "
                         f"WHERE {others} AND rule IN ('probabilistic', 'unlinked')").df()
        for src in link_rates:
            grp = scored[scored["source"] == src]
            probs = grp.loc[grp["rule"] == "probabilistic", "match_probability"]
            unl = grp.loc[grp["rule"] == "unlinked", "match_probability"]
            prob_dist[src] = {"probabilistic_links": _counts_by_bin(probs, PROB_BINS, PROB_LABELS),
                              "unlinked_best_candidate": _counts_by_bin(unl, PROB_BINS, PROB_LABELS)}
            if "match_weight" in names:
                w = grp.loc[grp["rule"] == "probabilistic", "match_weight"].dropna()
                wu = grp.loc[grp["rule"] == "unlinked", "match_weight"].dropna()
                weight_dist[src] = {
                    "probabilistic_links": _counts_by_bin(w, WEIGHT_BINS, list(WEIGHT_LABELS)),
                    "unlinked_best_candidate": _counts_by_bin(wu, WEIGHT_BINS, list(WEIGHT_LABELS)),
                    "unlinked_not_scored": int(grp.loc[grp["rule"] == "unlinked", "match_weight"].isna().sum()),
                }
        for dim in [d for d in SUBGROUP_DIMS if d in names]:
            subgroups[dim] = [
                {"source": src, dim: str(value), "records": int(n), "linked": int(linked)}
                for src, value, n, linked in con.execute(f"""
                    SELECT source, "{dim}", count(*), count(*) FILTER (WHERE rule <> 'unlinked')
                    FROM {rp} WHERE {others} AND "{dim}" IS NOT NULL GROUP BY ALL ORDER BY 1, 2""").fetchall()]
        spine_records = con.execute(f"SELECT count(*) FROM {rp} WHERE source = 'gp_patients'").fetchall()[0][0]
        errors = {}
        for src, links, false_links, unlinked, missed, unscored in con.execute(f"""
                SELECT source, count(*) FILTER (WHERE rule <> 'unlinked'),
                       coalesce(sum(1 - match_probability) FILTER (WHERE rule = 'probabilistic'), 0),
                       count(*) FILTER (WHERE rule = 'unlinked'),
                       coalesce(sum(match_probability) FILTER (WHERE rule = 'unlinked'), 0),
                       count(*) FILTER (WHERE rule = 'unlinked' AND match_probability IS NULL)
                FROM {rp} WHERE {others} GROUP BY ALL ORDER BY 1""").fetchall():
            errors[src] = expected_errors(int(links), float(false_links), int(unlinked), float(missed),
                                          int(unscored))
        curve = {src: [] for src in link_rates}
        if "match_probability" in names:
            grid = ", ".join(repr(t) for t in THRESHOLD_GRID)
            for src, t, n, mean_p in con.execute(f"""
                    SELECT source, t, count(*), avg(match_probability)
                    FROM {rp}, (SELECT unnest([{grid}]) AS t)
                    WHERE {others} AND rule IN ('probabilistic', 'unlinked') AND match_probability >= t
                    GROUP BY ALL ORDER BY 1, 2""").fetchall():
                curve.setdefault(src, []).append({"threshold": float(t), "records": int(n),
                                                  "expected_precision": float(mean_p)})
    return LinkFigures(link_rates, prob_dist, weight_dist, subgroups, {"records": int(spine_records)}, errors, curve)


def _pooled_expected(path: Path, spill_dir: Path) -> dict:
    """The model's expected error rates over all sources together (beside a clerical review)."""
    from identifiable_zone.blocking import connection, sql_path

    with connection(spill_dir) as con:
        prob, false_links, det, unlinked, missed, unscored = con.execute(f"""
            SELECT count(*) FILTER (WHERE rule = 'probabilistic'),
                   coalesce(sum(1 - match_probability) FILTER (WHERE rule = 'probabilistic'), 0),
                   count(*) FILTER (WHERE rule NOT IN ('probabilistic', 'unlinked')),
                   count(*) FILTER (WHERE rule = 'unlinked'),
                   coalesce(sum(match_probability) FILTER (WHERE rule = 'unlinked'), 0),
                   count(*) FILTER (WHERE rule = 'unlinked' AND match_probability IS NULL)
            FROM read_parquet({sql_path(path)}) WHERE source <> 'gp_patients'""").fetchone()
    return pooled_expected_errors(int(prob), float(false_links), int(det), int(unlinked), float(missed),
                                  int(unscored))


# the person attributes published in the analytical zone that someone could know of a person
QUASI_IDENTIFIERS = ("sex", "year_of_birth", "month_of_birth", "ethnic_category", "lsoa11", "practice_code",
                     "registration_start", "registration_end", "date_of_death")


def quasi_identifier_uniqueness(person_file: Path) -> dict | None:
    """How many published persons are unique on the person attributes published with them (a
    missing value counts as a value): who knows those facts about someone can single them out
    in the analytical zone. The share is rounded to two decimals (it must not give the exact
    count the published report rounds)."""
    if not person_file.exists():
        return None
    import duckdb
    import pyarrow.parquet as pq

    cols = [c for c in QUASI_IDENTIFIERS if c in pq.read_schema(person_file).names]
    group = ", ".join(f'"{c}"' for c in cols)
    with duckdb.connect() as con:
        persons, unique = con.execute(
            f"SELECT coalesce(sum(n), 0), count(*) FILTER (WHERE n = 1) FROM "
            f"(SELECT count(*) AS n FROM read_parquet(?) GROUP BY {group})", [str(person_file)]).fetchone()
    return {"attributes": cols, "persons": int(persons), "unique_persons": int(unique),
            "share_unique": round(unique / persons, 2) if persons else None}


def build_raw(paths: Paths) -> dict:
    ident = paths.identifiable
    run = _read(ident / "run.json") or {}
    val = _read(ident / "validation_summary.json") or {"tables": {}}
    lnk = _read(ident / "link_summary.json") or {}
    pub = _read(ident / "publish_summary.json") or {}
    rp_path = ident / "links" / "record_person.parquet"
    mode = lnk.get("mode") or run.get("mode") or "identifiable"
    rules = RULES_PSEUDONYMISED if mode == "upstream_pseudonymised" else RULES
    mps = lnk.get("mps_person_id")  # sources carrying NHS England's MPS Person_ID
    if mps:
        rules = [RULES[0], MPS_RULE, *RULES[1:]]

    inputs, quarantine, flags, encoding = [], [], [], []
    for table, s in val["tables"].items():
        for f in s["files"]:
            inputs.append({"table": table, "file": f["file"], "sha256": f["sha256"], "rows": f["rows"],
                           "bytes": f["bytes"]})
        quarantine.append({"table": table, "rows_in": s["rows_in"], "rows_accepted": s["rows_accepted"],
                           "rows_quarantined": s["rows_quarantined"], "by_rule": s["quarantine_by_rule"],
                           "extra_columns_not_read": s.get("extra_columns", [])})
        for fl in s["flags_by_rule"]:
            flags.append({"table": table, **fl})
        if s["encoding_issues"]:
            encoding.append({"table": table, "lines": s["encoding_issues"]})

    figures = LinkFigures()
    clerical = load_estimate(paths, run["run_id"]) if run.get("run_id") else None
    pooled = None
    if rp_path.exists():
        with tempfile.TemporaryDirectory(prefix=".ig-report-spill-", dir=ident) as spill:
            figures = _link_figures(rp_path, rules, Path(spill))
            if clerical:
                pooled = _pooled_expected(rp_path, Path(spill))
    model_file = ident / "linkage_model" / str((lnk.get("model") or {}).get("file"))
    levels = model_levels(json.loads(model_file.read_text(encoding="utf-8"))) if model_file.is_file() else []
    differences = [d for dim, rows in figures.subgroups.items() for d in linked_unlinked_differences(rows, dim, rounded=False)]

    columns_out = {t: s["columns"] for t, s in (pub.get("tables") or {}).items()}
    withheld = {t: s["withheld"] for t, s in (pub.get("tables") or {}).items()}
    no_person = {t: s["rows_without_person"] for t, s in (pub.get("tables") or {}).items()
                 if s.get("rows_without_person") is not None}
    identifiers_received = mode != "upstream_pseudonymised"
    return {
        "run_id": run.get("run_id"), "run_started_at": run.get("started_at"),
        "report_written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources_config": run.get("sources_config"),
        "data_period": run.get("period"),
        "manifest": {
            "run_id": run.get("run_id"), "run_started_at": run.get("started_at"),
            "data_period": run.get("period"), "data_period_source": run.get("period_source"),
            "latest_activity_date": run.get("latest_activity_date"),
            "code_version": run.get("code_version"), "delivery_mode": mode,
            "sources_config": run.get("sources_config"),
            "sources_config_sha256": run.get("sources_config_sha256"),
            "configuration": run.get("configuration"),
            "environment_options": run.get("environment_options", {}),
            "key_fingerprint": pub.get("key_fingerprint"), "key_source": pub.get("key_source"),
            "linkage_model": lnk.get("model"),
        },
        "inputs": inputs, "database_reads": _database_reads(ident),
        "validation": quarantine, "dq_flags": flags, "encoding_fallbacks": encoding,
        "linkage": {"mode": mode, "identifiers_received": identifiers_received,
                    "method": ("deterministic on valid NHS number + date of birth, then probabilistic "
                               "(splink Fellegi-Sunter, term-frequency adjusted names) above the threshold"
                               + ("; NHS England's MPS Person_ID where a source carries it: a traced NHS number "
                                  "is the record's NHS number, a shared MPS_ID links the records left unlinked "
                                  "to the spine person its other records linked to, a one-time-use id never "
                                  "links" if mps else ""))
                    if identifiers_received else
                    ("extracts were pseudonymised upstream: no direct identifiers (NHS number, name, date "
                     "of birth, postcode) were received or processed; linkage is deterministic on the "
                     "common pseudonymised key only, no probabilistic linkage"),
                    "rules": rules,
                    "threshold": lnk.get("threshold"), "spine": figures.spine,
                    "spine_persons": lnk.get("spine_persons"), "rates_by_source": figures.rates,
                    "match_probability_distribution": figures.probabilities,
                    "match_weight_distribution": figures.weights, "rates_by_subgroup": figures.subgroups,
                    "linked_vs_unlinked": differences, "under_linked": under_linked_groups(differences),
                    "expected_errors": figures.errors if identifiers_received else {},
                    "precision_by_threshold": figures.precision_by_threshold if identifiers_received else {}, "model_levels": levels,
                    "clerical_review": {"estimate": clerical, "model_expected_all_sources": pooled},
                    "blocking": lnk.get("blocking"), "mps_person_id": mps},
        "pseudonymisation": {"key_fingerprint": pub.get("key_fingerprint"),
                             "key_source": pub.get("key_source"),
                             "method": "HMAC-SHA256 of the person's canonical identifier"
                             + ("" if identifiers_received else " (the upstream pseudonymised key, re-keyed)"),
                             "rows_without_person": no_person},
        "columns_leaving_zone": columns_out, "columns_withheld": withheld,
        "quasi_identifiers": quasi_identifier_uniqueness(paths.pseudonymised / "person.parquet"),
    }


def _database_reads(ident: Path) -> list[dict]:
    """Sources read from a database this run: the connection's name, the SHA-256 of the
    statement run and the rows read (never a URL or a credential)."""
    manifest = _read(ident / "input_manifest.json") or {}
    return [{"table": f["table"], "from": f["database"]["from"], "statement_sha256": f["database"]["statement_sha256"],
             "rows": f["database"]["rows"]} for f in manifest.get("files", []) if f.get("database")]


def build_published(raw: dict) -> dict:
    """Suppressed copy of the raw report; rates recomputed from the rounded counts."""
    pub = _suppress({k: v for k, v in raw.items() if k not in ("linkage", "manifest")})
    pub["manifest"] = raw["manifest"]  # no counts: identifiers of the run, code and config
    lk = raw["linkage"]
    rates = {}
    rules = lk.get("rules", RULES)
    for src, r in lk["rates_by_source"].items():
        rates[src] = {"records": suppress_count(r["records"]),
                      **{rule: suppress_count(r[rule]) for rule in rules},
                      **{f"{rule}_pct": suppress_rate(r[rule], r["records"]) for rule in rules}}
    # practice: hundreds of groups; the published report names a few per source and pools the rest
    by_dim = {dim: practice_rows_to_publish(rows) if dim == PRACTICE else rows
              for dim, rows in lk["rates_by_subgroup"].items()}
    sub = {}
    for dim, rows in by_dim.items():
        sub[dim] = [{"source": x["source"], dim: x[dim], "records": suppress_count(x["records"]),
                     "linked_pct": suppress_rate(x["linked"], x["records"])} for x in rows]
    pub["linkage"] = {"mode": lk["mode"], "identifiers_received": lk["identifiers_received"],
                      "method": lk["method"], "rules": rules,
                      "threshold": lk["threshold"], "spine": _suppress(lk["spine"]),
                      "spine_persons": suppress_count(lk["spine_persons"] or 0),
                      "rates_by_source": rates,
                      "match_probability_distribution": _suppress(lk["match_probability_distribution"]),
                      "match_weight_distribution": _suppress(lk["match_weight_distribution"]),
                      "rates_by_subgroup": sub, "blocking": _suppress(lk.get("blocking")),
                      "mps_person_id": _suppress(lk.get("mps_person_id"))}
    # GUILD: from the rounded counts (as every published share), and the model's error rates
    differences = [d for dim, rows in by_dim.items() for d in linked_unlinked_differences(rows, dim, rounded=True)]
    pub["linkage"]["linked_vs_unlinked"] = differences
    pub["linkage"]["under_linked"] = under_linked_groups(differences)
    pub["linkage"]["expected_error_rates"] = {src: published_error_rates(e)
                                              for src, e in lk.get("expected_errors", {}).items()}
    pub["linkage"]["precision_by_threshold"] = {src: published_precision_curve(rows)
                                                for src, rows in lk.get("precision_by_threshold", {}).items()}
    pub["linkage"]["model_levels"] = lk.get("model_levels", [])  # the model's parameters: no counts
    review = lk.get("clerical_review") or {}
    pub["linkage"]["clerical_review"] = published_clerical_review(review.get("estimate"),
                                                                  review.get("model_expected_all_sources"))
    pub["suppression"] = "0 shown as 0; 1-7 as *; other counts rounded to the nearest 5; rates * when " \
                         "the numerator or its complement is 1-7, otherwise computed from the rounded counts " \
                         "(three significant figures)"
    return pub


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(json.dumps(r.get(c)) if isinstance(r.get(c), (list, dict)) else str(r.get(c)))}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(pub: dict) -> str:
    lk = pub["linkage"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>IG report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style></head><body>",
        "<h1>Identifiable zone: information-governance report</h1>",
        f"<p>Data period <b>{html.escape(str(pub.get('data_period')))}</b> (data up to the end of that month). "
        f"Run <b>{html.escape(str(pub['run_id']))}</b>, started {html.escape(str(pub['run_started_at']))}; "
        f"report written {html.escape(str(pub['report_written_at']))}.</p>",
        f"<p>{html.escape(pub['suppression'])}.</p>",
        "<h2>Run manifest</h2>",
        _table([{"item": k, "value": v} for k, v in pub["manifest"].items() if k != "configuration"]),
        "<details><summary>Configuration (secrets removed)</summary><pre>"
        f"{html.escape(json.dumps(pub['manifest'].get('configuration'), indent=1))}</pre></details>",
        f"<p><b>Delivery mode: {html.escape(lk['mode'])}.</b> {html.escape(lk['method'])}.</p>",
        f"<p>Pseudonymisation key fingerprint: <code>{html.escape(str(pub['pseudonymisation']['key_fingerprint']))}</code></p>",
        "<h2>Input files</h2>", _table(pub["inputs"]),
        *(["<h2>Sources read from a database</h2>",
           "<p>Each was read into the identifiable zone as text and validated as a file; the statement "
           "is identified by its SHA-256 (the sources config holds its text).</p>",
           _table(pub["database_reads"])] if pub.get("database_reads") else []),
        "<h2>Validation and quarantine</h2>",
        _table([{k: v for k, v in r.items()} for r in pub["validation"]]),
        "<h2>Values blanked (identifier fields kept row, value unusable)</h2>", _table(pub["dq_flags"]),
        "<h2>Linkage rates by source</h2>",
        f"<p>Probabilistic threshold: {lk['threshold']}; spine persons: {lk['spine_persons']}</p>",
        _table([{"source": s, **r} for s, r in lk["rates_by_source"].items()]),
        "<h2>Match probability distribution</h2>",
        _table([{"source": s, "kind": k, **b} for s, d in lk["match_probability_distribution"].items()
                for k, b in d.items()]),
        "<h2>Match weight distribution (log2 Bayes factor)</h2>",
        _table([{"source": s, "kind": k, **b} for s, d in lk["match_weight_distribution"].items()
                for k, b in d.items() if isinstance(b, dict)]),
    ]
    blocking = lk.get("blocking") or {}
    if blocking.get("prediction_rules"):
        training = blocking.get("training") or {}
        parts += ["<h2>Candidate pairs by blocking rule</h2>",
                  f"<p>Pairs each rule would make, counted before scoring; a rule over "
                  f"{blocking.get('prediction_pair_budget')} pairs is not used. Model training (EM) on "
                  f"{training.get('training_tuples', 'no')} of {training.get('tuples', '-')} identifier tuples.</p>",
                  _table(blocking["prediction_rules"] + [{**r, "rule": f"EM: {r['rule']}", "used": True}
                                                         for r in training.get("em_rules", [])])]
    mps = lk.get("mps_person_id")
    if mps:
        parts += ["<h2>How records came in: NHS England's MPS Person_ID</h2>",
                  "<p>Records of the sources carrying a Person_ID of the Master Person Service, by what it is: "
                  "an NHS number traced in PDS (used as the record's NHS number), a persistent MPS_ID (links "
                  "the records of those sources to each other and to the spine person any of them linked to: "
                  f"rule {MPS_RULE}), a one-time-use id (never used to link), a traced NHS number below the "
                  "configured match confidence (not used), or none. Records linked through an MPS_ID are "
                  "counted by source.</p>",
                  _table([{"source": src, **{w: r.get(w) for w in WAYS},
                           "linked_by_mps_id": (mps.get("linked_by_mps_id") or {}).get(src)}
                          for src, r in (mps.get("records_by_way") or {}).items()])]
    for dim, rows in lk["rates_by_subgroup"].items():
        parts += [f"<h2>Linkage by {html.escape(dim)}</h2>", _table(rows)]
    parts += _guild_sections(lk)
    parts += ["<h2>Records without a linked person in published tables</h2>",
              _table([{"table": t, "rows": n} for t, n in pub["pseudonymisation"]["rows_without_person"].items()]),
              "<h2>Columns that left the identifiable zone</h2>",
              _table([{"table": t, "columns": ", ".join(c)} for t, c in pub["columns_leaving_zone"].items()]),
              "</body></html>"]
    return "\n".join(parts)


def _guild_sections(lk: dict) -> list[str]:
    """Linked versus unlinked records, and the model's expected error rates (GUILD)."""
    under = lk.get("under_linked") or []
    said = ("; ".join(f"{d['source']}: {d['characteristic']} {d['group']} (" + (
                          f"standardised difference {d['std_difference']:+.2f})" if d["std_difference"] is not None
                          else "none of its records linked)") for d in under)
            if under else f"no group's share of the unlinked records exceeds its share of the linked by more "
                          f"than {UNDER_LINKED_SMD} (standardised difference)")
    parts = ["<h2>Linked versus unlinked records (GUILD)</h2>",
             "<p>Each group's share of a source's linked and of its unlinked records (from the rounded "
             "counts), and their standardised difference; below -0.1 the group is under-linked: its "
             f"records are missed more often, which biases estimates for it. <b>Under-linked: "
             f"{html.escape(said)}.</b></p>",
             f"<p>Practice is the record's own GP practice code (an unlinked record has no linked person "
             f"whose practice could be used): per source the {PRACTICES_SHOWN} practices whose shares differ "
             f"most, the records with none ('not recorded', or 'not in source' where the extract has no "
             f"practice field), and all other practices pooled in one row.</p>",
             _table(lk.get("linked_vs_unlinked") or [])]
    rates = lk.get("expected_error_rates") or {}
    if rates:
        parts += ["<h2>Expected linkage errors (from the linkage model)</h2>",
                  "<p>Without ground truth: false matches expected among the probabilistic links (the sum "
                  "of 1 - match probability) as a share of all links; missed matches expected among the "
                  "unlinked records whose best candidate was scored (the sum of its match probability) as a "
                  "share of the true matches; the upper bound adds 0.01 for each unlinked record with no "
                  "candidate scored. Deterministic links (NHS number and date of birth) count as correct. "
                  "Observed rates need ground truth or a clerical review (below).</p>",
                  _table([{"source": src, **r} for src, r in rates.items()])]
    parts += _clerical_section(lk.get("clerical_review") or {"recorded": False})
    levels = lk.get("model_levels") or []
    if levels:
        charts = model_charts(levels, lk.get("match_weight_distribution") or {},
                              lk.get("precision_by_threshold") or {}, lk.get("threshold"))
        captions = {"match_weights": "What each comparison level adds to a pair's match weight: log2(m / u), "
                                     "m and u as the model estimated them (EM)",
                    "weight_distribution": "Match weight of each scored record's best candidate, by source "
                                           "(shares of the rounded counts), and the threshold",
                    "precision_by_threshold": "Expected precision of the probabilistic links each threshold "
                                              "would accept (mean match probability; points over 7 records)"}
        parts += ["<h2>The linkage model (splink)</h2>",
                  "<p>Its parameters and what they imply; no record values.</p>"]
        parts += [f"<figure><img alt='{html.escape(captions[k])}' src='{uri}'><figcaption>"
                  f"{html.escape(captions[k])}</figcaption></figure>" for k, uri in charts.items()]
        parts += [_table(levels)]
    return parts


def _clerical_section(review: dict) -> list[str]:
    """Observed rates from the clerical review beside the model's expected ones (all sources)."""
    parts = ["<h2>Clerical review of the linkage</h2>"]
    if not review.get("recorded"):
        return parts + [f"<p><b>{html.escape(NO_CLERICAL_REVIEW.capitalize())}</b> for this run: the rates above "
                        "are the model's own expectation (`ltceval clerical-review export`, then `import`; "
                        "docs/linkage.md).</p>"]
    rows = [{"measure": r["measure"], "clerical review %": r["clerical_pct"],
             "95% interval %": "-".join(str(x) for x in r["clerical_ci95_pct"]),
             "model expected %": r["model_expected_pct"]} for r in review["rates"]]
    return parts + [f"<p>Reviewers' decisions on a stratified random sample of candidate pairs around the "
                     f"threshold (export {html.escape(str(review['export_id']))}; decided pairs: "
                     f"{html.escape(str(review['decided_pairs']))}), all sources together, weighted by each "
                     f"stratum's population. Interval: {html.escape(str(review['interval']))}. Assumptions: "
                     f"{html.escape('; '.join(review.get('assumptions') or []))}.</p>", _table(rows)]


def write(paths: Paths) -> dict:
    raw = build_raw(paths)
    raw_dir = paths.identifiable / "ig_reports"
    raw_dir.mkdir(parents=True, exist_ok=True)
    safe_run = re.sub(r"[^A-Za-z0-9._-]", "_", str(raw["run_id"]))
    (raw_dir / f"{safe_run}.json").write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")
    pub = build_published(raw)
    paths.reports.mkdir(parents=True, exist_ok=True)
    (paths.reports / "ig_report.json").write_text(json.dumps(pub, indent=2, default=str), encoding="utf-8")
    (paths.reports / "ig_report.html").write_text(render_html(pub), encoding="utf-8")
    (paths.reports / "run_manifest.json").write_text(json.dumps(
        {"manifest": pub["manifest"], "inputs": pub["inputs"],
         "columns_leaving_zone": pub["columns_leaving_zone"]}, indent=2, default=str), encoding="utf-8")
    return {"run_id": raw["run_id"], "report_json": str(paths.reports / "ig_report.json"),
            "report_html": str(paths.reports / "ig_report.html"),
            "key_fingerprint": raw["pseudonymisation"]["key_fingerprint"]}
