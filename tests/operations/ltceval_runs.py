"""Shared by the operations tests: real `ltceval run`s in child processes, and comparisons of
what a run published ("byte-identical apart from the run timestamp").

One baseline run per test session, shared by the pytest-xdist workers (``baseline``); tests copy
it before changing anything.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from evaluation.robustness import HONEST_ENV

REPO = Path(__file__).resolve().parents[2]
# small population: balance below 0.1 is not attainable on a cohort this size, so the report
# would be blinded (evaluation/diagnostics.py); the override shows the estimates, with its reason
PERSONS, SEED = 3000, 3
TIMEOUT = 1800

# run timestamps: ISO (report footers, run ids, GX run times), compact (run keys, GX folders),
# and the epoch seconds GX sorts its Data Docs index by
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}| UTC)?")
_STAMP = re.compile(r"\d{8}T\d{6}(?:\.\d+)?Z(?:_[0-9a-f]{4})?")
_EPOCH = re.compile(r"(_run_time_sort['\"]?:\s*)[\d.]+")
# GX gives every expectation, validation and context a random id per run, and fingerprints the
# frame it validated (which moves with the float noise below)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FINGERPRINT = re.compile(r"\b[0-9a-f]{32}\b")
# Floats are compared to 12 significant digits: dbt's balance model sums over rows read
# without an ORDER BY, so the last bits of a few balance statistics vary between runs
_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{13,}(?:[eE][-+]?\d+)?")
_cache: dict = {}


def run_env(key_file: Path, **extra: str) -> dict[str, str]:
    """The environment of every run these tests make (and compare with each other). Without the
    parallel-trends sensitivity (LTCEVAL_HONEST=0: 20-30 s of each run's evaluation, and these
    tests are about what runs publish alike, not about that method): the end-to-end run and the
    scheduler stack's run keep it, and tests/evaluation test it."""
    env = dict(os.environ)
    for k in ("LTCEVAL_PSEUDO_KEY", "LTCEVAL_PERIOD", "LTCEVAL_SOURCES_CONFIG", "LTCEVAL_OUT"):
        env.pop(k, None)
    env.update({"LTCEVAL_UNBLIND_REASON": "small test population: balance below 0.1 is not attainable on a cohort this size",
                "LTCEVAL_PSEUDO_KEY_FILE": str(key_file), HONEST_ENV: "0", **extra})
    return env


def ltceval(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltceval.cli", *args], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=REPO, **kw)


def run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "--persons", str(PERSONS), "--seed", str(SEED), "--out", str(out), *extra]


