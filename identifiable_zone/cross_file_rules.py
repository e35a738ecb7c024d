"""Rules that span the files of one source, applied after each file was validated on its own.

A source delivered as one file a month is validated file by file (and cached); combining the
files renumbers their rows as if stacked and then quarantines what only the stack shows: the
copies after the first of an exact duplicate row, and every row of a record id repeated among
first copies. The result equals validating the stacked source in one go.
"""
from __future__ import annotations

import pandas as pd

from identifiable_zone.sources import ExtractUnusable


def combine_files(spec, cfg, entries: list[dict]) -> dict:
    """The files of one source as one: rows renumbered as if stacked, exact duplicate rows and
    record ids repeated across files quarantined (as validating the stacked files would)."""
    acc_parts, q_parts, f_parts, key_parts, acc_rows = [], [], [], [], []
    offset = 0
    for e in entries:
        n = int(e["summary"]["rows_in"])
        q = e["quarantine"].copy()
        q["row"] = q["row"].astype("int64") + offset
        fl = e["dq_flags"].copy()
        fl["row"] = fl["row"].astype("int64") + offset
        bad = set(e["quarantine"]["row"].astype("int64").tolist())
        acc_rows.append(pd.Series([r + offset for r in range(n) if r not in bad], dtype="int64"))
        k = e["rowkeys"].copy()
        k["row"] = k["row"].astype("int64") + offset
        k["file"] = e["summary"]["files"][0]["file"]
        acc_parts.append(e["accepted"])
        q_parts.append(q)
        f_parts.append(fl)
        key_parts.append(k)
        offset += n
    accepted = pd.concat(acc_parts, ignore_index=True)
    rows = pd.concat(acc_rows, ignore_index=True)
    quarantine = pd.concat(q_parts, ignore_index=True)
    flags = pd.concat(f_parts, ignore_index=True)
    keys = pd.concat(key_parts, ignore_index=True)
    # rules that span files, as on the stacked source: copies after the first of an exact
    # duplicate row, then every row of a record id repeated among first copies
    dup = keys["row_hash"].duplicated(keep="first")
    rid = keys["record_id"].astype(object).where(~dup & keys["record_id"].notna(), None)
    counts = rid.dropna().value_counts()
    repeated = rid.map(lambda v: v is not None and counts.get(v, 0) > 1).astype(bool)
    have = set(zip(quarantine["row"].tolist(), quarantine["rule"].tolist()))
    add = []
    for mask, rule, fld in ((dup, "exact_duplicate_row", "(whole row)"), (repeated, "record_id_unique",
                                                                         spec.record_id)):
        sel = keys[mask & ~pd.Series([(r, rule) in have for r in keys["row"].tolist()], index=keys.index)]
        if len(sel):
            add.append(pd.DataFrame({"record_id": sel["record_id"].to_numpy(dtype=object), "rule": rule,
                                     "field": fld, "row": sel["row"].to_numpy(dtype="int64"),
                                     "file": sel["file"].to_numpy(dtype=object),
                                     "line": sel["line"].to_numpy(dtype="int64")}))
    if add:
        quarantine = pd.concat([quarantine, *add], ignore_index=True)
        newly = set(pd.concat(add)["row"].tolist())
        keep = ~rows.isin(newly)
        accepted = accepted[keep.to_numpy()].reset_index(drop=True)
    quarantine = quarantine.sort_values(["row", "rule", "field"], kind="stable").reset_index(drop=True)
    flags = flags.sort_values(["row", "rule", "field"], kind="stable").reset_index(drop=True)
    summary = _combine_summaries(spec, [e["summary"] for e in entries], accepted, quarantine, flags)
    n, n_q = summary["rows_in"], summary["rows_quarantined"]
    if n and n_q / n > cfg.quarantine_threshold:
        top = max(summary["quarantine_by_rule"], key=lambda d: d["rows"])
        raise ExtractUnusable(
            f"{spec.table} ({len(entries)} files): {n_q} of {n} rows ({n_q / n:.1%}) fail row-level rules, "
            f"over the {cfg.quarantine_threshold:.0%} threshold; worst rule {top['rule']} on {top['field']}: "
            f"{int(top['rows'])} rows")
    return {"accepted": accepted, "quarantine": quarantine, "dq_flags": flags, "summary": summary}


def _examples(t: pd.DataFrame) -> list[dict]:
    return [{"file": r.file, "line": int(r.line), "rule": r.rule, "field": r.field}
            for r in t.groupby(["rule", "field"]).head(3).itertuples()]


def _sum_by_rule(lists: list[list[dict]]) -> list[dict]:
    out: dict = {}
    for lst in lists:
        for x in lst or []:
            k = (x["rule"], x["field"])
            out[k] = out.get(k, 0) + int(x["rows"])
    return [{"rule": r, "field": f, "rows": n} for (r, f), n in out.items()]


def _combine_summaries(spec, summaries: list[dict], accepted, quarantine, flags) -> dict:
    first = summaries[0]
    out = dict(first)
    out["files"] = [f for s in summaries for f in s["files"]]
    out["encoding_issues"] = sum(int(s.get("encoding_issues", 0)) for s in summaries)
    out["encoding_issue_lines"] = [x for s in summaries for x in s.get("encoding_issue_lines", [])][:50]
    out["rows_in"] = sum(int(s["rows_in"]) for s in summaries)
    out["rows_accepted"] = int(len(accepted))
    out["rows_quarantined"] = int(quarantine["row"].nunique())
    out["quarantine_by_rule"] = ([{"rule": r, "field": f, "rows": int(n)} for (r, f), n in
                                  quarantine.groupby(["rule", "field"]).size().items()] if len(quarantine) else [])
    out["quarantine_examples"] = _examples(quarantine)
    out["flag_examples"] = _examples(flags)
    for k, v in first.items():  # other per-rule counts and examples: summed / concatenated
        if k in out and k in ("files", "encoding_issues", "encoding_issue_lines", "rows_in", "rows_accepted",
                              "rows_quarantined", "quarantine_by_rule", "quarantine_examples",
                              "flag_examples"):
            continue
        if k.endswith("_by_rule"):
            out[k] = _sum_by_rule([s.get(k) for s in summaries])
        elif k.endswith("_examples"):
            seen: dict = {}
            for s in summaries:
                for x in s.get(k) or []:
                    seen.setdefault((x["rule"], x["field"]), []).append(x)
            out[k] = [x for xs in seen.values() for x in xs[:3]]
        elif k == "extra_columns":
            out[k] = list(dict.fromkeys(c for s in summaries for c in s.get(k) or []))
        elif isinstance(v, list):
            merged = []
            for s in summaries:
                for x in s.get(k) or []:
                    if x not in merged:
                        merged.append(x)
            out[k] = merged
    return out
