"""docker-compose.yml, validated without a Docker engine: `docker-compose config` (Debian's
1.29; also `docker compose` v2 when present) must accept it, and the resolved file must give
the DAGs what they need: the services of an Airflow 3 deployment on PostgreSQL with the
LocalExecutor, one named volume per data zone mounted only where it is used, the
pseudonymisation key as a file secret (never a value), and every variable the code reads.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from core.settings import SPARK_MASTER_ENV
from required_tools import REPO, require

ZONES = ("landing", "identifiable", "analytical", "reports")
SECRET_NAME = "pseudonymisation_key"
DUMMY_KEY = "0123456789abcdef" * 4  # written to the dummy secret file; must never show up
# LTCEVAL_* names the code reads that compose deliberately does not set, and why
NOT_FOR_COMPOSE = {
    "LTCEVAL_PSEUDO_KEY": "the key value itself: compose passes a file secret (LTCEVAL_PSEUDO_KEY_FILE)",
    "LTCEVAL_UPSTREAM_PSEUDO_KEY": "synthetic generator only (upstream-pseudonymised test extracts)",
    "LTCEVAL_GENERATOR_WORKERS": "synthetic generator only (ltceval synth, benchmarks; no DAG task generates)",
    "LTCEVAL_WAREHOUSE": "set by the analytical DAG for dbt (from LTCEVAL_OUT)",
    "LTCEVAL_PSEUDONYMISED_DIR": "set by the analytical DAG for dbt (from LTCEVAL_OUT)",
    "LTCEVAL_SPARK_DIR": "set for dbt from LTCEVAL_OUT (Paths.dbt_env); read only by dbt's spark target",
    "LTCEVAL_PG_BINDIR": "ops/postgres_cluster.py, the stack's own throwaway cluster; compose runs a postgres service",
}
SPARK_PROFILE = "spark"
SPARK_MASTER = SPARK_MASTER_ENV  # the analytical zone's Spark master
# folders whose code runs inside DAG tasks or DAG parsing
CODE_DIRS = ("dags", "core", "ltceval", "identifiable_zone", "evaluation", "expectations")


def _compose_commands() -> list[list[str]]:
    cmds = []
    if shutil.which("docker-compose"):
        cmds.append(["docker-compose"])
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            cmds.append(["docker", "compose"])
    return cmds


@pytest.fixture(scope="module")
def compose_cmds():
    return require(_compose_commands(), "docker-compose (or the `docker compose` plugin)", "docker-compose")


def _clean_env() -> dict[str, str]:
    """No variable of ours from the calling shell may leak into the interpolation."""
    names = set()
    for line in (REPO / ".env.example").read_text().splitlines():
        m = re.match(r"\s*#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return {k: v for k, v in os.environ.items()
            if k not in names and not k.startswith(("LTCEVAL_", "AIRFLOW", "POSTGRES_", "COMPOSE_"))}


def _dotenv_names() -> set[str]:
    """The compose-level names .env.example sets (not the commented-out LTCEVAL_* options)."""
    return {m.group(1) for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M)
            if not m.group(1).startswith("LTCEVAL_")}


def _project(tmp: Path, fill_secrets: bool) -> Path:
    """A copy of the compose project: .env from .env.example (empty values filled with dummies
    when ``fill_secrets``) and a dummy key file where .env says the secret lives."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO / name, tmp / name)
    lines = []
    for line in (REPO / ".env.example").read_text().splitlines():
        m = re.match(r"([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and fill_secrets and m.group(2).strip() in ("", "change-me"):
            line = f"{m.group(1)}=dummy-{m.group(1).lower()}"
        lines.append(line)
    (tmp / ".env").write_text("\n".join(lines) + "\n")
    env = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (tmp / ".env").read_text(), flags=re.M))
    key_file = tmp / env.get("PSEUDO_KEY_FILE", "./secrets/pseudonymisation.key")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(DUMMY_KEY + "\n")
    return tmp


def _config(cmd: list[str], project: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, "-f", "docker-compose.yml", *extra, "config"], cwd=project, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def resolved(compose_cmds, tmp_path_factory) -> list[tuple[str, str, dict]]:
    """[(tool, raw output, parsed config)] for every compose implementation on this machine."""
    project = _project(tmp_path_factory.mktemp("compose"), fill_secrets=True)
    out = []
    for cmd in compose_cmds:
        proc = _config(cmd, project)
        assert proc.returncode == 0, f"{' '.join(cmd)} config rejected docker-compose.yml:\n{proc.stderr}"
        out.append((" ".join(cmd), proc.stdout, yaml.safe_load(proc.stdout)))
    return out


