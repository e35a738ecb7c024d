"""Helpers of the operations tests: the compose file and a PostgreSQL-backed scheduler run.

Both need Debian packages that `.ci/run` installs (`docker-compose`, `postgresql`). A missing
tool FAILS the test with the install command, so CI can never pass by skipping them. The one
exception: a machine where the tool could not have been installed by us at all (not root AND
no apt-get, e.g. a developer's non-Debian laptop) skips with the same message.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def require(found, what: str, apt_package: str):
    """Return ``found`` when truthy; else fail (or, off CI-like machines, skip) with how to get it."""
    if found:
        return found
    msg = (f"{what} is missing: install Debian's `{apt_package}` package "
           f"(`apt-get install {apt_package}`; .ci/run does this before `make test`)")
    if os.geteuid() != 0 and shutil.which("apt-get") is None:
        pytest.skip(msg + " [skipped: not root and no apt-get on this machine]")
    pytest.fail(msg, pytrace=False)


def load_ops_module(name: str):
    """ops/<name>.py, loaded by path (ops/ is scripts for humans and CI, not a package)."""
    key = f"ltceval_ops_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO / "ops" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
