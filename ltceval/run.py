"""`ltceval run`: the whole pipeline on an embedded Airflow (SQLite metadata) and DuckDB.

Each DAG runs with `dag.test()` in a child process, in the order the Assets chain them.
The run publishes its reports as `<out>/reports/<period>/` (and `<out>/reports/latest`), only
when every gate has passed; a failed or killed run leaves earlier outputs as they were and
can simply be run again.
The same DAG files load unchanged in a normal Airflow deployment, where the scheduler
triggers the analytical and evaluation DAGs when the upstream Asset is updated.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.assets import ANALYTICAL_ZONE, CHAIN, IDENTIFIABLE_ZONE
from core.contract import SEEDS
from core.errors import LtcevalError
from core.keys import (AIRFLOW_KEY_CONNECTION_ENV, AIRFLOW_KEY_VARIABLE, AIRFLOW_KEY_VARIABLE_ENV, key_file_exposure,
                       new_key, normalise_key, read_key_file, without_key)
from core.periods import parse_period
from core.progress import progress_message
from core.settings import (DAGS_DIR, ENGINE_ENV, KEY_ENV, KEY_FILE_ENV, OUT_ENV, PERIOD_ENV, SOURCES_CONFIG_ENV, Paths,
                           env_value)
from core.settings import engine as engine_setting
from ltceval.embedded import LIST_DBT_PROJECT

DAG_ORDER = tuple(link.dag_id for link in CHAIN)


def airflow_env(paths: Paths) -> dict[str, str]:
    """Environment for an embedded Airflow whose state lives under the output folder."""
    home = paths.airflow_home
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Never show configuration (which may carry the key) in logs or the UI.
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        # No usage telemetry from a pipeline over patient data (as in docker-compose.yml); it also
        # spends a refused network call per dbt task on a closed network
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # the analytical DAG's dbt producer task never retries: no Airflow Variable write per
        # dbt node for a retry to restore (a failure still writes it once; cosmos watcher mode)
        "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
        # the analytical DAG's process parses its file twice (its DagBag, then dag.test()'s; the
        # other DAGs' processes skip its render: dags/analytical_zone_dag.py): cosmos keeps its
        # `dbt ls` in an Airflow Variable of this run's metadata DB, listed once per run beside
        # the identifiable-zone DAG (`ltceval.embedded --list-dbt-project`); the key hashes the
        # dbt project's files, the vars and the dbt env, so a changed project is listed again
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS": "True",
        # cosmos' dbt partial-parse file: this run's own, not /tmp/cosmos shared by every run
        # on the machine (as ops/airflow_environment.py)
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
        # the listing parses the analytical DAG file with no cache yet: a `dbt ls` per dbt task
        # group (two: before and after the matching step), beyond Airflow's 30 s on a busy
        # machine (as ops/airflow_environment.py); a caller's own setting stands
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": os.environ.get("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "180"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
        OUT_ENV: str(paths.out),
    })
    return env


def ensure_key(paths: Paths, env: dict[str, str]) -> None:
    """Check the configured key before anything starts (the rules of ``core.keys.normalise_key``,
    as the identifiable zone applies them), or make a random local one for a synthetic demo run.

    A key given to Airflow through the environment (``AIRFLOW_VAR_LTCEVAL_PSEUDO_KEY``,
    ``AIRFLOW_CONN_LTCEVAL_PSEUDO_KEY``) is the key: no local one is made (it would have taken
    precedence, and pseudonymised under a random key). A key file readable by group or others
    gets a warning. The generated key stays in a 0600 file under the output folder; no key is
    ever printed.
    """
    if env_value(KEY_ENV, env) is not None:
        normalise_key(env[KEY_ENV], f"environment variable {KEY_ENV}")
        return
    if env_value(KEY_FILE_ENV, env):
        key_file, where = Path(env[KEY_FILE_ENV]), f"key file named by {KEY_FILE_ENV}"
        normalise_key(read_key_file(key_file, where), where)
        exposed = key_file_exposure(key_file)
        if exposed:
            print(f"ltceval: warning: {exposed}", file=sys.stderr)
        return
    if env.get(AIRFLOW_KEY_VARIABLE_ENV):
        normalise_key(env[AIRFLOW_KEY_VARIABLE_ENV], f"Airflow Variable {AIRFLOW_KEY_VARIABLE} "
                                                     f"({AIRFLOW_KEY_VARIABLE_ENV})")
        return
    if env.get(AIRFLOW_KEY_CONNECTION_ENV):  # a connection URI or JSON: its password is checked in the task
        return
    key_file = paths.out / "secrets" / "pseudonymisation.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.parent.chmod(0o700)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key())
    env[KEY_FILE_ENV] = str(key_file)


def step_env(env: dict[str, str], dag_id: str | None = None, zone_only: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of one child process: the key (or where it is), and ``zone_only`` (the
    variables holding database sources' credentials), only for the DAG that reads the
    extracts and pseudonymises; the analytical and evaluation DAGs, the metadata database's
    migration and the synthetic generator never need them, so they never hold them."""
    if dag_id == IDENTIFIABLE_ZONE.dag_id:
        return env
    return {k: v for k, v in without_key(env).items() if k not in zone_only}


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _libc_prctl():
    """Linux's prctl, looked up once in the parent (not between fork and exec), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _dies_with(parent: int):
    """A ``preexec_fn`` making the child die (SIGKILL) when ``parent`` does: a ``kill -9`` of
    ``ltceval run`` left its DAG process running to the end and publishing. The kernel sends
    the signal (PR_SET_PDEATHSIG), so it works however the parent dies; a parent already gone
    before the signal was set is seen by the changed parent id. The child's own workers (the
    validation and linkage pools) end when their pipes to it close. Elsewhere than Linux:
    nothing (there, stop the children by hand)."""
    def in_child() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)
    return in_child


def _start(cmd: list[str], **kw) -> subprocess.Popen:
    """A child of ``ltceval run`` (a step or a DAG), stopped with it (``_dies_with``)."""
    return subprocess.Popen(cmd, preexec_fn=_dies_with(os.getpid()), **kw)


# the line of a traceback that names the exception: "pkg.mod.SomeError: message"
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Unusable)): (.+)$")


def _cause(log_text: str) -> str | None:
    """The last exception a failed step's log names, as 'SomeError: message' (one line)."""
    found = None
    for line in log_text.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if m:  # AirflowFailException wraps "PublishError: ..." (ltceval.retries.airflow_retry_policy)
            found = m.group(2).strip() if m.group(1) == "AirflowFailException" else \
                f"{m.group(1)}: {m.group(2).strip()}"
    return found[:600] if found else None


