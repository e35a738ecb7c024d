"""The steps the identifiable-zone DAG runs, one function per task.

Each takes a ``core.settings.Paths`` and returns a small JSON-able summary: counts, rule
names, file names, checksums, the key fingerprint. Never an identifier: return values become
XComs and logs. State between steps lives on disk in the identifiable zone:

    identifiable/run.json                      run id, start time, data period
    identifiable/input_manifest.json           every input file: checksum, rows, validated or cached
                                               (and, for a database source, where it was read
                                               from and the SHA-256 of the statement run)
    identifiable/extracted/database/<table>.parquet   a database source's rows, as text
    identifiable/validation_cache/<table>/     each file's validation result, keyed by its SHA-256
    identifiable/accepted/<table>.parquet      validated rows (text; dates ISO; NHS numbers cleaned)
    identifiable/quarantine/<table>.parquet    record id, rule, field, row of removed rows
    identifiable/dq_flags/<table>.parquet      record id, rule, field, row of blanked values
    identifiable/validation_summary.json
    identifiable/links/record_person.parquet   source, record_id, person_key, rule, probability,
                                               match weight, best candidate (person, spine
                                               record), subgroup columns
    identifiable/linkage_model/splink_model_<sha>.json, current.json (pointer to the latest)
    identifiable/link_summary.json, identifiable/publish_summary.json
    identifiable/linkage_spill/, pseudonymise_spill/   where DuckDB spills (it removes its files)
    identifiable/spark/                        LTCEVAL_ENGINE=spark: Spark's temp, spill and splink
                                               checkpoint files during a step (``spark_engine``)

Monthly operation: a source may arrive as one file a month (a glob in the sources config).
Validation is per file and cached by checksum, so a run after a new month's delivery reads and
validates only the new (or changed) files. Linkage, pseudonymisation and everything after run
over all months every time: a new record can change the links of old ones (a new A&E record
with a corrected NHS number can join two records that were one person's all along; the
probabilistic model's parameters and term frequencies change with the data), and person ids
must be consistent across months, so an incremental linkage would give results that depend on
the order of deliveries. Those steps take a minute or two on an ICS population.

Where the parts live: run provenance (``provenance``), the data period (``data_period``), the
per-file validation cache (``validation_cache``), rules across a source's files
(``cross_file_rules``) and the subgroup columns of the linkage-rate tables (``subgroups``);
this module only sequences them.

Linkage model: trained per run by default; set ``linkage: {model: current}`` in the sources
config, or the environment variable LTCEVAL_LINKAGE_MODEL to ``current`` or a model file,
to reuse a saved model instead (``train`` forces training).
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import nullcontext
from datetime import datetime, timezone

import pandas as pd

from core import progress
from core.contract import SEEDS
from core.files import output_guard, private_folder, read_json, sha256_file, write_json_atomic
from core.periods import period_end
from core.settings import LINKAGE_MODEL_ENV, Paths, engine, env_value, validation_workers
from identifiable_zone import database_extracts
from identifiable_zone import link as lk
from identifiable_zone import link_records
from identifiable_zone import mps
from identifiable_zone import pseudonymise as ps
from identifiable_zone.cross_file_rules import Part, combine_parts, read_text_parquet
from identifiable_zone.data_period import ACTIVITY_DATES, derive_data_period
from identifiable_zone.provenance import new_run_record, read_run_record, run_record_path
from identifiable_zone.sources import SPINE, ExtractUnusable, load_sources_config, resolve_files
from identifiable_zone.subgroups import subgroup_columns
from identifiable_zone.file_validation import SegmentPool, validate_file
from identifiable_zone.validate import check_quarantine_threshold, parent_dates
from identifiable_zone.validation_cache import ValidationCache, parent_digest

log = logging.getLogger(__name__)
# every step below writes identifiable data there: owner only (folders 0700, files 0600)
_private_zone = private_folder(lambda paths, *args, **kwargs: paths.identifiable)


def _accepted(paths: Paths, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    return read_text_parquet(paths.identifiable / "accepted" / f"{table}.parquet", columns)


@_private_zone
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
    run = new_run_record(cfg, run_id)
    write_json_atomic(run_record_path(paths), run)
    latest = cfg.reporting_period_end or datetime.now(timezone.utc).date().isoformat()
    cache = ValidationCache(paths.identifiable / "validation_cache")
    tables, accepted, latest_activity, manifest = {}, {}, {}, []
    order = _parents_first(cfg)
    parent_columns = _parent_columns(cfg)
    # one pool of segment workers for every file of the run (started by the first large file);
    # on Spark (LTCEVAL_ENGINE), one session validates every file, stopped at the end
    if engine() == "spark":
        from identifiable_zone.spark_validation import SparkSegmentPool  # pyspark on the Spark engine only

        segment_pool = SparkSegmentPool(paths)
    else:
        segment_pool = SegmentPool(validation_workers())
    with segment_pool as pool:
        for i, table in enumerate(order, 1):
            spec = cfg[table]
            parents = {ref.table: accepted[ref.table] for ref in spec.parent_date_refs if ref.table in accepted}
            summary, files = _validate_source_files(paths, cfg, spec, latest, parents, cache, (i, len(order)), pool)
            # only the columns later sources' life rules read are held (GP patients' ids and dates)
            if parent_columns.get(table):
                accepted[table] = _accepted(paths, table, parent_columns[table])
            if table in ACTIVITY_DATES:
                latest_activity[table] = _latest_value(paths, table, ACTIVITY_DATES[table])
            manifest += [{"table": table, **f} for f in files]
            tables[table] = summary
            n_cached = sum(f["validation"] == "cached" for f in files)
            log.info("%s: %d file(s), %d validated, %d unchanged (cached); %d rows in, %d accepted, %d quarantined",
                     table, len(files), len(files) - n_cached, n_cached, summary["rows_in"],
                     summary["rows_accepted"], summary["rows_quarantined"])
    cache.prune()
    tables = {t: tables[t] for t in cfg.sources}  # config order, as before
    period = derive_data_period(latest_activity, manifest)
    run.update(period)
    write_json_atomic(run_record_path(paths), run)
    write_json_atomic(paths.identifiable / "validation_summary.json", {"run_id": run_id, "tables": tables,
                                                                 "period": period["period"]})
    n_cached = sum(f["validation"] == "cached" for f in manifest)
    write_json_atomic(paths.identifiable / "input_manifest.json", {
        "run_id": run_id, "period": period["period"], "latest_date_allowed": latest,
        "files_validated": len(manifest) - n_cached, "files_cached": n_cached, "files": manifest})
    log.info("data period %s (%s); %d input file(s): %d validated, %d unchanged (cached)", period["period"],
             period["period_source"], len(manifest), len(manifest) - n_cached, n_cached)
    return {"run_id": run_id, "seconds": round(time.time() - t0, 1), "period": period["period"],
            "files": {"validated": len(manifest) - n_cached, "cached": n_cached},
            "tables": {t: {k: s[k] for k in ("rows_in", "rows_accepted", "rows_quarantined",
                                             "encoding_issues")} for t, s in tables.items()}}


def _parent_columns(cfg) -> dict[str, list[str]]:
    """Per table, the accepted columns other tables' life rules look up (parent id and dates)."""
    cols: dict[str, list[str]] = {}
    for t in cfg.sources:
        for ref in cfg[t].parent_date_refs:
            cols.setdefault(ref.table, []).extend([ref.parent_id, ref.column])
    return {t: list(dict.fromkeys(c)) for t, c in cols.items()}