def _shared_folder(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session shares: the parent of the workers'
    own base folders (the base folder itself without xdist)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "operations-shared"
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def _session_lock(tmp_path_factory, name: str):
    """One worker at a time in the block (an flock on a file of the shared folder)."""
    with open(_shared_folder(tmp_path_factory) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def key_file(tmp_path_factory) -> Path:
    """The session's key file, one for all workers (runs are compared across workers)."""
    p = _shared_folder(tmp_path_factory) / "pseudonymisation.key"
    with _session_lock(tmp_path_factory, "key"):
        if not p.exists():
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("ops-test-key-" + "0123456789abcdef" * 3)
    return p


def baseline(tmp_path_factory) -> Path:
    """One clean `ltceval run` (synthetic extracts) per session, made by the first worker that
    needs it (the others wait for it), so that the modules comparing against it need not share
    a worker; copy it before use."""
    out = _shared_folder(tmp_path_factory) / "baseline" / "out"
    done = out.parent / "finished"
    with _session_lock(tmp_path_factory, "baseline"):
        if not done.exists():
            shutil.rmtree(out.parent, ignore_errors=True)  # a failed attempt's leftovers
            out.parent.mkdir()
            proc = ltceval(*run_args(out), env=run_env(key_file(tmp_path_factory)))
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            done.write_text("")
    return out


def _wait_for(pred, proc: subprocess.Popen, what: str, limit: float = 1500.0) -> None:
    """Poll until ``pred()`` (the process must still be running)."""
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() - t0 > limit:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def _size(path: Path) -> int:
    """The file's size, 0 when it is absent. DuckDB deletes its WAL at each checkpoint, so a
    WAL seen by exists() can be gone by the stat() after it (seen on a loaded machine)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _kill_group(proc: subprocess.Popen, limit: float = 60.0) -> None:
    """SIGKILL the run's process group and wait until every process of it has exited (a dbt
    or DAG child still dying could otherwise overlap the rerun that follows)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    while _live_members(proc.pid):
        if time.monotonic() - t0 > limit:
            pytest.fail(f"processes {_live_members(proc.pid)} of the killed run's group still run after {limit:.0f} s")
        time.sleep(0.1)


def _live_members(pgid: int) -> list[int]:
    """Processes of the group that have not exited (zombies, dead but not yet reaped, are not)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def published_state(out: Path, period: str) -> dict:
    return {"period_files": tree_digest(out / "reports" / period),
            "period_target": os.readlink(out / "reports" / period),
            "latest": os.readlink(out / "reports" / "latest"),
            "warehouse": tree_digest(out / "analytical")["warehouse.duckdb"]}


def readable_facts(out: Path, period: str) -> dict:
    """What a reader of the published outputs finds: a whole report, its publication record,
    and a warehouse that opens read-only with a non-empty panel."""
    html = (out / "reports" / "latest" / "business_case.html").read_text(encoding="utf-8")
    pub = json.loads((out / "reports" / period / "publication.json").read_text())
    with duckdb.connect(str(out / "analytical" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select count(*) from mart_evaluation_panel").fetchone()[0]
    return {"report_whole": "</html>" in html and period in html, "publication_period": pub["period"],
            "report_listed": "business_case.html" in pub["files"], "panel_has_rows": rows > 0}


@dataclass(frozen=True)
class KilledThenRerun:
    out: Path
    published_before: dict
    published_after_kill: dict
    readable_after_kill: dict
    staging_left_after_kill: bool
    rerun: subprocess.CompletedProcess


def killed_then_rerun(tmp_path_factory) -> KilledThenRerun:
    """Once per session, on a copy of the baseline: `ltceval run` killed (SIGKILL to its process
    group) while dbt writes the staging warehouse, what was published then, and the rerun of
    the same period. The fault test and the rerun test both read it (one rerun, not two)."""
    if "killed" not in _cache:
        base = baseline(tmp_path_factory)
        period = current_period(base)
        out = copy_out(base, tmp_path_factory.mktemp("killed") / "out")
        before = published_state(out, period)
        env = run_env(key_file(tmp_path_factory))
        proc = subprocess.Popen([sys.executable, "-m", "ltceval.cli", *run_args(out)], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        staging = out / "analytical" / ".staging" / "warehouse.duckdb"
        wal = staging.with_name("warehouse.duckdb.wal")
        _wait_for(lambda: staging.exists() and _size(wal) > 0, proc, "dbt writing the staging warehouse")
        _kill_group(proc)
        after = published_state(out, period)
        readable = readable_facts(out, period)
        _cache["killed"] = KilledThenRerun(out, before, after, readable, staging.exists(),
                                           ltceval(*run_args(out), env=env))
    return _cache["killed"]


def copy_out(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def current_period(out: Path) -> str:
    return json.loads((out / "analytical" / "current_run.json").read_text())["period"]


def tree_digest(root: Path) -> dict[str, str]:
    """Exact bytes of every file under ``root`` (following the period symlink itself)."""
    root = root.resolve()
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mask(text: str, out: Path) -> str:
    text = text.replace(str(out.resolve()), "<OUT>").replace(str(out), "<OUT>")
    return _EPOCH.sub(r"\1<EPOCH>", _STAMP.sub("<STAMP>", _ISO.sub("<TIME>", text)))


def _round_floats(text: str) -> str:
    return _FLOAT.sub(lambda m: f"{float(m.group(0)):.12g}", text)


def comparable(out: Path, period: str) -> tuple[dict[str, str], dict[str, str]]:
    """The published files of a period, as ``(exact, masked)``: files equal byte for byte, and
    the rest with run timestamps (and the output folder) masked and floats rounded to 12
    significant digits. GX results also carry random ids per run (masked); the XLSX workbook
    is compared sheet by sheet (its zip and document properties carry the write time);
    publication.json by its list of files. Keys are paths, run timestamps masked too."""
    root = (out / "reports" / period).resolve()
    exact, masked = {}, {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = _STAMP.sub("<STAMP>", str(p.relative_to(root)))
        data = p.read_bytes()
        if rel == "publication.json":
            masked[rel] = json.dumps(sorted(_STAMP.sub("<STAMP>", f) for f in json.loads(data)["files"]))
        elif rel == ".run.json":
            masked[rel] = _mask(data.decode(), out)
        elif p.suffix == ".xlsx":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                masked[rel] = hashlib.sha256(b"".join(
                    n.encode() + _round_floats(z.read(n).decode("utf-8", errors="replace")).encode()
                    for n in sorted(z.namelist()) if n != "docProps/core.xml")).hexdigest()
        else:
            text = data.decode("utf-8", errors="replace")
            m = _round_floats(_mask(text, out))
            if rel.startswith("gx/"):
                m = _FINGERPRINT.sub("<FINGERPRINT>", _UUID.sub("<ID>", m))
            if m == text:
                exact[rel] = hashlib.sha256(data).hexdigest()
            else:
                masked[rel] = hashlib.sha256(m.encode()).hexdigest()
    return exact, masked


def _cell(v) -> str:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return "NULL"
    if isinstance(v, float):
        return f"{v:.12g}"  # float noise: see _FLOAT
    return str(v)


def warehouse_tables(db: Path) -> dict[str, tuple[int, int, str]]:
    """Per table and view: rows, distinct rows and an order-free digest of the content."""
    out = {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' order by 1").fetchall()]
        for t in names:
            n, d = con.execute(f'select count(*), (select count(*) from (select distinct * from "{t}")) '
                               f'from "{t}"').fetchone()
            df = con.execute(f'select * from "{t}"').df()
            cols = [df[c].astype(object).map(_cell).tolist() for c in df.columns]
            rows = sorted("|".join(r) for r in zip(*cols))
            out[t] = (int(n), int(d), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    finally:
        con.close()
    return out


def read_csv(out: Path, period: str, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "reports" / period / "tables" / f"{name}.csv")


# The linkage thresholds of the sensitivity table come from the model's match probabilities,
# which splink's u sampling makes depend on the order the records arrive in (a database returns
# its rows in an order of its own: 0.0309 against the file run's 0.0313 for the looser one) and
# on the engine (splink samples u by a hash of the record ids, and Spark hashes otherwise than
# DuckDB). Every estimate in the table, and everything else, must be the same.
LINKAGE_TABLE = "tables/linkage_sensitivity.csv"
LINKAGE_SECTION = re.compile(r"How the estimates move with the linkage threshold.*?</table>", re.S)


def business_case_apart_from_linkage_thresholds(out: Path, period: str):
    """The period's published files but the IG report and run manifest (which name the reads),
    GX's results of the identifiable zone's inputs, and the files holding the linkage
    thresholds: (exact, masked) as ltceval_runs compares; then those files without them."""
    exact, masked = comparable(out, period)
    skip = ("ig_report", "run_manifest", "gx/", LINKAGE_TABLE, "business_case.html", "business_case_tables.xlsx")
    keep = lambda rel: not rel.startswith(skip)  # noqa: E731
    root = out / "reports" / period
    estimates = pd.read_csv(root / LINKAGE_TABLE).drop(columns=["threshold", "expected_precision"])
    html = LINKAGE_SECTION.sub("<linkage table>", (root / "business_case.html").read_text(encoding="utf-8"))
    html = re.sub(r"Generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "Generated <time>", html)
    return ({k: v for k, v in exact.items() if keep(k)}, {k: v for k, v in masked.items() if keep(k)},
            estimates, html)
