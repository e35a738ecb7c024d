"""The memory guard of benchmarks/scale.py on real child processes: it stops a tree that passes
its limit (wherever in the tree the memory is), and leaves one below it alone."""
from __future__ import annotations

import os
import signal
import sys
import textwrap

import psutil
import pytest

from benchmarks.memory_guard import MIB, run_guarded
from benchmarks.scale import airflow_step

# allocates 20 MiB at a time (touched, so resident) up to ``total`` MiB, then says so
ALLOCATE = textwrap.dedent("""
    import sys, time
    total = int(sys.argv[1])
    blocks = []
    while len(blocks) * 20 < total:
        blocks.append(bytearray(b"x" * (20 * 2**20)))
        print("allocated", len(blocks) * 20, "MiB", flush=True)
        time.sleep(0.05)
    print("ALLOCATED ALL", flush=True)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
""")


def _own() -> int:
    """The limit covers the guard's own process too: limits below are set above it."""
    return psutil.Process().memory_info().rss


def test_a_child_that_passes_the_limit_is_stopped_and_reported(tmp_path):
    log = tmp_path / "child.log"
    g = run_guarded([sys.executable, "-c", ALLOCATE, "1500"], _own() + 300 * MIB, log=log)
    assert g.stopped and not g.ok
    assert g.returncode == -9  # SIGKILL from the guard
    assert g.stopped_at_bytes > _own() + 300 * MIB - 50 * MIB  # own RSS may have moved a little
    assert 250 * MIB < g.peak_bytes < 1500 * MIB
    text = log.read_text()
    assert "allocated 20 MiB" in text and "ALLOCATED ALL" not in text