# ----------------------------------------------------------------- normalising 1.29 and v2 output


def _env(svc: dict) -> dict:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict((e.split("=", 1) + [None])[:2] for e in env)
    return env


def _mounts(svc: dict) -> list[dict]:
    """[{source, target, read_only}] from short ("src:dst:ro") or long syntax."""
    mounts = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            mounts.append({"source": parts[0], "target": parts[1],
                           "read_only": len(parts) > 2 and "ro" in parts[2].split(",")})
        else:
            mounts.append({"source": v.get("source"), "target": v["target"], "read_only": bool(v.get("read_only"))})
    return mounts


def _secrets(svc: dict) -> list[dict]:
    return [{"source": s} if isinstance(s, str) else s for s in svc.get("secrets") or []]


def _ports(svc: dict) -> list[tuple[str, int]]:
    """[(published, target)]"""
    ports = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            ports.append((str(p.get("published")), int(p["target"])))
        else:
            *_, published, target = str(p).split(":")
            ports.append((published, int(target.split("/")[0])))
    return ports


def _command(svc: dict) -> str:
    cmd = svc.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _service(cfg: dict, *names: str) -> tuple[str, dict]:
    for want in names:
        for name, svc in cfg["services"].items():
            if name == want or name.endswith(want) or name.replace("-", "") == want.replace("-", ""):
                return name, svc
    raise AssertionError(f"no service named like {names}: have {sorted(cfg['services'])}")


def _roles(cfg: dict) -> dict[str, tuple[str, dict]]:
    return {
        "postgres": _service(cfg, "postgres"),
        "init": _service(cfg, "airflow-init"),
        "api": _service(cfg, "airflow-apiserver", "airflow-api-server", "apiserver", "api-server"),
        "scheduler": _service(cfg, "airflow-scheduler", "scheduler"),
        "dag-processor": _service(cfg, "airflow-dag-processor", "dag-processor"),
        "triggerer": _service(cfg, "airflow-triggerer", "triggerer"),
    }


AIRFLOW_ROLES = ("init", "api", "scheduler", "dag-processor", "triggerer")


def _depends(svc: dict) -> dict:
    dep = svc.get("depends_on") or {}
    return {d: {} for d in dep} if isinstance(dep, list) else dep


def _volume_source(cfg: dict, source: str) -> str:
    """The declared top-level volume a mount uses (v2 may prefix the project name)."""
    vols = cfg.get("volumes") or {}
    if source in vols:
        return source
    for name, spec in vols.items():
        if (spec or {}).get("name") == source:
            return name
    return source


# ----------------------------------------------------------------- the tests


def test_compose_refuses_to_start_without_the_secrets(compose_cmds, tmp_path):
    """.env.example as shipped leaves the secrets empty: compose must refuse, naming one."""
    project = _project(tmp_path, fill_secrets=False)
    for cmd in compose_cmds:
        proc = _config(cmd, project)
        assert proc.returncode != 0, f"{' '.join(cmd)} accepted .env.example with its secrets left empty"
        assert re.search(r"AIRFLOW_FERNET_KEY|AIRFLOW_JWT_SECRET|AIRFLOW_API_SECRET_KEY|POSTGRES_PASSWORD",
                         proc.stderr), proc.stderr


def test_services_of_an_airflow3_deployment(resolved):
    for tool, _, cfg in resolved:
        roles = _roles(cfg)
        init_name, init = roles["init"]
        assert str(init.get("restart", "no")) in ("no", "False", "false"), f"{tool}: {init_name} must be one-shot"
        assert "db migrate" in _command(init), f"{tool}: {init_name} must run `airflow db migrate`"
        assert "api-server" in _command(roles["api"][1])
        assert _command(roles["scheduler"][1]).endswith("scheduler")
        assert "dag-processor" in _command(roles["dag-processor"][1])
        assert "triggerer" in _command(roles["triggerer"][1])
        pg_name = roles["postgres"][0]
        assert roles["postgres"][1].get("healthcheck"), f"{tool}: postgres needs a healthcheck to wait on"
        for role in ("api", "scheduler", "dag-processor", "triggerer"):
            name, svc = roles[role]
            deps = _depends(svc)
            assert deps.get(init_name, {}).get("condition") == "service_completed_successfully", \
                f"{tool}: {name} must wait for {init_name} to finish"
            assert deps.get(pg_name, {}).get("condition") == "service_healthy", f"{tool}: {name} must wait for postgres"
        assert _depends(init).get(pg_name, {}).get("condition") == "service_healthy"