def _latest_value(paths: Paths, table: str, column: str) -> str | None:
    """The largest value of an accepted text column (ISO dates: the latest), read by DuckDB."""
    import duckdb

    path = paths.identifiable / "accepted" / f"{table}.parquet"
    con = duckdb.connect(":memory:")
    try:
        if column not in [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]:
            return None
        value = con.execute(f'SELECT max("{column}") FROM read_parquet(?)', [str(path)]).fetchone()[0]
    finally:
        con.close()
    return None if value is None else str(value)


def _parents_first(cfg) -> list[str]:
    """Config order, except that a table comes after the parents its life rules read."""
    order, seen = [], set()

    def visit(t, stack=()):
        if t in seen or t not in cfg.sources or t in stack:
            return
        for ref in cfg[t].parent_date_refs:
            visit(ref.table, stack + (t,))
        seen.add(t)
        order.append(t)

    for t in cfg.sources:
        visit(t)
    return order


def _validate_source_files(paths: Paths, cfg, spec, latest: str, parents: dict, cache: ValidationCache,
                           position: tuple[int, int] = (1, 1),
                           pool: SegmentPool | None = None) -> tuple[dict, list[dict]]:
    """One source: each file from the cache or validated into it (``file_validation``), then
    the files combined into ``identifiable/{accepted,quarantine,dq_flags}/<table>.parquet``
    (``cross_file_rules``). ``position``: which source of how many this is (progress lines).
    Returns the source's summary and the manifest rows of its files."""
    root, read = paths.landing, None
    if spec.database is not None:  # read into the zone first, then validated as a landing file is
        root = database_extracts.extracted_root(paths.identifiable)
        read = database_extracts.read_to_parquet(spec, root)
        progress.report("validate", "%s read from %s: %s rows in %.0f s", spec.table, read["from"],
                        f"{read['rows']:,}", read["seconds"])
    files = resolve_files(root, spec)
    if not files:
        raise ExtractUnusable(f"{spec.table}: no file matches landing/{spec.file} (rule: file_present)")
    parts, infos = [], []
    mib_total, mib_done, rows_done = sum(f.stat().st_size for f in files) / 2**20, 0.0, 0
    # the parents' dates as the life rules see them, worked out once for all files of the
    # source: the cache check, the validation and the digest all read them
    lookups = parent_dates(spec, parents)
    for n_done, f in enumerate(files, 1):
        rel = str(f.relative_to(root))
        sha = sha256_file(f)
        key = cache.key(spec, cfg, rel, sha)
        found = cache.get(spec.table, key, latest, spec, lookups)
        status = "cached"
        if found is None:
            with cache.new_entry(spec.table, key) as tmp:
                meta = validate_file(root, spec, rel, latest, lookups, cfg.quarantine_threshold, tmp,
                                     sha256=sha, pool=pool)
                meta["parents"] = parent_digest(spec, lookups, tmp)
                write_json_atomic(tmp / "entry.json", meta)
            # the entry just written, read back without get(): that hashed every row's parent
            # dates a second time (about a minute for GP appointments at 2M people)
            entry = cache.entry(spec.table, key)
            found = entry, read_json(entry / "entry.json")
            status = "validated"
        entry_dir, meta = found
        info = meta["summary"]["files"][0]
        parts.append(Part(entry_dir, int(meta["summary"]["rows_in"]), meta["summary"], rel))
        infos.append({"file": info["file"], "sha256": info["sha256"], "rows": info["rows"],
                      "bytes": info["bytes"], "validation": status,
                      **({"database": {k: v for k, v in read.items() if k != "table"}} if read else {})})
        mib_done, rows_done = mib_done + info["bytes"] / 2**20, rows_done + info["rows"]
        progress.report("validate", "%s %d/%d files, %s rows, %.1f of %.1f MiB (source %d of %d)", spec.table,
                        n_done, len(files), f"{rows_done:,}", mib_done, mib_total, *position)
    out = {}
    for sub in ("accepted", "quarantine", "dq_flags"):
        (paths.identifiable / sub).mkdir(parents=True, exist_ok=True)
        out[sub] = paths.identifiable / sub / f"{spec.table}.parquet"
    summary, quarantine = combine_parts(spec, parts, out)
    if len(parts) > 1:
        check_quarantine_threshold(spec.table, f"{len(parts)} files", summary["rows_in"], quarantine,
                                   cfg.quarantine_threshold)
    return summary, infos


