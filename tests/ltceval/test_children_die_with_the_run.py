"""A ``kill -9`` of ``ltceval run`` stops its children (issue 15): before, the DAG process ran on
to the end and published. For real: a parent process runs a step the way ``ltceval run``
does (``_step``, and ``_Beside`` for the step run beside the next), is killed with SIGKILL,
and the child must be gone within seconds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.settings import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

CHILD = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"


def _alive(pid: int) -> bool:
    """Running or sleeping; not gone, not a zombie waiting for its new parent to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
    return state not in ("Z", "X")


def _wait_for(path: Path, seconds: float = 60) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


@pytest.mark.parametrize("how", ["step", "beside"])
def test_a_killed_run_takes_its_child_with_it(tmp_path, how):
    pid_file = tmp_path / "child.pid"
    child = [sys.executable, "-c", CHILD, str(pid_file)]
    run = {"step": f"run._step('child', {child!r}, dict(os.environ), Path({str(tmp_path / 'child.log')!r}))",
           "beside": f"run._Beside('child', {child!r}, dict(os.environ), Path({str(tmp_path / 'child.log')!r})).wait()"}
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from pathlib import Path
        from ltceval import run
        {run[how]}
    """)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    try:
        child_pid = int(_wait_for(pid_file))
        assert _alive(child_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        end = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < end:
            time.sleep(0.05)
        assert not _alive(child_pid), "the child outlived the killed run"
    finally:
        parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # only the child this test started