def test_local_executor_on_the_postgres_metadata_database(resolved):
    for tool, _, cfg in resolved:
        roles = _roles(cfg)
        pg_name, pg = roles["postgres"]
        pg_env = _env(pg)
        conns = set()
        for role in AIRFLOW_ROLES:
            name, svc = roles[role]
            env = _env(svc)
            assert env.get("AIRFLOW__CORE__EXECUTOR") == "LocalExecutor", f"{tool}: {name}"
            url = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
            assert url.scheme.startswith("postgresql"), f"{tool}: {name} metadata DB is {url.scheme}"
            assert url.hostname == pg_name, f"{tool}: {name} metadata DB host {url.hostname}, not {pg_name}"
            assert url.username == pg_env["POSTGRES_USER"] and url.password == pg_env["POSTGRES_PASSWORD"]
            assert url.path.lstrip("/") == pg_env.get("POSTGRES_DB", pg_env["POSTGRES_USER"])
            conns.add(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
            # secrets every component must share, all set (from .env) and all the same
            for shared in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
                assert env.get(shared), f"{tool}: {name} lacks {shared}"
            api_name = roles["api"][0]
            exec_url = urlsplit(env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", ""))
            assert exec_url.hostname == api_name and exec_url.path.rstrip("/") == "/execution", \
                f"{tool}: {name}: tasks must reach the execution API on {api_name}"
        assert len(conns) == 1


def test_each_zone_is_its_own_volume_mounted_only_where_needed(resolved):
    from core.settings import Paths

    for tool, _, cfg in resolved:
        roles = _roles(cfg)
        declared = cfg.get("volumes") or {}
        for zone in ZONES:
            assert zone in declared, f"{tool}: no named volume {zone!r}"
        sched_name, sched = roles["scheduler"]
        out = Path(_env(sched)["LTCEVAL_OUT"])
        paths = Paths(out)
        mounts = {_volume_source(cfg, m["source"]): m for m in _mounts(sched)}
        for zone in ZONES:
            assert zone in mounts, f"{tool}: {sched_name} (runs every task) must mount {zone}"
            assert Path(mounts[zone]["target"]) == out / zone, f"{tool}: {zone} mounted at {mounts[zone]['target']}"
        assert len({m["target"] for m in mounts.values()}) == len(mounts)
        # landing is only read, never written, by the pipeline
        assert mounts["landing"]["read_only"], f"{tool}: mount the landing zone read-only in {sched_name}"
        # every place the tasks write lies on a zone volume (else it is lost with the container)
        written = [paths.landing, paths.identifiable, paths.pseudonymised]
        for attr in ("published_warehouse", "staging_warehouse", "run_handoff", "reports_root", "warehouse",
                     "reports", "gx_results"):
            if hasattr(paths, attr):
                written.append(getattr(paths, attr))
        for p in written:
            assert any(p == Path(m["target"]) or Path(m["target"]) in p.parents for m in mounts.values()), \
                f"{tool}: {p} is on no volume of {sched_name}"
        # nobody else mounts a data zone
        for role in ("postgres", "init", "api", "dag-processor", "triggerer"):
            name, svc = roles[role]
            used = {_volume_source(cfg, m["source"]) for m in _mounts(svc)}
            assert not used & set(ZONES), f"{tool}: {name} mounts data zone(s) {sorted(used & set(ZONES))}"
        for name, svc in cfg["services"].items():  # e.g. a demo data loader: landing only
            used = {_volume_source(cfg, m["source"]) for m in _mounts(svc)} & set(ZONES)
            # the optional Spark worker writes dbt's Spark tables: the analytical zone only
            allowed = {"analytical"} if SPARK_PROFILE in (svc.get("profiles") or []) else {"landing"}
            if name != sched_name and used:
                assert used == allowed, f"{tool}: {name} mounts {sorted(used)}"


def test_pseudonymisation_key_is_a_file_secret_for_the_scheduler_only(resolved):
    raw_compose = (REPO / "docker-compose.yml").read_text()
    for tool, text, cfg in resolved:
        roles = _roles(cfg)
        assert DUMMY_KEY not in text, f"{tool}: the key's value appears in the resolved config"
        secret = (cfg.get("secrets") or {}).get(SECRET_NAME)
        assert secret and secret.get("file"), f"{tool}: top-level secret {SECRET_NAME!r} must come from a file"
        sched_name, sched = roles["scheduler"]
        assert SECRET_NAME in {s["source"] for s in _secrets(sched)}, f"{tool}: {sched_name} lacks the key secret"
        target = next((s.get("target") for s in _secrets(sched) if s["source"] == SECRET_NAME), None) or SECRET_NAME
        expected = target if target.startswith("/") else f"/run/secrets/{target}"
        assert _env(sched).get("LTCEVAL_PSEUDO_KEY_FILE") == expected
        for name, svc in cfg["services"].items():
            assert "LTCEVAL_PSEUDO_KEY" not in _env(svc), f"{tool}: {name} gets the key value in its environment"
            assert not svc.get("env_file"), f"{tool}: {name} would get every .env secret via env_file"
            # (compose 1.29 inlines an env_file into `environment`): no .env-only name may arrive
            leaked = (set(_env(svc)) & _dotenv_names()) - ({"POSTGRES_PASSWORD"} if name == roles["postgres"][0] else set())
            assert not leaked, f"{tool}: {name} receives .env variables {sorted(leaked)} (env_file?)"
            if name != sched_name:
                assert SECRET_NAME not in {s["source"] for s in _secrets(svc)}, f"{tool}: {name} needs no key"
    # and the compose file itself carries no credential values, only ${VARIABLES}
    raw = yaml.safe_load(raw_compose)
    for name, svc in raw["services"].items():
        for k, v in (_env(svc) or {}).items():
            if re.search(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|_CONN)$", k) and v is not None:
                assert "${" in str(v), f"{name}: {k} has a literal value in docker-compose.yml"
    assert not re.search(r"\b[0-9a-f]{32,}\b", raw_compose), "a hex secret is written into docker-compose.yml"
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and any(x.strip("/") == "secrets" for x in ignored)


def _ltceval_names_read_by_code() -> set[str]:
    names = set()
    for d in CODE_DIRS:
        for f in (REPO / d).rglob("*.py"):
            names |= set(re.findall(r"[\"'](LTCEVAL_[A-Z0-9_]+)[\"']", f.read_text()))
    # costing options are read as f"LTCEVAL_{name}": record what from_env asks for
    from evaluation.costing import CostingConfig

    class Recorder(dict):
        def get(self, key, default=None):
            names.add(key)
            return default

    CostingConfig.from_env(Recorder())
    return names


def test_every_variable_the_dags_read_is_provided(resolved):
    from ltceval.run import airflow_env
    from core.settings import Paths

    code_names = _ltceval_names_read_by_code()
    assert {"LTCEVAL_OUT", "LTCEVAL_PSEUDO_KEY_FILE", "LTCEVAL_SOURCES_CONFIG"} <= code_names
    # what the embedded runner configures Airflow with must be configured here too
    # only what airflow_env sets itself: it copies os.environ, which other tests (importing a
    # DAG file) may have extended with AIRFLOW__* settings of their own
    embedded = {k: v for k, v in airflow_env(Paths(Path("/x"))).items()
                if k.startswith("AIRFLOW__") and os.environ.get(k) != v}
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())  # anchors and merges resolved
    for tool, _, cfg in resolved:
        roles = _roles(cfg)
        for role in ("scheduler", "dag-processor"):  # parse the DAG files and/or run the tasks
            name, svc = roles[role]
            env = _env(svc)
            # a pass-through `NAME:` left unset may be dropped from the resolved output
            declared = set(env) | set(_env(raw["services"][name]))
            missing = sorted(n for n in code_names - set(NOT_FOR_COMPOSE) - {"LTCEVAL_PSEUDO_KEY_FILE"}
                             if n not in declared)
            assert not missing, (f"{tool}: {name} lacks {missing}: add them to x-airflow-env in docker-compose.yml "
                                 "(`NAME:` passes one through from .env when set) or to NOT_FOR_COMPOSE here, "
                                 "with the reason")
            assert env["LTCEVAL_OUT"] and env["LTCEVAL_SOURCES_CONFIG"].startswith("/opt/ltceval/config/")
            assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/ltceval/dags"
            for k in embedded:
                assert k in env, f"{tool}: {name} lacks {k} (set by ltceval.run.airflow_env)"
            assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False" and env["AIRFLOW__API__EXPOSE_CONFIG"] == "False"
    # the image puts the DAGs and the sources config where these variables point
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR /opt/ltceval$", dockerfile, re.M)
    for d in ("dags", "config", "dbt_project", *CODE_DIRS):
        assert re.search(rf"^COPY {d} ", dockerfile, re.M), f"Dockerfile does not copy {d}/"
    assert not re.search(r"^COPY \. ", dockerfile, re.M), "COPY . would bake .env / secrets/ into the image"


def test_ui_port_is_published(resolved):
    for tool, _, cfg in resolved:
        name, api = _roles(cfg)["api"]
        ports = _ports(api)
        assert ("8080", 8080) in ports, f"{tool}: {name} publishes {ports}"
        assert "--port 8080" in _command(api) or "-p 8080" in _command(api) or "AIRFLOW__API__PORT" not in _env(api)


# ----------------------------------------------------------------- the optional Spark profile


def _locked_version(package: str) -> str:
    lock = (REPO / "uv.lock").read_text()
    m = re.search(rf'^name = "{re.escape(package)}"\nversion = "([^"]+)"', lock, re.M)
    assert m, f"{package} is not in uv.lock"
    return m.group(1)


def _spark_services(cfg: dict) -> dict[str, dict]:
    return {n: s for n, s in cfg["services"].items() if SPARK_PROFILE in (s.get("profiles") or [])}


def test_the_default_stack_is_unchanged_by_the_spark_profile(resolved):
    """Without `--profile spark` nothing Spark starts (1.29's `config` lists profiled services,
    marked; v2 leaves them out), no service waits on one, and Airflow gets no Spark master."""
    for tool, _, cfg in resolved:
        spark = _spark_services(cfg)
        for name, svc in cfg["services"].items():
            if name not in spark:
                assert not set(_depends(svc)) & set(spark), f"{tool}: {name} depends on a Spark service"
        for role in AIRFLOW_ROLES:
            name, svc = _roles(cfg)[role]
            assert not _env(svc).get(SPARK_MASTER), f"{tool}: {name} has a Spark master by default"


def test_the_spark_profile_adds_a_master_and_worker_the_scheduler_reaches(compose_cmds, tmp_path):
    """`docker-compose --profile spark config` (profiles: Compose >= 1.28, and v2): a master and a
    worker on the pipeline's own Spark release, the worker registered with the master and holding
    only the analytical zone, and the scheduler given the master (LTCEVAL_SPARK_MASTER) from .env."""
    project = _project(tmp_path, fill_secrets=True)
    master_url = "spark://spark-master:7077"
    with (project / ".env").open("a") as env_file:
        env_file.write(f"{SPARK_MASTER}={master_url}\n")
    spark_release = _locked_version("pyspark")
    for cmd in compose_cmds:
        proc = _config(cmd, project, "--profile", SPARK_PROFILE)
        assert proc.returncode == 0, f"{' '.join(cmd)} --profile spark config rejected docker-compose.yml:\n{proc.stderr}"
        tool, cfg = " ".join(cmd), yaml.safe_load(proc.stdout)
        spark = _spark_services(cfg)
        master_name, master = _service({"services": spark}, "spark-master")
        worker_name, worker = _service({"services": spark}, "spark-worker")
        assert set(spark) == {master_name, worker_name}, f"{tool}: Spark profile services {sorted(spark)}"
        for name, svc in spark.items():
            assert svc["image"] == f"apache/spark:{spark_release}", \
                f"{tool}: {name} runs {svc['image']}, the pipeline's pyspark is {spark_release} (uv.lock)"
            assert not _secrets(svc), f"{tool}: {name} needs no secret"
        assert "org.apache.spark.deploy.master.Master" in _command(master) and "--port 7077" in _command(master)
        assert all(published.startswith("127.0.0.1:") or published == "8081" for published, _ in _ports(master))
        assert "org.apache.spark.deploy.worker.Worker" in _command(worker)
        assert f"spark://{master_name}:7077" in _command(worker), f"{tool}: {worker_name} must register with {master_name}"
        assert master_name in _depends(worker)
        sched_name, sched = _roles(cfg)["scheduler"]
        sched_mounts = {_volume_source(cfg, m["source"]): m["target"] for m in _mounts(sched)}
        worker_mounts = {_volume_source(cfg, m["source"]): m["target"] for m in _mounts(worker)}
        assert worker_mounts == {"analytical": sched_mounts["analytical"]}, \
            f"{tool}: {worker_name} must see the analytical zone where the driver ({sched_name}) does, and nothing else"
        assert _mounts(master) == [], f"{tool}: {master_name} holds no data"
        url = urlsplit(_env(sched).get(SPARK_MASTER) or "")
        assert (url.scheme, url.hostname, url.port) == ("spark", master_name, 7077), \
            f"{tool}: {sched_name} reaches the master through {SPARK_MASTER}, got {url.geturl()!r}"
