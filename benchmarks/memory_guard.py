"""Run a command under a memory limit that covers its whole process tree.

This machine has no swap: a run that outgrows memory is not slowed down but killed by the
kernel's OOM killer, which may pick another user's process. So the guard samples, every
``interval`` seconds, the resident memory (RSS) of the command and all its descendants plus
the guard's own process, and kills the command's process group (it starts in a session of its
own) as soon as the sum passes the limit, or, when a time limit is given, as soon as the command
has run longer than that.

Peak memory is the larger of the sampled peak of that sum (the tree's own, without the guard)
and the kernel's exact peak of its largest single process (``wait4``'s ``ru_maxrss``), so a
stage shorter than one sampling interval is still measured. The kernel's figure starts from
the guard's own high-water mark (the child is forked from it), so it is used only when it is
above that mark: then it is the child's. RSS counts pages shared between
processes once per process: the sum over-states a tree of forked workers, the safe side for a
guard; but a child that still runs in or mirrors its parent's memory (``rss_of``) is counted
once. Used by ``benchmarks/scale.py``; usable for any benchmark.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GIB = 2**30
MIB = 2**20


@dataclass
class GuardedRun:
    """What happened to one guarded command."""

    returncode: int | None
    seconds: float
    peak_bytes: int  # the command's process tree, without the guard
    stopped: bool = False  # killed by the guard for passing the memory or the time limit
    stopped_at_bytes: int | None = None  # tree + guard, at the sample that passed the limit
    stopped_for: str | None = None  # "memory" or "time"
    stopped_in: str | None = None  # the label (below) of that sample
    # label -> peak of the tree while the label held, and its first and last sample times
    by_label: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.stopped and self.returncode == 0


def tree_processes(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (those alive now)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_of(processes: Sequence[psutil.Process]) -> int:
    """The summed RSS of the processes, a child that shares its parent's memory counted once.

    A child between vfork and exec (the JVM starts every helper process so: Hadoop's `chmod`s
    while Spark writes a table) runs in its parent's address space, so it shows the parent's
    whole RSS: summed, a 10 GiB Spark driver read as 21 GiB for that instant and the guard
    stopped the run (Spark at 2,000,000 people). A fork child that has not yet written shares
    its parent's pages too. Both show the parent's virtual size and RSS: such a child is not
    added again."""
    memory = {}
    for p in processes:
        try:
            memory[p.pid] = (p.ppid(), p.memory_info())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass  # it ended between listing and reading
    total = 0
    for ppid, info in memory.values():
        parent = memory.get(ppid)
        if parent and _shares_parent_memory(info, parent[1]):
            continue
        total += info.rss
    return total


def _shares_parent_memory(child, parent) -> bool:
    """The same virtual size and (read a moment apart, within 1%) the same RSS as the parent."""
    return child.vms == parent.vms and abs(child.rss - parent.rss) <= 0.01 * parent.rss


def _kill_tree(pid: int, processes: Sequence[psutil.Process]) -> None:
    """SIGKILL the command's process group, then any descendant that left the group."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in processes:
        try:
            p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def run_guarded(cmd: Sequence[str], limit_bytes: int, *, env: dict[str, str] | None = None,
                cwd: Path | None = None, log: Path | None = None,
                on_line: Callable[[str], None] | None = None,
                label: Callable[[list[psutil.Process]], str | None] | None = None,
                interval: float = 0.2, time_limit_s: float | None = None) -> GuardedRun:
    """Run ``cmd`` (stdout and stderr into ``log``, each line also passed to ``on_line``) and
    stop it if its tree plus this process pass ``limit_bytes`` or it runs past ``time_limit_s``.

    ``label(processes)`` names what the tree is doing at a sample (e.g. which DAG a runner is
    in); the peaks and times per label are in ``by_label``."""
    if limit_bytes <= 0:
        raise ValueError(f"the memory limit must be positive, got {limit_bytes} bytes")
    if interval <= 0:
        raise ValueError(f"the sampling interval must be positive, got {interval} s")
    if time_limit_s is not None and time_limit_s <= 0:
        raise ValueError(f"the time limit must be positive, got {time_limit_s} s")
    me = psutil.Process()
    own_high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    t0 = time.perf_counter()
    log_fh = open(log, "w", encoding="utf-8") if log is not None else None  # noqa: SIM115 (closed below)
    try:
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    except BaseException:
        if log_fh:
            log_fh.close()
        raise
    result = GuardedRun(returncode=None, seconds=0.0, peak_bytes=0)
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if log_fh:
                log_fh.write(line)
                log_fh.flush()
            if on_line:
                on_line(line)

    def sample() -> None:
        while not done.is_set():
            procs = tree_processes(proc.pid)
            tree = rss_of(procs)
            own = me.memory_info().rss
            result.peak_bytes = max(result.peak_bytes, tree)
            name = label(procs) if label and procs else None
            if name:
                now = round(time.perf_counter() - t0, 2)
                entry = result.by_label.setdefault(name, {"peak_bytes": 0, "first_s": now, "last_s": now})
                entry["peak_bytes"], entry["last_s"] = max(entry["peak_bytes"], tree), now
            over_time = time_limit_s is not None and time.perf_counter() - t0 > time_limit_s
            if (tree + own > limit_bytes or over_time) and not result.stopped:
                result.stopped, result.stopped_at_bytes, result.stopped_in = True, tree + own, name
                result.stopped_for = "memory" if tree + own > limit_bytes else "time"
                _kill_tree(proc.pid, procs)
            done.wait(interval)

    reader = threading.Thread(target=read, name="guard-reader", daemon=True)
    sampler = threading.Thread(target=sample, name="guard-sampler", daemon=True)
    reader.start()
    sampler.start()
    try:
        # wait4, not Popen.wait: the kernel's peak RSS of the command (and of its reaped children)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:  # e.g. Ctrl-C: leave nothing running
        _kill_tree(proc.pid, tree_processes(proc.pid))
        proc.wait()
        raise
    finally:
        done.set()
        sampler.join()
        _kill_tree(proc.pid, [])  # anything the command left running in its group
        reader.join(timeout=10)
        if log_fh:
            log_fh.close()
    result.returncode = proc.returncode
    result.seconds = time.perf_counter() - t0
    kernel_peak = usage.ru_maxrss * 1024  # KiB on Linux
    if kernel_peak > own_high_water:  # otherwise it may be this process's mark, not the child's
        result.peak_bytes = max(result.peak_bytes, kernel_peak)
    return result
