"""Run the three ltceval DAGs under a real Airflow scheduler on a throwaway PostgreSQL.

This is what CI's `tests/operations/test_scheduler_postgres.py` does, and a human can run
it too (from the repository root, after `make setup`):

    uv run --frozen python ops/airflow_stack.py --persons 3000            # run, check, stop
    uv run --frozen python ops/airflow_stack.py --persons 3000 --keep     # ... then keep it up

It needs Debian's PostgreSQL server binaries (`apt-get install postgresql`; only the binaries
are used, no system cluster is touched). Steps:

1. `initdb` + `pg_ctl start` a cluster in a fresh temporary folder on a free local port
   (as the `postgres` user when run as root: initdb refuses root), password authentication
   over TCP, fsync off (it is thrown away);
2. point `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN` at it and run `airflow db migrate`;
3. write a synthetic population with `ltceval synth` and a random pseudonymisation key file;
4. start `airflow api-server`, `airflow scheduler` (LocalExecutor) and `airflow dag-processor`
   as separate processes sharing one AIRFLOW_HOME, each logging to `<home>/proc-*.log`;
5. through the public REST API (`/api/v2`, JWT from `/auth/token`): wait for the three DAGs,
   unpause them, trigger `identifiable_zone`, then poll until the `evaluation` run (started by
   the Asset chain pseudonymised_tables -> evaluation_panel) has succeeded;
6. stop the processes (SIGTERM to each one's own process group, then SIGKILL) and the cluster.

Only the standard library is used here (urllib for the API), so the module can be loaded by
path from the tests without being a package.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.assets import CHAIN, EVALUATION, IDENTIFIABLE_ZONE

REPO = Path(__file__).resolve().parent.parent
DAG_IDS = tuple(link.dag_id for link in CHAIN)
ASSET_CHAIN = tuple(link.asset_name for link in CHAIN)
# which DAG publishes each asset of the chain, and which DAG it starts
ASSET_PRODUCER = dict(zip(ASSET_CHAIN, DAG_IDS))
ASSET_CONSUMER = dict(zip(ASSET_CHAIN[:-1], DAG_IDS[1:]))
REPORT_NAME = "business_case.html"


class StackError(RuntimeError):
    """The stack could not be started, or the DAG runs did not succeed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    """Debian keeps the server binaries (initdb, pg_ctl) in /usr/lib/postgresql/<major>/bin."""
    env_dir = os.environ.get("LTCEVAL_PG_BINDIR")
    candidates = [Path(env_dir)] if env_dir else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    candidates += versions
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text[-lines:])


def _readable_task_log(text: str) -> str:
    """Airflow 3 task logs are JSON lines: show them as `time level event [error]`."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        msg = f"{rec.get('timestamp', '')[11:19]} {rec.get('level', ''):7} {rec.get('event', '')}"
        for err in rec.get("error_detail") or []:
            msg += f"\n    {err.get('exc_type')}: {err.get('exc_value')}"
        out.append(msg)
    return "\n".join(out)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster in its own temporary folder, on a free local port."""

    port: int = field(default_factory=free_port)
    user: str = "airflow"
    database: str = "airflow"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    base: Path | None = None
    bindir: Path | None = None
    _started: bool = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log(self) -> Path:
        assert self.base is not None
        return self.base / "postgres.log"

    def _run_as_owner(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a server binary as the cluster owner: `postgres` when we are root."""
        if os.geteuid() == 0:
            kw.update(user="postgres", group="postgres", extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
               "HOME": str(self.base)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              cwd=self.base, **kw)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self) -> "PostgresCluster":
        self.bindir = self.bindir or postgres_bindir()
        if self.bindir is None:
            raise StackError("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
                             "`postgresql` package (.ci/run does), or set LTCEVAL_PG_BINDIR")
        self.base = Path(tempfile.mkdtemp(prefix="ltceval-pg-"))
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise StackError("running as root but there is no `postgres` user to own the cluster "
                                 "(initdb refuses root); install Debian's `postgresql` package") from None
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        data = self.base / "data"
        self._run_as_owner([str(self.bindir / "initdb"), "-D", str(data), "-U", self.user,
                            f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], timeout=120)
        pwfile.unlink()
        opts = (f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run_as_owner([str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.log), "-o", opts,
                            "-w", "-t", "60", "start"], timeout=90)
        self._started = True
        self._run_as_owner([str(self.bindir / "psql") if (self.bindir / "psql").exists() else "psql",
                            "-h", str(self.base), "-p", str(self.port), "-U", self.user, "-d", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{self.database}"'], timeout=60)
        return self

    def stop(self) -> None:
        if self.base is None:
            return
        if self._started:
            try:
                self._run_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast",
                                    "-w", "-t", "30", "stop"], timeout=60)
            except (StackError, subprocess.TimeoutExpired) as exc:
                print(f"warning: pg_ctl stop: {exc}", file=sys.stderr)
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None


# --------------------------------------------------------------------------- REST API


class ApiClient:
    """The Airflow 3 public REST API (`/api/v2`) with a JWT from the simple auth manager."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True,
                 timeout: float = 30) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            if self.token is None:
                self.login()
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise StackError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(raw) if raw else {}

    def login(self) -> None:
        """POST /auth/token with the simple auth manager's user and password -> access_token."""
        resp = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                             auth=False)
        self.token = resp["access_token"]

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def patch(self, path: str, body: dict) -> dict:
        return self._request("PATCH", path, body)

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def healthy(self) -> bool:
        try:
            health = self._request("GET", "/api/v2/monitor/health", auth=False, timeout=5)
        except (OSError, StackError, ValueError):
            return False
        return health.get("metadatabase", {}).get("status") == "healthy"

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=-run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        from urllib.parse import quote

        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=500"
                        )["task_instances"]

    def asset_events(self) -> list[dict]:
        return self.get("/api/v2/assets/events?limit=500&order_by=timestamp")["asset_events"]


