"""Run provenance: what code and configuration a run used, recorded in ``identifiable/run.json``.

The record names the sources config (and its checksum), the code version, the configuration
with secret-sounding values redacted, the environment options that changed the run, and which
key source was configured (never the key).
"""
from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

from core.files import read_json, sha256_file
from core.settings import KEY_ENV, KEY_FILE_ENV, LINKAGE_MODEL_ENV, PERIOD_ENV, REPO_ROOT, SOURCES_CONFIG_ENV, Paths, env_value

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


def new_run_record(cfg, run_id: str) -> dict:
    """The provenance of a run that starts now (the data period is added after validation)."""
    return {
        "run_id": run_id, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources_config": cfg.path, "sources_config_sha256": sha256_file(Path(cfg.path)),
        "mode": cfg.mode, "code_version": code_version(),
        "configuration": redact(cfg.raw),
        "environment_options": {k: env_value(k) for k in (LINKAGE_MODEL_ENV, SOURCES_CONFIG_ENV, PERIOD_ENV)
                                if env_value(k)},
        "key_source_configured": [k for k in (KEY_ENV, KEY_FILE_ENV) if env_value(k)]}


def run_record_path(paths: Paths) -> Path:
    return paths.identifiable / "run.json"


def read_run_record(paths: Paths) -> dict:
    p = run_record_path(paths)
    if not p.exists():
        raise RuntimeError("identifiable/run.json missing: run validate_all first")
    return read_json(p)
