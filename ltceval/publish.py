"""Runs identified by their data period, and atomic publishing of what they produce.

A run is identified by its **data period** (``YYYY-MM``: the last month with recorded activity
in the extracts, or ``LTCEVAL_PERIOD`` / ``ltceval run --period``, which must then agree with
the extracts). Everything a run publishes is built aside and swapped in only when every gate
before it has passed, so a failed or killed run leaves the previous good outputs in place and
readable:

- **Reports** (IG report, GX results, business case, tables) are written into an unpublished
  version folder ``reports/.versions/<run key>/`` (the run key is the period plus the run's
  start time). The last task of the evaluation DAG checks the folder is complete, records a
  checksum of every file in ``publication.json``, fsyncs it and then atomically repoints the
  symlink ``reports/<period>`` at it (a new symlink renamed over the old one), and
  ``reports/latest`` at ``<period>`` unless a later period is already published. Readers of
  ``reports/<period>/...`` or ``reports/latest/...`` see the old version or the new one, never
  a mixture; a reader holding a file open keeps reading it. The previous version of a period
  is kept (roll back by repointing the symlink); older ones are removed.
- **The warehouse**: dbt builds ``analytical/.staging/warehouse.duckdb`` from scratch (every
  model is a table or view, so a rerun can never duplicate rows); the GX mart gates read it
  read-only and, when they pass, record its checksum; only then is it checkpointed, fsynced
  and renamed over ``analytical/warehouse.duckdb``. Readers (the evaluation DAG) only ever
  open the published file, read-only, so they never wait for, or block, the writer.
- **Pseudonymised tables** are swapped in as a folder by the identifiable zone
  (``identifiable_zone.pseudonymise.publish_folder_atomically``).

Write errors on an output folder become a :class:`PublishError` naming the folder and the
reason; full disks and permission errors are not retried (a person must act), other I/O
errors are (see ``ltceval.retries``).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.errors import PublishError
from core.files import (file_lock, fsync_dir, fsync_file, fsync_tree, output_guard, sha256_file,
                        write_json_atomic)
from core.periods import PERIOD_PATTERN, parse_period
from core.settings import Paths

VERSIONS = ".versions"
LATEST = "latest"
PUBLICATION = "publication.json"
# what a complete version folder holds: one file per gate that has to pass before publishing
REQUIRED_REPORTS = ("ig_report.json", "gx/summary.json", "business_case.html")


# -- the run and its version folder -------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One run of the pipeline: its data period and the key of its version folder."""

    period: str
    run_key: str

    def to_json(self) -> dict:
        return {"period": self.period, "run_key": self.run_key}


def new_run(period: str, now: datetime | None = None) -> Run:
    now = now or datetime.now(timezone.utc)
    return Run(parse_period(period), f"{period}_{now:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:4]}")


def version_dir(paths: Paths, run: Run) -> Path:
    return paths.reports_root / VERSIONS / run.run_key


def staged(paths: Paths, run: Run) -> Paths:
    """The run's paths with reports redirected to its (unpublished) version folder."""
    return paths.with_reports(version_dir(paths, run))


def period_dir(paths: Paths, period: str) -> Path:
    """``reports/<period>``: a symlink to the published version of that period."""
    return paths.reports_root / parse_period(period)


def latest_dir(paths: Paths) -> Path:
    return paths.reports_root / LATEST


def open_version(paths: Paths, run: Run) -> Path:
    """Create the run's empty version folder (a probe that the output folder is writable, so a
    read-only or full disk fails the run before the expensive steps), and remove unpublished
    folders that failed or killed runs left behind."""
    root = paths.reports_root
    vdir = version_dir(paths, run)
    with output_guard(root):
        root.mkdir(parents=True, exist_ok=True)
        for old in _unpublished_versions(paths):
            if old.name != run.run_key:
                shutil.rmtree(old, ignore_errors=True)
        if vdir.exists():
            shutil.rmtree(vdir)
        vdir.mkdir(parents=True)
        write_json_atomic(vdir / ".run.json", run.to_json())
    return vdir


