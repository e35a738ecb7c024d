"""Work split into independent jobs, done by worker processes, taken back in order.

``ordered_map`` is how the generator builds its chunks and linkage standardises its batches:
each job is a pure function of its arguments (and of what ``initializer`` hands every
worker once), so the results are the same whichever process makes them, and the caller
writes them in job order. Workers are spawned (they share nothing but what is handed to
them) and run at most ``workers + 1`` jobs ahead of the caller, which bounds memory to that
many results. With one worker everything runs in the calling process, as each result is
wanted.
"""
from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


def ordered_map(fn: Callable, jobs: Iterable[tuple], workers: int, *, initializer: Callable | None = None,
                initargs: tuple = (), what: str = "a worker", workers_env: str | None = None) -> Iterator:
    """``fn(*job)`` for every job, yielded in job order. ``what`` and ``workers_env`` name the
    work and the variable that sets ``workers`` in the error raised when a worker process dies
    (out of memory or killed): that error says to run one at a time."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for job in jobs:
            yield fn(*job)
        return
    todo = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=initializer, initargs=initargs) as pool:
        ahead: deque = deque()
        for job in todo:
            ahead.append(pool.submit(fn, *job))
            if len(ahead) > workers:
                break
        while ahead:
            try:
                result = ahead.popleft().result()
            except BrokenProcessPool:
                hint = f"; {workers_env}=1 does one at a time" if workers_env else ""
                raise RuntimeError(f"{what} process died (out of memory or killed){hint}") from None
            job = next(todo, None)
            if job is not None:
                ahead.append(pool.submit(fn, *job))
            yield result
