"""The steps the identifiable-zone DAG runs, one function per task.

Each takes a ``ltceval.settings.Paths`` and returns a small JSON-able summary: counts, rule
names, file names, checksums, the key fingerprint. Never an identifier: return values become
XComs and logs. State between steps lives on disk in the identifiable zone:

    identifiable/run.json                      run id, start time, data period
    identifiable/input_manifest.json           every input file: checksum, rows, validated or cached
    identifiable/validation_cache/<table>/     each file's validation result, keyed by its SHA-256
    identifiable/accepted/<table>.parquet      validated rows (text; dates ISO; NHS numbers cleaned)
    identifiable/quarantine/<table>.parquet    record id, rule, field, row of removed rows
    identifiable/dq_flags/<table>.parquet      record id, rule, field, row of blanked values
    identifiable/validation_summary.json
    identifiable/links/record_person.parquet   source, record_id, person_key, rule, probability,
                                               match weight, subgroup columns
    identifiable/linkage_model/splink_model_<sha>.json, current.json (pointer to the latest)
    identifiable/link_summary.json, identifiable/publish_summary.json

Monthly operation: a source may arrive as one file a month (a glob in the sources config).
Validation is per file and cached by checksum, so a run after a new month's delivery reads and
validates only the new (or changed) files. Linkage, pseudonymisation and everything after run
over all months every time: a new record can change the links of old ones (a new A&E record
with a corrected NHS number can join two records that were one person's all along; the
probabilistic model's parameters and term frequencies change with the data), and person ids
must be consistent across months, so an incremental linkage would give results that depend on
the order of deliveries. Those steps take a minute or two on an ICS population.

Linkage model: trained per run by default; set ``linkage: {model: current}`` in the sources
config, or the environment variable LTCEVAL_LINKAGE_MODEL to ``current`` or a model file,
to reuse a saved model instead (``train`` forces training).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
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
from ltceval.publish import PERIOD_ENV, period_end, period_of, requested_period
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
    """Read and validate every configured landing extract, file by file.

    A source may arrive as several files (one a month: ``file`` in the sources config is a
    glob); each file is validated on its own and its result (accepted rows with normalised
    values, quarantine, flags, summary) cached under ``identifiable/validation_cache/`` keyed
    by the file's SHA-256 and everything else the result depends on (the source's config,
    the validation code, the parent rows its life rules read, and the latest allowed date
    when the file holds dates beyond it). A file seen before is not read again; a changed
    or new file is. Rules that span files (exact duplicate rows, unique record ids) are then
    applied across all of a source's files, so the result is the same as validating the
    stacked source. ``identifiable/input_manifest.json`` lists every input file, its checksum
    and whether it was validated or taken from the cache.

    Writes accepted rows, quarantine and flag tables per source; raises ExtractUnusable
    (naming file, rule and count) when an extract is unusable. Derives the data period (the
    last month with recorded activity) and checks it against ``LTCEVAL_PERIOD`` when given.
    Returns per-table counts, the period and file counts."""
    t0 = time.time()
    cfg = load_sources_config(config_path)
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    from identifiable_zone.sources import sha256_file

    run = {
        "run_id": run_id, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources_config": cfg.path, "sources_config_sha256": sha256_file(Path(cfg.path)),
        "mode": cfg.mode, "code_version": code_version(),
        "configuration": redact(cfg.raw),
        "environment_options": {k: os.environ[k] for k in (LINKAGE_MODEL_ENV, "LTCEVAL_SOURCES_CONFIG",
                                                           PERIOD_ENV)
                                if os.environ.get(k)},
        "key_source_configured": [k for k in ("LTCEVAL_PSEUDO_KEY", "LTCEVAL_PSEUDO_KEY_FILE")
                                  if os.environ.get(k)]}
    _write_json(paths.identifiable / "run.json", run)
    latest = cfg.reporting_period_end or datetime.now(timezone.utc).date().isoformat()
    cache = _ValidationCache(paths.identifiable / "validation_cache")
    tables, accepted, manifest = {}, {}, []
    for table in _parents_first(cfg):
        spec = cfg[table]
        parents = {t: accepted[t] for t in _life_parents(spec) if t in accepted}
        res, files = _validate_source_files(paths, cfg, spec, latest, parents, cache)
        accepted[table] = res["accepted"]
        manifest += [{"table": table, **f} for f in files]
        tables[table] = res["summary"]
        n_cached = sum(f["validation"] == "cached" for f in files)
        log.info("%s: %d file(s), %d validated, %d unchanged (cached); %d rows in, %d accepted, %d quarantined",
                 table, len(files), len(files) - n_cached, n_cached, res["summary"]["rows_in"],
                 res["summary"]["rows_accepted"], res["summary"]["rows_quarantined"])
    cache.prune()
    tables = {t: tables[t] for t in cfg.sources}  # config order, as before
    period = _data_period(cfg, accepted, manifest)
    run.update(period)
    _write_json(paths.identifiable / "run.json", run)
    _write_json(paths.identifiable / "validation_summary.json", {"run_id": run_id, "tables": tables,
                                                                 "period": period["period"]})
    n_cached = sum(f["validation"] == "cached" for f in manifest)
    _write_json(paths.identifiable / "input_manifest.json", {
        "run_id": run_id, "period": period["period"], "latest_date_allowed": latest,
        "files_validated": len(manifest) - n_cached, "files_cached": n_cached, "files": manifest})
    log.info("data period %s (%s); %d input file(s): %d validated, %d unchanged (cached)", period["period"],
             period["period_source"], len(manifest), len(manifest) - n_cached, n_cached)
    return {"run_id": run_id, "seconds": round(time.time() - t0, 1), "period": period["period"],
            "files": {"validated": len(manifest) - n_cached, "cached": n_cached},
            "tables": {t: {k: s[k] for k in ("rows_in", "rows_accepted", "rows_quarantined",
                                             "encoding_issues")} for t, s in tables.items()}}


# -- data period -------------------------------------------------------------------------------

# Activity dates (contract names) that bound the study calendar, as in dbt's
# int_calendar_months: the data period is the month of the latest of them.
ACTIVITY_DATES = {"ecds": "Arrival_Date", "apc": "Admission_Date", "opa": "APPTDATE",
                  "gp_appointments": "AppointmentDate", "iapt_ids201_care_contact": "CareContDate"}


class DataPeriodError(RuntimeError):
    """The data period asked for does not match the extracts (or cannot be told)."""


def _data_period(cfg, accepted: dict, manifest: list) -> dict:
    latest, where = None, None
    for table, col in ACTIVITY_DATES.items():
        if table in accepted and col in accepted[table].columns:
            vals = accepted[table][col].dropna()
            if len(vals):
                m = str(vals.max())
                if latest is None or m > latest:
                    latest, where = m, table
    asked = requested_period()
    if latest is None:
        if asked is None:
            raise DataPeriodError("no activity dates in the extracts, so the data period cannot be told; "
                                  f"set {PERIOD_ENV}=YYYY-MM")
        return {"period": asked, "period_source": f"{PERIOD_ENV} (no activity dates in the extracts)",
                "latest_activity_date": None}
    derived = period_of(latest)
    if asked is not None and asked != derived:
        files = sorted({f["file"] for f in manifest if f["table"] == where})
        raise DataPeriodError(
            f"{PERIOD_ENV}={asked} but the extracts hold activity up to {latest} ({where}: "
            f"{', '.join(files[-3:])}); "
            + ("remove the later files or ask for that period" if derived > asked else
               f"the extracts for {asked} look missing from landing/"))
    return {"period": derived, "latest_activity_date": latest,
            "period_source": f"{PERIOD_ENV} (agrees with the extracts)" if asked else
            f"the extracts (latest activity date, {where})"}


# -- per-file validation with a cache keyed by checksum ------------------------------------------

_CODE_FILES = ("validate.py", "normalise.py", "sources.py")


def _life_parents(spec) -> list[str]:
    life = getattr(spec, "life", None)
    if life is None:
        return []
    return [ref.table for ref in (life.birth, life.death) if ref is not None and ref.table]


def _parents_first(cfg) -> list[str]:
    """Config order, except that a table comes after the parents its life rules read."""
    order, seen = [], set()

    def visit(t, stack=()):
        if t in seen or t not in cfg.sources or t in stack:
            return
        for p in _life_parents(cfg[t]):
            visit(p, stack + (t,))
        seen.add(t)
        order.append(t)

    for t in cfg.sources:
        visit(t)
    return order


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _code_digest() -> str:
    import great_expectations

    here = Path(__file__).resolve().parent
    h = hashlib.sha256(great_expectations.__version__.encode())
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def _parent_refs(spec) -> list:
    life = getattr(spec, "life", None)
    return [] if life is None else [r for r in (life.birth, life.death) if r is not None and r.table]


def _parent_digest(spec, parents: dict, keys: pd.DataFrame | None) -> str | None:
    """What the life rules of a file read from its parents: for each of the file's rows, the
    parent's date (None if the parent row is missing or its id is not unique)."""
    refs = _parent_refs(spec)
    if not refs:
        return None
    parts = []
    for ref in refs:
        parent = parents.get(ref.table)
        if parent is None or keys is None or f"fk__{ref.key}" not in keys.columns:
            parts.append([ref.table, ref.column, "not given"])
            continue
        p = parent[[ref.parent_id, ref.column]].dropna(subset=[ref.parent_id])
        p = p[~p[ref.parent_id].duplicated(keep=False)]
        lookup = dict(zip(p[ref.parent_id].tolist(), p[ref.column].tolist()))
        parts.append([ref.table, ref.column, [lookup.get(k) for k in keys[f"fk__{ref.key}"].tolist()]])
    return _digest(parts)


