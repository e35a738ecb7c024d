"""The steps the identifiable-zone DAG runs, one function per task.

Each takes a ``ltceval.settings.Paths`` and returns a small JSON-able summary: counts, rule
names, file names, checksums, the key fingerprint. Never an identifier: return values become
XComs and logs. State between steps lives on disk in the identifiable zone:

    identifiable/run.json                      run id and start time
    identifiable/accepted/<table>.parquet      validated rows (text; dates ISO; NHS numbers cleaned)
    identifiable/quarantine/<table>.parquet    record id, rule, field, row of removed rows
    identifiable/dq_flags/<table>.parquet      record id, rule, field, row of blanked values
    identifiable/validation_summary.json
    identifiable/links/record_person.parquet   source, record_id, person_key, rule, probability,
                                               match weight, subgroup columns
    identifiable/linkage_model/splink_model_<sha>.json, current.json (pointer to the latest)
    identifiable/link_summary.json, identifiable/publish_summary.json

Linkage model: trained per run by default; set ``linkage: {model: current}`` in the sources
config, or the environment variable LTCEVAL_LINKAGE_MODEL to ``current`` or a model file,
to reuse a saved model instead (``train`` forces training).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from identifiable_zone import link as lk
from identifiable_zone import pseudonymise as ps
from identifiable_zone.sources import SPINE, ExtractUnusable, load_sources_config, read_extract
from identifiable_zone.validate import validate_source
from ltceval.settings import REPO_ROOT, Paths

log = logging.getLogger(__name__)

LINKAGE_MODEL_ENV = "LTCEVAL_LINKAGE_MODEL"
_SECRET_WORDS = ("key", "secret", "password", "token", "credential")


def code_version() -> dict:
    """The git commit of the code (with '-dirty' when tracked files changed), else the
    installed package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"git_commit": sha + ("-dirty" if dirty else ""), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version
        try:
            return {"package_version": version("ltceval"), "source": "package"}
        except PackageNotFoundError:
            return {"source": "unknown"}