def write_handoff(paths: Paths, run: Run, extra: dict | None = None) -> None:
    """Record the run for the analytical and evaluation DAGs (analytical/current_run.json)."""
    with output_guard(paths.run_handoff.parent):
        write_json_atomic(paths.run_handoff, {**run.to_json(), **(extra or {})})


def current_run(paths: Paths) -> Run:
    """The run recorded by the identifiable-zone DAG."""
    p = paths.run_handoff
    if not p.exists():
        raise PublishError(f"no current run recorded at {p}: run the identifiable_zone DAG first")
    d = json.loads(p.read_text(encoding="utf-8"))
    return Run(parse_period(d["period"]), str(d["run_key"]))


def published_period(paths: Paths, period: str | None = None) -> Path | None:
    """The folder now published for ``period`` (default: latest), resolved; None if none."""
    link = latest_dir(paths) if period is None else period_dir(paths, period)
    return link.resolve() if link.exists() else None


# -- the warehouse -----------------------------------------------------------------------------

def _gate_marker(paths: Paths) -> Path:
    return paths.staging_warehouse.with_name(paths.staging_warehouse.name + ".gates-passed")


def reset_staging_warehouse(paths: Paths) -> Path:
    """Remove any staged warehouse (and its WAL and gate marker) so dbt builds from scratch."""
    staging = paths.staging_warehouse
    with output_guard(staging.parent):
        staging.parent.mkdir(parents=True, exist_ok=True)
        for p in (staging, _wal(staging), _gate_marker(paths)):
            if p.exists():
                p.unlink()
    return staging


def seal_staging_warehouse(paths: Paths) -> Path:
    """Fold the staged warehouse's WAL into the file (a dbt process that ended without closing
    its database can leave one), so that the file the gates read is the file published."""
    import duckdb

    staging = paths.staging_warehouse
    if not staging.exists():
        raise PublishError(f"no staged warehouse at {staging}: the dbt tasks have not built one")
    with output_guard(staging.parent):
        con = duckdb.connect(str(staging))
        try:
            con.execute("checkpoint")
        finally:
            con.close()
    if _wal(staging).exists():
        raise PublishError(f"{_wal(staging)} still exists after a checkpoint: is another process writing "
                           f"{staging}?", retryable=True)
    return staging


def record_gates_passed(paths: Paths, summary: dict | None = None) -> None:
    """After the GX mart gates pass: the staged warehouse's checksum, which publish checks."""
    staging = paths.staging_warehouse
    with output_guard(staging.parent):
        write_json_atomic(_gate_marker(paths), {"sha256": sha256_file(staging),
                                                 "gates": summary or {}})


def publish_warehouse(paths: Paths) -> Path:
    """Swap the staged warehouse in for the published one, if (and only if) the mart gates
    passed on exactly this file (sealed, see ``seal_staging_warehouse``, and unchanged since).
    A rename: the file is never opened for writing here. Serialised by a lock file."""
    staging, target = paths.staging_warehouse, paths.published_warehouse
    if not staging.exists():
        raise PublishError(f"no staged warehouse at {staging}: the dbt tasks have not built one")
    marker = _gate_marker(paths)
    if not marker.exists():
        raise PublishError(f"the staged warehouse {staging} has not passed the mart gates; not published")
    with output_guard(target.parent, published=target), file_lock(target.parent / ".warehouse.lock"):
        if _wal(staging).exists() or json.loads(marker.read_text())["sha256"] != sha256_file(staging):
            raise PublishError(f"the staged warehouse {staging} changed after the mart gates passed; not published")
        fsync_file(staging)
        if _wal(target).exists():  # a WAL left by a killed writer belongs to the old file only
            _wal(target).unlink()
        os.replace(staging, target)
        fsync_dir(target.parent)
        marker.unlink()
    return target


def _wal(db: Path) -> Path:
    return db.with_name(db.name + ".wal")


# -- reports -----------------------------------------------------------------------------------