def _accepted_counts(paths: Paths) -> dict[str, int]:
    """Accepted rows per source, as validation recorded them (the totals of the progress lines)."""
    import json

    try:
        tables = json.loads((paths.identifiable / "validation_summary.json").read_text())["tables"]
        return {t: int(s["rows_accepted"]) for t, s in tables.items()}
    except (OSError, ValueError, KeyError, TypeError):  # progress only: a total of 0 shows done counts
        return {}


def resolve_model_option(cfg) -> str:
    """'train', 'current' or a model file: $LTCEVAL_LINKAGE_MODEL, else the config's
    linkage.model, else 'train'."""
    return env_value(LINKAGE_MODEL_ENV) or str(cfg.linkage.get("model", "train"))


def _engine_session(paths: Paths):
    """The identifiable zone's Spark session on the spark engine (``LTCEVAL_ENGINE``), else
    none (a context yielding None): pyspark is imported only on the spark engine."""
    if engine() == "spark":
        from identifiable_zone.spark_engine import zone_session

        return zone_session(paths)
    return nullcontext(None)


@_private_zone
def link_all(paths: Paths, threshold: float | None = None, seed: int = SEEDS.linkage,
             config_path: str | None = None, model: str | None = None) -> dict:
    """Link every person source to spine persons; save links and the (versioned) model.

    ``model``: 'train' (default), 'current' (reuse the saved current model) or a model file;
    when None it comes from $LTCEVAL_LINKAGE_MODEL or the config."""
    t0 = time.time()
    run = read_run_record(paths)
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
    links_file = paths.identifiable / "links" / "record_person.parquet"
    model_info = None
    if cfg.mode == "upstream_pseudonymised":
        link_summary, rates = _link_upstream_pseudonymised(paths, cfg, at, imd, links_file, _accepted_counts(paths))
    else:
        with _engine_session(paths) as spark:
            link_summary, trained, rates = link_records.link_accepted(
                paths.identifiable / "accepted", cfg, at, imd, links_file, paths.identifiable / "linkage_staging",
                threshold=threshold, seed=seed, model=given, spill_dir=paths.identifiable / "linkage_spill",
                spark=spark)
        link_summary["engine"] = "spark" if spark is not None else "duckdb"
        by_way = mps.kind_counts(paths.identifiable / "accepted", cfg)
        by_mps_id = mps.link_by_mps_id(paths.identifiable / "accepted", cfg, links_file,
                                       paths.identifiable / "linkage_spill")
        if by_mps_id is not None:
            for src, n in by_mps_id.items():
                if n:
                    rates[src]["unlinked"] -= n
                    rates[src][mps.MPS_RULE] = n
            link_summary["mps_person_id"] = {"records_by_way": by_way, "linked_by_mps_id": by_mps_id}
        if trained is not None:
            pointer = lk.save_model(trained, model_dir, run["run_id"]) if given is None else None
            model_info = {"option": option, "trained": given is None,
                          "file": pointer["file"] if pointer else model_file,
                          "sha": lk.model_sha(trained),
                          "term_frequency_adjusted": [c["output_column_name"] for c in trained["comparisons"]
                                                      if any(lv.get("tf_adjustment_column")
                                                             for lv in c["comparison_levels"])]}
    records = sum(r["records"] for r in rates.values())
    unlinked = sum(r.get("unlinked", 0) for r in rates.values())
    progress.report("link", "%s records linked (%s to a spine person) in %.0f s", f"{records:,}",
                    f"{records - unlinked:,}", time.time() - t0)
    summary = {"run_id": run["run_id"], "seconds": round(time.time() - t0, 1), **link_summary,
               "model": model_info, "records_by_rule": rates}
    write_json_atomic(paths.identifiable / "link_summary.json", summary)
    return summary