# --------------------------------------------------------------------------- Airflow


def airflow_env(home: Path, out: Path, db_url: str, api_port: int, key_file: Path,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every Airflow process: our own home, Postgres, LocalExecutor, small and fast.

    Inherited AIRFLOW*/LTCEVAL_* variables (e.g. the test suite's SQLite settings) are dropped.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LTCEVAL_"))}
    base_url = f"http://127.0.0.1:{api_port}"
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # one secret set for every component (they share the home, but be explicit)
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # two cores: two task processes at a time
        "AIRFLOW__CORE__PARALLELISM": "2",
        # each DAG file is parsed once at start (and by each task process); no periodic re-parse
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "240",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        # cosmos keeps dbt's partial-parse file in a cache folder, /tmp/cosmos by default: shared
        # with any other cosmos user on the machine, whose profile (warehouse path) differs and
        # forces a full dbt parse on every task; ours is private
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
        # no usage telemetry from Airflow, cosmos or dbt (and no waiting on blocked networks)
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
        # the pipeline
        "LTCEVAL_OUT": str(out),
        "LTCEVAL_PSEUDO_KEY_FILE": str(key_file),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


@dataclass
class AirflowStack:
    """api-server + scheduler + dag-processor on one AIRFLOW_HOME, as child processes."""

    home: Path
    out: Path
    db_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    username: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.home.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        key_file = self.out / "secrets" / "pseudonymisation.key"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.parent.chmod(0o700)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        # the simple auth manager keeps (and only adds to) this file: our admin password
        pw_file = self.home / "passwords.json"
        pw_file.write_text(json.dumps({self.username: self.password}) + "\n")
        pw_file.chmod(0o600)
        self.env = airflow_env(self.home, self.out, self.db_url, self.api_port, key_file, self.extra_env)
        self.api = ApiClient(f"http://127.0.0.1:{self.api_port}", self.username, self.password)

    @property
    def report(self) -> Path | None:
        """The published business case: reports/business_case.html, or reports/<period>/..."""
        reports = self.out / "reports"
        found = sorted(reports.glob(REPORT_NAME)) + sorted(reports.glob(f"*/{REPORT_NAME}"))
        return found[0] if found else None

    def log_path(self, name: str) -> Path:
        return self.home / f"proc-{name}.log"

    def run(self, name: str, args: list[str], timeout: float) -> float:
        """A one-off command (`airflow db migrate`, `ltceval synth`); returns seconds taken."""
        t0 = time.monotonic()
        with self.log_path(name).open("w") as log:
            proc = subprocess.run([sys.executable, "-m", *args], env=self.env, cwd=self.home, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode != 0:
            raise StackError(f"{name} failed ({proc.returncode}):\n{_tail(self.log_path(name))}")
        return time.monotonic() - t0

    def migrate(self) -> float:
        return self.run("db-migrate", ["airflow", "db", "migrate"], timeout=600)

    def synth(self, persons: int, seed: int) -> float:
        return self.run("synth", ["ltceval.cli", "synth", "--persons", str(persons), "--seed", str(seed),
                                  "--out", str(self.out)], timeout=600)

    def start(self, name: str, args: list[str], preload: bool = False) -> None:
        """`airflow <args>` in the background, in its own process group; with ``preload`` through
        ops/airflow_preloaded.py (task-time libraries imported before the executor forks)."""
        entry = [str(Path(__file__).with_name("airflow_preloaded.py"))] if preload else ["-m", "airflow"]
        log = self.log_path(name).open("w")
        self.procs[name] = subprocess.Popen([sys.executable, *entry, *args], env=self.env, cwd=self.home,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def start_services(self, preload: bool = True) -> None:
        self.start("api-server", ["api-server", "--port", str(self.api_port), "--host", "127.0.0.1",
                                  "--workers", "1"])
        self.start("scheduler", ["scheduler", "--skip-serve-logs"], preload=preload)
        # plain: it parses three files once here, and preloading would cost it more than it saves
        self.start("dag-processor", ["dag-processor"])

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(f"airflow {name} exited ({proc.returncode}):\n{_tail(self.log_path(name))}")

    def wait_for_api(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.api.healthy():
            self.check_alive()
            if time.monotonic() > deadline:
                raise StackError(f"the api-server did not answer within {timeout:.0f} s")
            time.sleep(1)
        self.api.login()

    def wait_for_dags(self, timeout: float = 240) -> None:
        """Until the dag-processor has serialised all three DAGs (and none failed to import)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            errors = self.api.get("/api/v2/importErrors")["import_errors"]
            if errors:
                raise StackError("DAG import errors:\n" + "\n".join(f"{e['filename']}: {e['stack_trace'][-2000:]}"
                                                                     for e in errors))
            dags = {d["dag_id"] for d in self.api.get("/api/v2/dags?limit=100")["dags"]}
            if set(DAG_IDS) <= dags:
                return
            if time.monotonic() > deadline:
                raise StackError(f"DAGs not parsed within {timeout:.0f} s; have {sorted(dags)}")
            time.sleep(2)

    def unpause_and_trigger(self) -> str:
        for dag_id in DAG_IDS:
            resp = self.api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
            if resp.get("is_paused"):
                raise StackError(f"{dag_id} still paused: {resp}")
        run = self.api.post(f"/api/v2/dags/{IDENTIFIABLE_ZONE.dag_id}/dagRuns", {"logical_date": None})
        return run["dag_run_id"]

    def failed_task_logs(self, dag_id: str, run_id: str) -> str:
        lines = []
        for ti in self.api.task_instances(dag_id, run_id):
            if ti["state"] == "failed":
                lines.append(f"--- {dag_id} / {ti['task_id']} failed; task log tail:")
                folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
                for f in sorted(folder.glob("**/*.log")):
                    lines.append(_readable_task_log(_tail(f, 40)))
        return "\n".join(lines)

    def wait_for_chain(self, timeout: float, progress=print) -> dict[str, dict]:
        """Until the evaluation DAG run succeeded and the report exists; fail fast on a failed run."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = None
        while True:
            self.check_alive()
            runs = {d: self.api.dag_runs(d) for d in DAG_IDS}
            for dag_id, dag_runs in runs.items():
                for r in dag_runs:
                    if r["state"] == "failed":
                        raise StackError(f"DAG run {dag_id} / {r['dag_run_id']} failed\n"
                                         + self.failed_task_logs(dag_id, r["dag_run_id"]))
            status = ", ".join(f"{d}: {','.join(r['state'] for r in rs) or '-'}" for d, rs in runs.items())
            if status != last:
                progress(f"[{time.monotonic() - t0:5.0f} s] {status}")
                last = status
            done = [r for r in runs[EVALUATION.dag_id] if r["state"] == "success"]
            if done and self.report is not None:
                return {d: rs[0] for d, rs in runs.items() if rs}
            if time.monotonic() > deadline:
                raise StackError(f"the evaluation DAG had not succeeded after {timeout:.0f} s ({status})")
            time.sleep(3)

    def stop(self) -> None:
        """SIGTERM each process group we started, then SIGKILL what is left."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            try:  # the group may outlive its leader (task processes)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def logs_report(self, lines: int = 80) -> str:
        parts = []
        for name in ("db-migrate", "synth", *self.procs):
            path = self.log_path(name)
            if path.exists():
                parts.append(f"===== {path.name} (last {lines} lines)\n{_tail(path, lines)}")
        return "\n".join(parts)


def check_runs(api: ApiClient) -> dict:
    """What CI asserts, from the REST API alone: one successful run per DAG and the Asset chain.

    Returns {"runs": {dag_id: run}, "events": {asset_name: event}}; raises StackError otherwise.
    """
    runs = {}
    for dag_id in DAG_IDS:
        ok = [r for r in api.dag_runs(dag_id) if r["state"] == "success"]
        if not ok:
            raise StackError(f"{dag_id}: no successful DAG run ({api.dag_runs(dag_id)})")
        runs[dag_id] = ok[0]
    if runs[IDENTIFIABLE_ZONE.dag_id]["run_type"] != "manual":
        raise StackError(f"identifiable_zone run type {runs[IDENTIFIABLE_ZONE.dag_id]['run_type']}")
    for dag_id in DAG_IDS[1:]:
        if runs[dag_id]["run_type"] != "asset_triggered":
            raise StackError(f"{dag_id} was not started by its Asset: run type {runs[dag_id]['run_type']}")
    events = {}
    all_events = api.asset_events()
    for name in ASSET_CHAIN:
        mine = [e for e in all_events if e.get("name") == name]
        if not mine:
            raise StackError(f"no Asset event for {name}; events: {sorted({e.get('name') for e in all_events})}")
        ev = mine[-1]
        producer = ASSET_PRODUCER[name]
        if ev["source_dag_id"] != producer or ev["source_run_id"] != runs[producer]["dag_run_id"]:
            raise StackError(f"{name} event from {ev['source_dag_id']}/{ev['source_run_id']}, "
                             f"expected {producer}/{runs[producer]['dag_run_id']}")
        events[name] = ev
    # each event started the next DAG's run
    for name, consumer in ASSET_CONSUMER.items():
        created = {(d["dag_id"], d["run_id"]) for d in events[name]["created_dagruns"]}
        if (consumer, runs[consumer]["dag_run_id"]) not in created:
            raise StackError(f"{name} event did not create {consumer}/{runs[consumer]['dag_run_id']}: {created}")
    return {"runs": runs, "events": events}


DEFAULT_EXTRA_ENV = {
    # small populations stop at the balance gate by design: report-only here
    "LTCEVAL_BALANCE_CRITICAL": "0",
    # this exercises orchestration, not precision: fewer bootstrap replicates
    "LTCEVAL_BOOTSTRAP_REPS": "99",
}


def run_once(persons: int, seed: int, timeout: float, keep: bool = False, workdir: Path | None = None,
             extra_env: dict[str, str] | None = None, preload: bool = True, progress=print) -> dict:
    """The whole exercise; returns timings and the check_runs() result."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="ltceval-stack-"))
    cluster = PostgresCluster()
    stack = None
    try:
        cluster.start()
        timings["postgres"] = time.monotonic() - t0
        progress(f"PostgreSQL on 127.0.0.1:{cluster.port} ({timings['postgres']:.0f} s)")
        stack = AirflowStack(home=workdir / "airflow", out=workdir / "out", db_url=cluster.url,
                             extra_env={**DEFAULT_EXTRA_ENV, **(extra_env or {})})
        timings["db_migrate"] = stack.migrate()
        progress(f"airflow db migrate ({timings['db_migrate']:.0f} s)")
        timings["synth"] = stack.synth(persons, seed)
        progress(f"ltceval synth --persons {persons} ({timings['synth']:.0f} s)")
        t1 = time.monotonic()
        stack.start_services(preload=preload)
        stack.wait_for_api()
        stack.wait_for_dags()
        timings["services_up"] = time.monotonic() - t1
        progress(f"api-server on {stack.api.base_url}, DAGs parsed ({timings['services_up']:.0f} s)")
        t2 = time.monotonic()
        stack.unpause_and_trigger()
        stack.wait_for_chain(timeout, progress=progress)
        timings["dag_runs"] = time.monotonic() - t2
        result = check_runs(stack.api)
        timings["total"] = time.monotonic() - t0
        progress(f"all three DAG runs succeeded; report {stack.report} ({timings['total']:.0f} s in all)")
        if keep:
            progress(f"UI: {stack.api.base_url}  user {stack.username}  password {stack.password}  "
                     "(Ctrl-C stops everything)")
            try:
                while True:
                    stack.check_alive()
                    time.sleep(5)
            except KeyboardInterrupt:
                pass
        return {"timings": timings, **result, "out": str(stack.out), "home": str(stack.home)}
    except BaseException:
        if stack is not None:
            print(stack.logs_report(), file=sys.stderr)
        if cluster.base is not None:
            print(f"===== postgres.log\n{_tail(cluster.log)}", file=sys.stderr)
        raise
    finally:
        if stack is not None:
            stack.stop()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the three DAG runs")
    ap.add_argument("--workdir", type=Path, help="AIRFLOW_HOME and output go here (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the stack up after the run (Ctrl-C stops it)")
    ap.add_argument("--no-preload", action="store_true",
                    help="plain `airflow scheduler` (default: through ops/airflow_preloaded.py)")
    args = ap.parse_args(argv)
    result = run_once(args.persons, args.seed, args.timeout, keep=args.keep, workdir=args.workdir,
                      preload=not args.no_preload)
    print(json.dumps({"timings": {k: round(v, 1) for k, v in result["timings"].items()},
                      "runs": {d: r["dag_run_id"] for d, r in result["runs"].items()},
                      "out": result["out"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