class _ValidationCache:
    """Validated files under ``root/<table>/<entry>/``; an entry is complete or absent (built in a
    temporary folder and renamed). Entries no run has used are pruned at the end of a run."""

    def __init__(self, root: Path):
        self.root = root
        self.used: set[Path] = set()
        self._code = None

    @property
    def code(self) -> str:
        if self._code is None:
            self._code = _code_digest()
        return self._code

    def key(self, spec, cfg, rel: str, sha: str) -> str:
        spec_json = dataclasses.asdict(spec)
        spec_json.pop("file", None)
        return sha[:24] + "-" + _digest([rel, spec_json, cfg.quarantine_threshold, self.code])[:16]

    def get(self, table: str, key: str, latest: str, spec, parents: dict):
        d = self.root / table / key
        meta_path = d / "entry.json"
        if not meta_path.exists():
            return None
        meta = _read_json(meta_path)
        if meta["latest"] != latest and meta["max_date"] is not None and \
                meta["max_date"] > min(latest, meta["latest"]):
            return None  # a date in the file is judged differently by date_not_future now
        keys = pd.read_parquet(d / "rowkeys.parquet")
        if _parent_digest(spec, parents, keys) != meta.get("parents"):
            return None
        self.used.add(d)
        return {"accepted": pd.read_parquet(d / "accepted.parquet"),
                "quarantine": pd.read_parquet(d / "quarantine.parquet"),
                "dq_flags": pd.read_parquet(d / "dq_flags.parquet"),
                "rowkeys": keys, "summary": meta["summary"]}

    def put(self, table: str, key: str, entry: dict, meta: dict) -> None:
        d = self.root / table / key
        tmp = d.parent / f".{key}.tmp-{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        try:
            for name in ("accepted", "quarantine", "dq_flags", "rowkeys"):
                _to_parquet(entry[name], tmp / f"{name}.parquet")
            _write_json(tmp / "entry.json", meta)
            if d.exists():
                shutil.rmtree(d)
            os.replace(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.used.add(d)

    def prune(self) -> None:
        if not self.root.is_dir():
            return
        for tdir in self.root.iterdir():
            for d in (tdir.iterdir() if tdir.is_dir() else ()):
                if d not in self.used:
                    shutil.rmtree(d, ignore_errors=True)
            if tdir.is_dir() and not any(tdir.iterdir()):
                tdir.rmdir()


def _to_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.astype({c: "string" for c in frame.columns if c not in ("row", "line", "row_hash")}).to_parquet(
        path, index=False)


def _max_date(frame: pd.DataFrame, spec) -> str | None:
    from identifiable_zone import normalise as nz

    best = None
    for col in spec.dates:
        if col in frame.columns:
            iso = nz.date_to_iso(nz.parse_date(frame[col])).dropna()
            if len(iso) and (best is None or iso.max() > best):
                best = str(iso.max())
    return best


def _validate_one_file(paths: Paths, cfg, spec, rel: str, latest: str, parents: dict) -> tuple[dict, dict]:
    """Validate one landing file of a source on its own: the cache entry and its metadata."""
    import glob as _glob

    read = read_extract(paths.landing, dataclasses.replace(spec, file=_glob.escape(rel)))
    if [f["file"] for f in read.files] != [rel]:
        raise ExtractUnusable(f"{spec.table} ({rel}): the file changed while it was read; run again")
    kwargs = {"parents": parents} if _parent_refs(spec) else {}
    res = validate_source(read, spec, cfg.quarantine_threshold, latest_date=latest, **kwargs)
    df = read.frame[list(spec.columns)].reset_index(drop=True)
    keys = pd.DataFrame({
        "row": pd.Series(range(len(df)), dtype="int64"),
        "record_id": df[spec.record_id].astype(object),
        "row_hash": pd.util.hash_pandas_object(df.astype(object), index=False).astype("uint64"),
        "line": pd.Series(read.row_line if read.row_line is not None else range(2, len(df) + 2),
                          dtype="int64")})
    for ref in _parent_refs(spec):
        keys[f"fk__{ref.key}"] = df[ref.key].astype(object)
    entry = {"accepted": res.accepted, "quarantine": res.quarantine, "dq_flags": res.flags,
             "rowkeys": keys, "summary": res.summary}
    meta = {"file": rel, "sha256": read.files[0]["sha256"], "latest": latest, "max_date": _max_date(df, spec),
            "parents": _parent_digest(spec, parents, keys), "summary": res.summary}
    return entry, meta


def _validate_source_files(paths: Paths, cfg, spec, latest: str, parents: dict,
                           cache: _ValidationCache) -> tuple[dict, list[dict]]:
    """One source: each file from the cache or validated, then combined (cross-file rules)."""
    from identifiable_zone.sources import resolve_files, sha256_file

    files = resolve_files(paths.landing, spec)
    if not files:
        raise ExtractUnusable(f"{spec.table}: no file matches landing/{spec.file} (rule: file_present)")
    entries, infos = [], []
    for f in files:
        rel = str(f.relative_to(paths.landing))
        sha = sha256_file(f)
        key = cache.key(spec, cfg, rel, sha)
        entry = cache.get(spec.table, key, latest, spec, parents)
        status = "cached"
        if entry is None:
            entry, meta = _validate_one_file(paths, cfg, spec, rel, latest, parents)
            if meta["sha256"] != sha:
                key = cache.key(spec, cfg, rel, meta["sha256"])
            cache.put(spec.table, key, entry, meta)
            status = "validated"
        entries.append(entry)
        info = entry["summary"]["files"][0]
        infos.append({"file": info["file"], "sha256": info["sha256"], "rows": info["rows"],
                      "bytes": info["bytes"], "validation": status})
    res = entries[0] if len(entries) == 1 else _combine(spec, cfg, entries)
    for sub in ("accepted", "quarantine", "dq_flags"):
        d = paths.identifiable / sub
        d.mkdir(parents=True, exist_ok=True)
        _to_parquet(res[sub], d / f"{spec.table}.parquet")
    accepted = res["accepted"]
    accepted = accepted.astype(object).where(accepted.notna(), None)
    return {"accepted": accepted, "summary": res["summary"]}, infos


def _combine(spec, cfg, entries: list[dict]) -> dict:
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
    # ages at the end of the data period (not the run date): a rerun of a period on another
    # day gives the same subgroups
    at = pd.Timestamp(period_end(run["period"]) if run.get("period") else run["started_at"][:10])
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
    """Raw IG JSON in identifiable/, suppressed HTML + JSON in ``paths.reports`` (the DAG points
    that at the run's unpublished version folder). A write error names the folder."""
    from identifiable_zone import ig_report
    from ltceval.publish import output_guard

    with output_guard(paths.reports):
        return ig_report.write(paths)


__all__ = ["validate_all", "link_all", "pseudonymise_and_publish", "write_ig_report", "ExtractUnusable",
           "SPINE"]