def test_memory_in_a_grandchild_counts_and_the_whole_tree_is_killed(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    parent = textwrap.dedent(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {ALLOCATE!r}, "1500", "60"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        child.wait()
        print("PARENT DONE", flush=True)
    """)
    log = tmp_path / "tree.log"
    g = run_guarded([sys.executable, "-c", parent], _own() + 300 * MIB, log=log)
    assert g.stopped
    grandchild = int(pid_file.read_text())
    try:  # killed: gone within moments (it would otherwise live for a minute)
        psutil.Process(grandchild).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    assert "ALLOCATED ALL" not in log.read_text() and "PARENT DONE" not in log.read_text()


def test_a_child_below_the_limit_runs_to_the_end_and_its_peak_is_measured(tmp_path):
    lines = []
    # holds its 200 MiB for a second: sampled (the kernel's peak is used only above this
    # process's own high-water mark, which a test worker may have passed long ago)
    g = run_guarded([sys.executable, "-c", ALLOCATE, "200", "1"], _own() + 2000 * MIB, on_line=lines.append)
    assert g.ok and not g.stopped and g.stopped_at_bytes is None
    assert "ALLOCATED ALL\n" in lines
    assert 200 * MIB <= g.peak_bytes < 400 * MIB


def test_the_kernels_peak_counts_only_above_the_guards_own_high_water_mark():
    """A forked child's ru_maxrss starts from its parent's mark: a tiny child of a big guard
    must not be reported at the guard's size."""
    import resource

    ballast = bytearray(b"x" * (300 * MIB))  # this process's mark: above 300 MiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > 300 * MIB
    g = run_guarded([sys.executable, "-c", "pass"], _own() + 2000 * MIB)
    del ballast
    assert g.ok and g.peak_bytes < 100 * MIB  # a bare interpreter: tens of MiB


def test_a_child_that_runs_past_the_time_limit_is_stopped_for_time():
    g = run_guarded([sys.executable, "-c", "import time; time.sleep(60)"], _own() + 2000 * MIB, time_limit_s=1.0)
    assert g.stopped and g.stopped_for == "time" and not g.ok
    assert g.returncode == -9
    assert g.seconds < 30  # killed at about a second, not after the minute


def test_a_memory_stop_says_memory():
    g = run_guarded([sys.executable, "-c", ALLOCATE, "1500"], _own() + 300 * MIB, time_limit_s=600)
    assert g.stopped and g.stopped_for == "memory"


def test_a_failing_child_is_a_failure_not_a_stop():
    g = run_guarded([sys.executable, "-c", "raise SystemExit(4)"], _own() + 500 * MIB)
    assert g.returncode == 4 and not g.stopped and not g.ok


def test_samples_are_labelled_by_the_step_the_tree_is_in():
    # a runner whose child looks like `python -m ltceval.embedded <dag>` (as `ltceval run` starts them)
    runner = ("import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(1.0)', "
              "'ltceval.embedded', 'identifiable_zone'])")
    g = run_guarded([sys.executable, "-c", runner], _own() + 1000 * MIB, label=airflow_step)
    assert g.ok
    assert set(g.by_label) == {"dag identifiable_zone"}
    assert g.by_label["dag identifiable_zone"]["peak_bytes"] > 0


def _two_steps_at_once(a: list[str], b: list[str]):
    """The guard over a runner with two children at once, whose command lines end with ``a``
    and ``b`` (as the steps `ltceval run` starts look to ``airflow_step``)."""
    runner = ("import subprocess, sys; sleep = [sys.executable, '-c', 'import time; time.sleep(1.0)']; "
              f"a = subprocess.Popen(sleep + {a!r}); b = subprocess.Popen(sleep + {b!r}); a.wait(); b.wait()")
    return run_guarded([sys.executable, "-c", runner], _own() + 1000 * MIB, label=airflow_step)


def test_two_steps_at_once_are_one_label():
    # `ltceval run` makes the metadata database beside the generator: the samples of both at
    # once are neither step's alone
    g = _two_steps_at_once(["ltceval.cli", "synth"], ["airflow", "db", "migrate"])
    assert g.ok
    assert "airflow db + generate" in g.by_label and set(g.by_label) <= {"airflow db + generate", "generate", "airflow db"}


def test_the_dbt_listing_beside_a_dag_counts_in_the_dag_s_row():
    # `ltceval run` lists the dbt project (cosmos) beside the identifiable-zone DAG: those samples
    # are the DAG's (its memory in the DAG's peak), not a step of their own
    g = _two_steps_at_once(["ltceval.embedded", "--list-dbt-project"], ["ltceval.embedded", "identifiable_zone"])
    assert g.ok
    assert "dag identifiable_zone" in g.by_label and set(g.by_label) <= {"dag identifiable_zone", "dbt ls"}


@pytest.mark.parametrize("limit, interval", [(0, 0.2), (-1, 0.2), (100 * MIB, 0)])
def test_bad_settings_are_refused(limit, interval):
    with pytest.raises(ValueError, match="must be positive"):
        run_guarded([sys.executable, "-c", "pass"], limit, interval=interval)


# a parent holding 400 MiB forks two children: one only sleeps (its pages are the parent's until
# written), one allocates 300 MiB of its own; prints the three pids, then waits to be killed
FORKS = textwrap.dedent("""
    import os, sys, time
    held = bytearray(b"x" * (400 * 2**20))
    mirror = os.fork()
    if mirror == 0:
        time.sleep(120)
        os._exit(0)
    own = os.fork()
    if own == 0:
        mine = bytearray(b"y" * (300 * 2**20))
        print("OWN READY", flush=True)
        time.sleep(120)
        os._exit(0)
    print(os.getpid(), mirror, own, flush=True)
    time.sleep(120)
""")


def test_a_child_sharing_its_parents_memory_counts_once_and_its_own_memory_counts():
    """The JVM's helper processes start by vfork: until they exec they show the driver's whole
    RSS (Spark at 2,000,000 people read 21 GiB for a 10 GiB driver). A forked child that has
    not written is the same case; memory a child allocates itself counts."""
    import subprocess
    import time

    from benchmarks.memory_guard import rss_of

    proc = subprocess.Popen([sys.executable, "-c", FORKS], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        parent, mirror, own = map(psutil.Process, map(int, next(ln for ln in lines if "OWN" not in ln).split()))
        if "OWN READY" not in "".join(lines):
            assert "OWN READY" in proc.stdout.readline()
        time.sleep(0.5)
        held = parent.memory_info().rss
        assert held > 400 * MIB
        assert mirror.memory_info().rss > 0.9 * held  # RSS shows the shared pages: a plain sum doubles them
        assert rss_of([parent, mirror]) < 1.1 * held
        assert rss_of([parent, own]) > held + 250 * MIB
        assert rss_of([parent, mirror, own]) < held + 0.1 * held + own.memory_info().rss
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