def _link_upstream_pseudonymised(paths: Paths, cfg, at, imd: dict, links_file, expected: dict) -> tuple[dict, dict]:
    """Deterministic linkage on the upstream key (no identifiers), on whole frames."""
    keys, subgroups = {}, []
    sources = list(cfg.identifier_sources)
    total, done = sum(expected.get(t, 0) for t in sources), 0
    for i, table in enumerate(sources, 1):
        spec = cfg[table]
        acc = _accepted(paths, table)
        keys[table] = pd.DataFrame({"record_id": acc[spec.record_id].to_numpy(),
                                    "pseudo_key": acc[spec.pseudo_key].to_numpy(dtype=object)})
        subgroups.append(subgroup_columns(acc, spec, at, imd))
        done += len(acc)
        progress.report("link", "%s read and standardised, %d/%d sources, %s of %s records", table, i,
                        len(sources), f"{done:,}", f"{max(total, done):,}")
    res = lk.link_pseudonymised(keys)
    rp = res.record_person.merge(pd.concat(subgroups, ignore_index=True), on=["source", "record_id"],
                                 how="left")
    links_file.parent.mkdir(parents=True, exist_ok=True)
    rp.to_parquet(links_file, index=False)
    rates = {}
    for src, grp in rp.groupby("source"):
        rates[src] = {"records": int(len(grp)), **{r: int(n) for r, n in grp["rule"].value_counts().items()}}
    return res.summary, rates


@_private_zone
def pseudonymise_and_publish(paths: Paths, config_path: str | None = None) -> dict:
    """Build the contract §3 tables with HMAC person ids and swap them into
    analytical/pseudonymised/ atomically. Returns row counts and the key fingerprint."""
    t0 = time.time()
    run = read_run_record(paths)
    key, key_source = ps.load_key_with_source()
    cfg = load_sources_config(config_path)
    counts = _accepted_counts(paths)
    scenarios = read_json(paths.identifiable / "link_summary.json").get("threshold_scenarios")
    with ps.publish_folder_atomically(paths.pseudonymised) as folder, _engine_session(paths) as spark:
        summary = ps.build_tables(paths.identifiable / "accepted", cfg,
                                  paths.identifiable / "links" / "record_person.parquet", key, folder,
                                  spill_dir=paths.identifiable / "pseudonymise_spill", row_counts=counts,
                                  threshold_scenarios=scenarios, spark=spark)
    out = {"run_id": run["run_id"], "seconds": round(time.time() - t0, 1),
           "key_fingerprint": ps.key_fingerprint(key), "key_source": key_source, **summary}
    write_json_atomic(paths.identifiable / "publish_summary.json", out)
    return {"run_id": run["run_id"], "seconds": out["seconds"], "key_fingerprint": out["key_fingerprint"],
            "tables": {t: {"rows": s["rows"], "rows_without_person": s["rows_without_person"]}
                       for t, s in summary["tables"].items()}}


@_private_zone
def write_ig_report(paths: Paths) -> dict:
    """Raw IG JSON in identifiable/, suppressed HTML + JSON in ``paths.reports`` (the DAG points
    that at the run's unpublished version folder). A write error names the folder."""
    from identifiable_zone import ig_report

    with output_guard(paths.reports):
        return ig_report.write(paths)


__all__ = ["validate_all", "link_all", "pseudonymise_and_publish", "write_ig_report", "ExtractUnusable",
           "SPINE"]
