"""The identifiable zone is the owner's only (issue 15): under the usual umask 022 its files were
written 0644, readable by every account on the machine. Now its folders are 0700 and its files
0600 after every step, failed or not, and the zone's folder is 0700 before a step writes
anything. The outputs meant to be shared (pseudonymised tables, IG report) keep the umask's
modes. A real run of the zone on a small synthetic population."""
from __future__ import annotations

import os
import stat

import pytest

from core.errors import LtcevalError
from core.settings import Paths
from identifiable_zone import pipeline

from idz_helpers import copy_landing, run_zone


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                out[os.path.relpath(p, root)] = (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode))
    return out


def test_every_identifiable_file_and_folder_is_the_owners_only(small_landing, tmp_path, umask_022):
    paths, _ = run_zone(copy_landing(small_landing, tmp_path / "out"), run_id="perm")
    modes = _modes(paths.identifiable)
    assert stat.S_IMODE(os.stat(paths.identifiable).st_mode) == 0o700
    files = [p for p, (is_dir, _) in modes.items() if not is_dir]
    assert {"accepted/gp_patients.parquet", "links/record_person.parquet", "validation_summary.json"} <= set(files)
    assert any(p.startswith("validation_cache/") for p in files)
    wrong = {p: f"{m:04o}" for p, (is_dir, m) in modes.items() if m != (0o700 if is_dir else 0o600)}
    assert not wrong, f"not owner-only: {wrong}"
    # what is meant to be shared is left as the umask makes it
    person = paths.pseudonymised / "person.parquet"
    assert stat.S_IMODE(os.stat(person).st_mode) == 0o644


def test_the_zone_is_private_before_a_step_writes_even_when_it_fails(tmp_path, umask_022):
    paths = Paths(tmp_path / "out")
    (paths.out / "landing").mkdir(parents=True)  # no extract at all: validation fails
    with pytest.raises(LtcevalError, match="no file matches"):
        pipeline.validate_all(paths, run_id="empty")
    assert stat.S_IMODE(os.stat(paths.identifiable).st_mode) == 0o700
    wrong = {p: f"{m:04o}" for p, (is_dir, m) in _modes(paths.identifiable).items()
             if m != (0o700 if is_dir else 0o600)}
    assert not wrong