def publish_reports(paths: Paths, run: Run, required: tuple[str, ...] = REQUIRED_REPORTS) -> Path:
    """Publish the run's version folder as ``reports/<period>`` (and ``latest``); return the
    period folder. Raises PublishError, changing nothing, when the folder is incomplete."""
    root, vdir = paths.reports_root, version_dir(paths, run)
    if not vdir.is_dir():
        raise PublishError(f"the run's version folder {vdir} is missing: a later run of the identifiable "
                           "zone replaced this run, or it never started; nothing published")
    missing = [r for r in required if not (vdir / r).is_file()]
    if missing:
        raise PublishError(f"{vdir} is incomplete (missing {', '.join(missing)}): a gate did not pass; "
                           "nothing published")
    link = period_dir(paths, run.period)
    with output_guard(root, published=link), file_lock(root / ".publish.lock"):
        files = {str(p.relative_to(vdir)): sha256_file(p) for p in sorted(vdir.rglob("*"))
                 if p.is_file() and not p.name.startswith(".") and p.name != PUBLICATION}
        write_json_atomic(vdir / PUBLICATION, {
            **run.to_json(), "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": files})
        fsync_tree(vdir)
        previous = os.readlink(link) if link.is_symlink() else None
        if link.exists() and not link.is_symlink():
            raise PublishError(f"{link} is a real folder, not a published-version symlink; move it away")
        _swap_symlink(link, f"{VERSIONS}/{run.run_key}")
        latest = latest_dir(paths)
        current = os.readlink(latest) if latest.is_symlink() else None
        if current is None or not PERIOD_PATTERN.match(current) or current <= run.period:
            _swap_symlink(latest, run.period)
        _prune_period(paths, run, keep={run.run_key, Path(previous).name if previous else None})
    return link


def republish_with(paths: Paths, period: str, published: Path, rewrite) -> Path:
    """Publish a new version of ``period``: a copy of its published version folder
    ``published`` in which ``rewrite(staged paths)`` rewrites some reports (e.g. the IG report
    after a clerical review), published as any run's (checksums, symlink swap). Returns the
    period folder."""
    run = new_run(period)
    vdir = version_dir(paths, run)
    with output_guard(paths.reports_root):  # not open_version: a run building its version may be under way
        vdir.mkdir(parents=True)
        write_json_atomic(vdir / ".run.json", run.to_json())
        for p in published.iterdir():
            if p.name in (PUBLICATION, ".run.json"):
                continue
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, vdir / p.name)
    rewrite(staged(paths, run))
    return publish_reports(paths, run)


def _prune_period(paths: Paths, run: Run, keep: set) -> None:
    """Remove the period's earlier published versions except the one just replaced. Versions
    never published are left alone (a newer run may be building one; the next run's
    ``open_version`` clears those a failed or killed run left)."""
    for p in (paths.reports_root / VERSIONS).glob(f"{run.period}_*"):
        if p.is_dir() and p.name not in keep and (p / PUBLICATION).exists():
            shutil.rmtree(p, ignore_errors=True)


def _linked_versions(paths: Paths) -> set[str]:
    root = paths.reports_root
    names = set()
    if root.is_dir():
        for p in root.iterdir():
            if p.is_symlink():
                target = os.readlink(p)
                if target.startswith(VERSIONS + "/"):
                    names.add(target.split("/", 1)[1])
    return names


def _unpublished_versions(paths: Paths) -> list[Path]:
    vroot = paths.reports_root / VERSIONS
    if not vroot.is_dir():
        return []
    linked = _linked_versions(paths)
    published_before = set()
    for p in vroot.iterdir():  # kept previous versions carry a publication record
        if (p / PUBLICATION).exists():
            published_before.add(p.name)
    return [p for p in vroot.iterdir() if p.is_dir() and p.name not in linked | published_before]


def _swap_symlink(link: Path, target: str) -> None:
    for stale in link.parent.glob(f".{link.name}.tmp-*"):  # left by a killed publisher
        stale.unlink(missing_ok=True)
    tmp = link.parent / f".{link.name}.tmp-{uuid.uuid4().hex[:8]}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)
