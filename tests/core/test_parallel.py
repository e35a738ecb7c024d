"""core.parallel.ordered_map: results in job order from spawned workers, and a clear error when one dies."""
import os
import signal

import pytest

from core.parallel import ordered_map

_SHARED = {}


def _remember(offset):
    _SHARED["offset"] = offset


def _square_plus(x, pid_wanted):
    return x * x + _SHARED["offset"], (os.getpid() if pid_wanted else None)


def _die(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_in_job_order_with_what_the_initializer_handed_over(workers):
    jobs = [(x, True) for x in range(12)]
    out = list(ordered_map(_square_plus, jobs, workers, initializer=_remember, initargs=(100,)))
    assert [r for r, _ in out] == [x * x + 100 for x in range(12)]
    pids = {pid for _, pid in out}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids and len(pids) <= 2)


def test_a_worker_that_dies_stops_the_map_with_an_error_naming_the_work_and_the_setting():
    with pytest.raises(RuntimeError, match=r"a test worker process died \(out of memory or killed\); "
                                           r"LTCEVAL_GENERATOR_WORKERS=1 does one at a time"):
        list(ordered_map(_die, [(x,) for x in range(6)], 2, what="a test worker",
                         workers_env="LTCEVAL_GENERATOR_WORKERS"))