def _step(label: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
    """Run one step, its output into ``log``; its progress lines (``core.progress``) are also
    shown on the terminal as they come, so that a long DAG is never a silent wait."""
    t0 = time.perf_counter()
    print(f"  {label} ...", end="", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = 0
    env = {**env, "PYTHONUNBUFFERED": "1"}  # progress lines as they are logged, not per 8 KiB block
    with log.open("w") as fh, _start(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, errors="replace") as proc:
        for line in proc.stdout:
            fh.write(line)
            message = progress_message(line)
            if message:
                print(("\n" if not shown else "") + f"    {message}", flush=True)
                shown += 1
    took = time.perf_counter() - t0
    if shown:  # the step's first line is above its progress lines: name it again
        print(f"  {label}", end="")
    _ended(label, proc.returncode, took, log)


def _ended(label: str, returncode: int, took: float, log: Path) -> None:
    """End a step's line: done, or failed with the tail of its log and an error naming its cause."""
    if returncode != 0:
        print(f" failed after {took:.0f} s")
        text = log.read_text(errors="replace")
        tail = text.splitlines()[-25:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr)
        cause = _cause(text)
        raise LtcevalError(f"{label} failed" + (f": {cause}" if cause else "") + f"; full log: {log}")
    print(f" done ({took:.0f} s)")


class _Beside:
    """A quiet step (no progress lines) run beside the next ones, its output into ``log``;
    ``finish()`` waits for it and shows its line as ``_step`` would have. ``after``: a step
    beside that must end well first (it starts then, or never)."""

    def __init__(self, label: str, cmd: list[str], env: dict[str, str], log: Path,
                 after: "_Beside | None" = None):
        self.label, self.log, self._cmd, self._env, self._after = label, log, cmd, env, after
        log.parent.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen | None = None
        self._took: float | None = None
        if after is None:
            self._start()
        # its own time, not the time until finish() is called
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _start(self) -> None:
        self._t0 = time.perf_counter()
        with self.log.open("w") as fh:
            self._proc = _start(self._cmd, env=self._env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

    def _wait(self) -> None:
        if self._after is not None:
            self._after.wait()
            if self._after.returncode != 0:
                return  # the step before failed: it says so; this one never ran
            self._start()
        self._proc.wait()
        self._took = time.perf_counter() - self._t0

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def wait(self) -> None:
        self._waiter.join()

    def finish(self) -> None:
        self.wait()
        if self._proc is None:
            return
        print(f"  {self.label} ...", end="", flush=True)
        _ended(self.label, self._proc.returncode, self._took, self.log)


def run_pipeline(out: Path, persons: int = 20_000, seed: int = SEEDS.synthetic, config: Path | None = None,
                 period: str | None = None, engine: str | None = None) -> Path:
    """Synthetic extracts (unless ``config`` names real ones), then the three DAGs; returns the
    published business case of the run's data period (``reports/<period>/business_case.html``).

    ``period`` (YYYY-MM): the data period the run is for; the extracts must end in it. Rerunning
    a period replaces its published outputs as a whole (``ltceval.publish``). ``engine``: 'duckdb' or
    'spark' for every step (default: ``$LTCEVAL_ENGINE``, else duckdb)."""
    from . import publish

    paths = Paths(Path(out).resolve())
    paths.out.mkdir(parents=True, exist_ok=True)
    env = airflow_env(paths)
    if period is not None:
        env[PERIOD_ENV] = parse_period(period)
    try:  # a bad value is refused now, not in a DAG
        env[ENGINE_ENV] = engine_setting({ENGINE_ENV: engine} if engine else env)
    except ValueError as e:
        raise LtcevalError(str(e)) from None
    ensure_key(paths, env)
    from evaluation.diagnostics import unblind_reason
    unblind_reason(env)  # a value that is not a reason is refused now, not after the run
    logs = paths.out / "logs"
    zone_only: tuple[str, ...] = ()
    if config is not None:
        if not config.is_file():
            raise LtcevalError(f"sources config not found: {config}")
        from identifiable_zone.database_extracts import credential_variables
        from identifiable_zone.sources import load_sources_config

        zone_only = credential_variables(load_sources_config(config))  # a bad config stops here, before anything runs
    print(f"ltceval: output folder {paths.out}")
    migrate = ("preparing the embedded Airflow metadata database (SQLite)",
               [sys.executable, "-m", "airflow", "db", "migrate"], step_env(env, zone_only=zone_only),
               logs / "airflow-db-migrate.log")
    # cosmos lists the dbt project (`dbt ls`, into the metadata DB) for the analytical DAG on
    # the other core, once the database exists, while the extracts are made and validated
    listing = ("listing the dbt project for the analytical DAG (cosmos)",
               [sys.executable, "-m", "ltceval.embedded", LIST_DBT_PROJECT],
               step_env(env, ANALYTICAL_ZONE.dag_id, zone_only), logs / "dbt-project-listing.log")
    if config is None:
        # independent of each other: the metadata database is made on the other core
        beside = _Beside(*migrate)
        besides = [beside, _Beside(*listing, after=beside)]
        try:
            _step(f"generating synthetic extracts for {persons:,} people (seed {seed})",
                  [sys.executable, "-m", "ltceval.cli", "synth", "--persons", str(persons), "--seed", str(seed),
                   "--out", str(paths.out)], step_env(env), logs / "synth.log")
        except BaseException:  # never fail with the migration or the listing still writing under the output folder
            for b in besides:
                b.wait()
            raise
        beside.finish()
    else:
        env[SOURCES_CONFIG_ENV] = str(config.resolve())
        _step(*migrate)
        besides = [_Beside(*listing)]
    try:
        for dag_id in DAG_ORDER:
            if dag_id == ANALYTICAL_ZONE.dag_id:
                besides[-1].finish()
            _step(f"running DAG {dag_id}", [sys.executable, "-m", "ltceval.embedded", dag_id],
                  step_env(env, dag_id, zone_only), logs / f"dag-{dag_id}.log")
    finally:  # never return (or fail) with the listing still writing under the output folder
        besides[-1].wait()
    run = publish.current_run(paths)
    report = publish.period_dir(paths, run.period) / "business_case.html"
    if not report.exists() or publish.published_period(paths, run.period) != publish.version_dir(paths, run):
        raise LtcevalError(f"the evaluation DAG finished but did not publish {report}")
    return report
