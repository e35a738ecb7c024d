"""A throwaway PostgreSQL cluster: Debian's server binaries, a temporary folder, a free port.

Only the binaries are used (`apt-get install postgresql`); no system cluster is touched.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import env_value
from ops import StackError
from ops.local_ports import free_port

BINDIR_ENV = "LTCEVAL_PG_BINDIR"


def postgres_bindir() -> Path | None:
    """Debian keeps the server binaries (initdb, pg_ctl) in /usr/lib/postgresql/<major>/bin."""
    env_dir = env_value(BINDIR_ENV)
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


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster in its own temporary folder, on a free local port.

    Password authentication over TCP, fsync off (it is thrown away); run as the `postgres`
    user when we are root, as initdb refuses root.
    """

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
                             f"`postgresql` package (.ci/run does), or set {BINDIR_ENV}")
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
        """Stop the server (if it started) and delete the cluster's folder."""
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
