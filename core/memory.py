"""Giving memory back to the system after a large step, before the next one starts."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def release_memory() -> None:
    """Collect reference cycles and trim the C heap, so that what a step freed leaves the
    process instead of staying in its heap. Used where a long-lived process goes from one
    large step to the next: a validation worker serves every segment of a file (it grew by
    about 100 MiB a segment without it: 3.3 GiB each after the 82 segments of GP appointments
    at 2,000,000 people; near 1.2 GiB with it), and the matching step hands its matched
    sets to DuckDB after the match (2 million people: 4.0 GiB resident with nothing of note
    left alive, 2.0 GiB trimmed)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the collection alone
        pass


@contextmanager
def duckdb_cache_held_down(con, limit: str = "512MB") -> Iterator[None]:
    """DuckDB's memory limit lowered to ``limit`` for the block, then set back to the run's
    configured dbt limit (``core.settings.dbt_memory_limit``, which the dbt profile gives it).

    DuckDB keeps the blocks of the tables it has read cached up to its limit (4 GB by
    default). A step that holds a large frame of its own (the matching step's pool of 7
    million rows at 2 million people, evaluation/matching_step.py) would add the two: DuckDB
    held 2.2 GiB of cached table blocks at the end of the match (then a dbt Python model), the
    dbt build's peak. Lowering the limit evicts them at once; a query that runs meanwhile
    spills beyond it."""
    from core.settings import dbt_memory_limit

    con.execute(f"SET memory_limit = '{limit}'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = '{dbt_memory_limit()}'")