def redact(obj):
    """A copy of a config structure with any value under a secret-sounding key removed."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(w in str(k).lower() for w in _SECRET_WORDS)
                    and not isinstance(v, (dict, list)) and str(k) != "pseudo_key" else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


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
        df[c] = pd.Series([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
                           for v in df[c].tolist()], index=df.index, dtype=object)
    return df


def validate_all(paths: Paths, run_id: str | None = None, config_path: str | None = None) -> dict:
    """Read and validate every configured landing extract.

    Writes accepted rows, quarantine and flag tables; raises ExtractUnusable (naming file,
    rule and count) when an extract is unusable. Returns per-table counts."""
    t0 = time.time()
    cfg = load_sources_config(config_path)
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    from identifiable_zone.sources import sha256_file

    _write_json(paths.identifiable / "run.json", {
        "run_id": run_id, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources_config": cfg.path, "sources_config_sha256": sha256_file(Path(cfg.path)),
        "mode": cfg.mode, "code_version": code_version(),
        "configuration": redact(cfg.raw),
        "environment_options": {k: os.environ[k] for k in (LINKAGE_MODEL_ENV, "LTCEVAL_SOURCES_CONFIG")
                                if os.environ.get(k)},
        "key_source_configured": [k for k in ("LTCEVAL_PSEUDO_KEY", "LTCEVAL_PSEUDO_KEY_FILE")
                                  if os.environ.get(k)]})
    tables = {}
    for table, spec in cfg.sources.items():
        read = read_extract(paths.landing, spec)
        res = validate_source(read, spec, cfg.quarantine_threshold, latest_date=cfg.reporting_period_end)
        for sub, frame in (("accepted", res.accepted), ("quarantine", res.quarantine),
                           ("dq_flags", res.flags)):
            d = paths.identifiable / sub
            d.mkdir(parents=True, exist_ok=True)
            frame.astype({c: "string" for c in frame.columns if c not in ("row", "line")}).to_parquet(
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


def _birth_iso(acc: pd.DataFrame, spec) -> pd.Series:
    """ISO date of birth (identifiable mode) or first of the birth month (pseudonymised)."""
    from identifiable_zone import normalise as nz

    if "dob" in spec.identifiers:
        return nz.date_to_iso(nz.parse_date(acc[spec.identifiers["dob"]]))
    col = spec.demographics.get("birth_month")
    if col:
        return nz.date_to_iso(nz.parse_date(acc[col].map(lambda v: None if v is None else
                                                       (v + "-01" if len(v) == 7 else v))))
    return pd.Series(None, index=acc.index, dtype=object)


def _subgroups(acc: pd.DataFrame, spec, at: pd.Timestamp, imd: dict) -> pd.DataFrame:
    from identifiable_zone import normalise as nz

    sex_col = spec.identifiers.get("sex") or spec.demographics.get("sex")
    sex = nz.normalise_sex(acc[sex_col]) if sex_col else pd.Series(None, index=acc.index, dtype=object)
    lsoa_col = next((c for c in ("LSOA11", "Der_Postcode_LSOA_2011_Code") if c in acc.columns), None)
    dec = acc[lsoa_col].map(imd) if lsoa_col else pd.Series(None, index=acc.index, dtype=object)
    return pd.DataFrame({
        "source": spec.table, "record_id": acc[spec.record_id].to_numpy(),
        "age_band": _age_band(_birth_iso(acc, spec), at).to_numpy(),
        "sex": sex.where(sex.isin(["M", "F"]), "U").fillna("U").to_numpy(),
        "ethnic_category": acc["EthnicCategory"].fillna("not recorded").to_numpy(dtype=object)
        if "EthnicCategory" in acc.columns else "not in source",
        "imd_decile": dec.fillna("unknown").astype(str).to_numpy(dtype=object)
        if lsoa_col else "not in source"})


def resolve_model_option(cfg) -> str:
    """'train', 'current' or a model file: $LTCEVAL_LINKAGE_MODEL, else the config's
    linkage.model, else 'train'."""
    return os.environ.get(LINKAGE_MODEL_ENV) or str(cfg.linkage.get("model", "train"))


def link_all(paths: Paths, threshold: float | None = None, seed: int = 1,
             config_path: str | None = None, model: str | None = None) -> dict:
    """Link every person source to spine persons; save links and the (versioned) model.

    ``model``: 'train' (default), 'current' (reuse the saved current model) or a model file;
    when None it comes from $LTCEVAL_LINKAGE_MODEL or the config."""
    t0 = time.time()
    run = _run_info(paths)
    cfg = load_sources_config(config_path)
    threshold = float(threshold if threshold is not None else cfg.linkage.get("threshold", lk.DEFAULT_THRESHOLD))
    model_dir = paths.identifiable / "linkage_model"
    option = model or resolve_model_option(cfg)
    given, model_file = None, None
    if cfg.mode != "upstream_pseudonymised" and option != "train":
        given, model_file = lk.load_model(option, model_dir)  # fail early, before any reading
    at = pd.Timestamp(run["started_at"][:10])
    imd = {}
    if "lsoa_imd" in cfg.sources and (paths.identifiable / "accepted" / "lsoa_imd.parquet").exists():
        ref = _accepted(paths, "lsoa_imd")
        imd = dict(zip(ref["LSOA11"], ref["IMD_Decile"]))
    ids, subgroups = {}, []
    for table in cfg.identifier_sources:
        spec = cfg[table]
        acc = _accepted(paths, table)
        if cfg.mode == "upstream_pseudonymised":
            ids[table] = pd.DataFrame({"record_id": acc[spec.record_id].to_numpy(),
                                       "pseudo_key": acc[spec.pseudo_key].to_numpy(dtype=object)})
        else:
            ids[table] = lk.standardise_identifiers(acc, spec)
        subgroups.append(_subgroups(acc, spec, at, imd))
    model_info = None
    if cfg.mode == "upstream_pseudonymised":
        res = lk.link_pseudonymised(ids)
    else:
        res = lk.link_sources(ids, threshold=threshold, seed=seed, model=given)
        if res.model is not None:
            pointer = lk.save_model(res.model, model_dir, run["run_id"]) if given is None else None
            model_info = {"option": option, "trained": given is None,
                          "file": pointer["file"] if pointer else model_file,
                          "sha": lk.model_sha(res.model),
                          "term_frequency_adjusted": [c["output_column_name"] for c in res.model["comparisons"]
                                                      if any(lv.get("tf_adjustment_column")
                                                             for lv in c["comparison_levels"])]}
    rp = res.record_person.merge(pd.concat(subgroups, ignore_index=True), on=["source", "record_id"],
                                 how="left")
    links_dir = paths.identifiable / "links"
    links_dir.mkdir(parents=True, exist_ok=True)
    rp.to_parquet(links_dir / "record_person.parquet", index=False)
    rates = {}
    for src, grp in rp.groupby("source"):
        rates[src] = {"records": int(len(grp)), **{r: int(n) for r, n in grp["rule"].value_counts().items()}}
    summary = {"run_id": run["run_id"], "seconds": round(time.time() - t0, 1), **res.summary,
               "model": model_info, "records_by_rule": rates}
    _write_json(paths.identifiable / "link_summary.json", summary)
    return summary


def pseudonymise_and_publish(paths: Paths, config_path: str | None = None) -> dict:
    """Build the contract §3 tables with HMAC person ids and swap them into
    analytical/pseudonymised/ atomically. Returns row counts and the key fingerprint."""
    t0 = time.time()
    run = _run_info(paths)
    key, key_source = ps.load_key_with_source()
    cfg = load_sources_config(config_path)
    accepted = {t: _accepted(paths, t) for t in cfg.sources}
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet",
                         columns=["source", "record_id", "person_key"])
    rp = rp.astype(object).where(rp.notna(), None)
    tables, summary = ps.build_tables(accepted, cfg, rp, key)
    ps.write_tables_atomically(tables, paths.pseudonymised)
    out = {"run_id": run["run_id"], "seconds": round(time.time() - t0, 1),
           "key_fingerprint": ps.key_fingerprint(key), "key_source": key_source, **summary}
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
