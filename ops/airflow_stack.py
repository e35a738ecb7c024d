"""Run the three ltceval DAGs under a real Airflow scheduler on a throwaway PostgreSQL.

This is what CI's `tests/ops/test_scheduler_postgres.py` does, and a human can run it too
(from the repository root, after `make setup`):

    uv run --frozen python ops/airflow_stack.py --persons 3000            # run, check, stop
    uv run --frozen python ops/airflow_stack.py --persons 3000 --keep     # ... then keep it up

(`python -m ops.airflow_stack` is the same command.)

It needs Debian's PostgreSQL server binaries (`apt-get install postgresql`; only the binaries
are used, no system cluster is touched). Steps:

1. `initdb` + `pg_ctl start` a cluster in a fresh temporary folder on a free local port
   (as the `postgres` user when run as root: initdb refuses root), password authentication
   over TCP, fsync off (it is thrown away);
2. point `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN` at it and run `airflow db migrate`;
3. write a synthetic population with `ltceval synth` and a random pseudonymisation key file;
4. start `airflow api-server`, `airflow scheduler` (LocalExecutor), `airflow dag-processor` and
   `airflow triggerer` as separate processes sharing one AIRFLOW_HOME, each logging to
   `<home>/proc-*.log`;
5. through the public REST API (`/api/v2`, JWT from `/auth/token`): wait for the three DAGs,
   unpause them, trigger `identifiable_zone`, then poll until the `evaluation` run (started by
   the Asset chain pseudonymised_tables -> evaluation_panel) has succeeded, and check the
   runs and Asset events (ops/run_checks.py);
6. stop the processes (SIGTERM to each one's own process group, then SIGKILL) and the cluster.

This module is the supervisor; the pieces it drives are the other modules of ops/ (listed in
ops/__init__.py).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.assets import EVALUATION, IDENTIFIABLE_ZONE
from core.keys import new_key
from core.settings import UNBLIND_REASON_ENV
from ops import StackError
from ops.airflow_api import ApiClient
from ops.airflow_environment import airflow_env
from ops.local_ports import free_port
from ops.log_files import readable_task_log, tail
from ops.postgres_cluster import PostgresCluster
from ops.run_checks import DAG_IDS, check_runs

REPORT_NAME = "business_case.html"
DEFAULT_EXTRA_ENV = {
    # small populations fail the balance gate by design: show the estimates anyway, saying why
    UNBLIND_REASON_ENV: "small test population: balance below 0.1 is not attainable on a cohort this size (ops/airflow_stack.py)",
    # this exercises orchestration, not precision: fewer bootstrap replicates
    "LTCEVAL_BOOTSTRAP_REPS": "99",
}


@dataclass
class AirflowStack:
    """api-server + scheduler + dag-processor + triggerer on one AIRFLOW_HOME, as child processes."""

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
            fh.write(new_key())
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
            raise StackError(f"{name} failed ({proc.returncode}):\n{tail(self.log_path(name))}")
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
        # the analytical DAG's dbt node sensors are deferrable (cosmos watcher mode); they defer
        # only for a node the dbt build did not report, which then waits here, as under compose
        self.start("triggerer", ["triggerer"])

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(f"airflow {name} exited ({proc.returncode}):\n{tail(self.log_path(name))}")

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
                    lines.append(readable_task_log(tail(f, 40)))
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
                parts.append(f"===== {path.name} (last {lines} lines)\n{tail(path, lines)}")
        return "\n".join(parts)


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
            print(f"===== postgres.log\n{tail(cluster.log)}", file=sys.stderr)
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
