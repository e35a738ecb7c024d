"""The steps the identifiable-zone DAG runs, one function per task.

Each takes a ``ltceval.settings.Paths`` and returns a small JSON-able summary: counts, rule
names, file names, checksums, the key fingerprint. Never an identifier: return values become
XComs and logs. State between steps lives on disk in the identifiable zone:

    identifiable/run.json                      run id and start time
    identifiable/accepted/<table>.parquet      validated rows (text; dates ISO; NHS numbers cleaned)
    identifiable/quarantine/<table>.parquet    record id, rule, field, row of removed rows
    identifiable/dq_flags/<table>.parquet      record id, rule, field, row of blanked values
    identifiable/validation_summary.json
    identifiable/links/record_person.parquet   source, record_id, person_key, rule, probability
    identifiable/linkage_model/splink_model.json
    identifiable/link_summary.json, identifiable/publish_summary.json
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from identifiable_zone import link as lk
from identifiable_zone import pseudonymise as ps
from identifiable_zone.sources import SPINE, ExtractUnusable, load_sources_config, read_extract
from identifiable_zone.validate import validate_source
from ltceval.settings import Paths

log = logging.getLogger(__name__)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _run_info(paths: Paths) -> dict:
    p = paths.identifiable / "run.json"
    if not p.exists():
        raise RuntimeError("identifiable/run.json missing: run validate_all first")
    return _read_json(p)


def _accepted(paths: Paths, table: str) -> pd.DataFrame:
    df = pd.read_parquet(paths.identifiable / "accepted" / f"{table}.parquet")
    for c in df.columns:  # back to object columns with None for missing
        df[c] = pd.Series([None if v is None or (isinstance(v, float) and v != v) else str(v)
                           for v in df[c].tolist()], index=df.index, dtype=object)
    return df


def validate_all(paths: Paths, run_id: str | None = None, config_path: str | None = None) -> dict:
    """Read and validate every configured landing extract.

    Writes accepted rows, quarantine and flag tables; raises ExtractUnusable (naming file,
    rule and count) when an extract is unusable. Returns per-table counts."""
    t0 = time.time()
    cfg = load_sources_config(config_path)
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    _write_json(paths.identifiable / "run.json", {
        "run_id": run_id, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources_config": cfg.path})
    tables = {}
    for table, spec in cfg.sources.items():
        read = read_extract(paths.landing, spec)
        res = validate_source(read, spec, cfg.quarantine_threshold)
        for sub, frame in (("accepted", res.accepted), ("quarantine", res.quarantine),
                           ("dq_flags", res.flags)):
            d = paths.identifiable / sub
            d.mkdir(parents=True, exist_ok=True)
            frame.astype({c: "string" for c in frame.columns if c != "row"}).to_parquet(
                d / f"{table}.parquet", index=False)
        tables[table] = res.summary
        log.info("%s: %d rows in, %d accepted, %d quarantined", table, res.summary["rows_in"],
                 res.summary["rows_accepted"], res.summary["rows_quarantined"])
    _write_json(paths.identifiable / "validation_summary.json", {"run_id": run_id, "tables": tables})
    return {"run_id": run_id, "seconds": round(time.time() - t0, 1),
            "tables": {t: {k: s[k] for k in ("rows_in", "rows_accepted", "rows_quarantined",
                                             "encoding_issues")} for t, s in tables.items()}}


def _age_band(dob_iso: pd.Series, at: pd.Timestamp) -> pd.Series:
    d = pd.to_datetime(dob_iso, format="%Y-%m-%d", errors="coerce")
    age = (at.year - d.dt.year).astype("Int64")
    before = (d.dt.month > at.month) | ((d.dt.month == at.month) & (d.dt.day > at.day))
    age = age - before.astype("Int64")
    bins = [-1, 17, 34, 49, 64, 79, 200]
    labels = ["0-17", "18-34", "35-49", "50-64", "65-79", "80+"]
    band = pd.cut(age, bins=bins, labels=labels).astype(object)
    return band.where(band.notna(), "unknown")


def link_all(paths: Paths, threshold: float = lk.DEFAULT_THRESHOLD, seed: int = 1,
             config_path: str | None = None) -> dict:
    """Link every identifier-bearing source to spine persons; save links and the model."""
    t0 = time.time()
    run = _run_info(paths)
    cfg = load_sources_config(config_path)
    ids, subgroups = {}, []
    at = pd.Timestamp(run["started_at"][:10])
    for table in cfg.identifier_sources:
        spec = cfg[table]
        acc = _accepted(paths, table)
        std = lk.standardise_identifiers(acc, spec)
        ids[table] = std
        eth = acc["EthnicCategory"] if "EthnicCategory" in acc.columns else pd.Series(None, index=acc.index)
        subgroups.append(pd.DataFrame({
            "source": table, "record_id": std["record_id"].to_numpy(),
            "age_band": _age_band(std["dob"], at).to_numpy(),
            "sex": std["sex"].fillna("U").to_numpy(),
            "ethnic_category": eth.fillna("not recorded").to_numpy(dtype=object)
            if "EthnicCategory" in acc.columns else "not in source"}))
    res = lk.link_sources(ids, threshold=threshold, seed=seed)
    rp = res.record_person.merge(pd.concat(subgroups, ignore_index=True), on=["source", "record_id"],
                                 how="left")
    links_dir = paths.identifiable / "links"
    links_dir.mkdir(parents=True, exist_ok=True)
    rp.to_parquet(links_dir / "record_person.parquet", index=False)
    model_dir = paths.identifiable / "linkage_model"
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_json(model_dir / "splink_model.json", res.model)
    rates = {}
    for src, grp in rp.groupby("source"):
        rates[src] = {"records": int(len(grp)), **{r: int(n) for r, n in grp["rule"].value_counts().items()}}
    summary = {"run_id": run["run_id"], "seconds": round(time.time() - t0, 1), **res.summary,
               "records_by_rule": rates}
    _write_json(paths.identifiable / "link_summary.json", summary)
    return summary


def pseudonymise_and_publish(paths: Paths, config_path: str | None = None) -> dict:
    """Build the contract §3 tables with HMAC person ids and swap them into
    analytical/pseudonymised/ atomically. Returns row counts and the key fingerprint."""
    t0 = time.time()
    run = _run_info(paths)
    key = ps.load_key()
    cfg = load_sources_config(config_path)
    accepted = {t: _accepted(paths, t) for t in cfg.sources}
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet",
                         columns=["source", "record_id", "person_key"])
    rp = rp.astype(object).where(rp.notna(), None)
    tables, summary = ps.build_tables(accepted, cfg, rp, key)
    ps.write_tables_atomically(tables, paths.pseudonymised)
    out = {"run_id": run["run_id"], "seconds": round(time.time() - t0, 1),
           "key_fingerprint": ps.key_fingerprint(key), **summary}
    _write_json(paths.identifiable / "publish_summary.json", out)
    return {"run_id": run["run_id"], "seconds": out["seconds"], "key_fingerprint": out["key_fingerprint"],
            "tables": {t: {"rows": s["rows"], "rows_without_person": s["rows_without_person"]}
                       for t, s in summary["tables"].items()}}


def write_ig_report(paths: Paths) -> dict:
    """Raw IG JSON in identifiable/, suppressed HTML + JSON in reports/."""
    from identifiable_zone import ig_report

    return ig_report.write(paths)


__all__ = ["validate_all", "link_all", "pseudonymise_and_publish", "write_ig_report", "ExtractUnusable",
           "SPINE"]
