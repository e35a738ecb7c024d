"""Tools tests drive that are not Python packages: docker-compose, PostgreSQL, a word list.

Each needs a Debian package that `.ci/run` installs (`docker-compose`, `postgresql`, `wbritish`
for the identifier scan's dictionary of ordinary words). A missing
tool FAILS the test with the install command, so CI can never pass by skipping them. The one
exception: a machine where the tool could not have been installed by us at all (not root AND
no apt-get, e.g. a developer's non-Debian laptop) skips with the same message.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def require(found, what: str, apt_package: str):
    """Return ``found`` when truthy; else fail (or, off CI-like machines, skip) with how to get it."""
    if found:
        return found
    msg = (f"{what} is missing: install Debian's `{apt_package}` package "
           f"(`apt-get install {apt_package}`; .ci/run does this before `make test`)")
    if os.geteuid() != 0 and shutil.which("apt-get") is None:
        pytest.skip(msg + " [skipped: not root and no apt-get on this machine]")
    pytest.fail(msg, pytrace=False)

