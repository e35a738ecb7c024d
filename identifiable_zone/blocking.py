"""Candidate pairs, counted before splink makes them, and the budgets that keep linkage bounded.

A blocking rule on equal keys (``dob``; ``forename`` + ``surname``) makes, for each key value,
(records on the left with it) x (records on the right with it) pairs. On skewed keys that is
quadratic: with the old synthetic names, forename + surname gave 181 M pairs at 200,000
people and took 16 GiB. So every rule's pairs are counted exactly first (one GROUP BY per side
in DuckDB, no pair is made), and:

* prediction skips a rule whose pairs exceed ``prediction_budget`` (the pairs other rules
  make are still scored; the summary and the IG report list each rule with its count and
  whether it was used);
* model training (EM) uses a uniform sample of the source tuples, sized so that the largest
  EM rule stays within ``EM_PAIR_BUDGET``. Sampling one side uniformly leaves the share of
  pairs that match (the prior) and the m and u probabilities unbiased; it only adds noise,
  which at millions of pairs is small.

Linkage's DuckDB works within ``LTCEVAL_DUCKDB_MEMORY_LIMIT`` (default 2GB) and spills to a
folder inside the identifiable zone: spilled pairs carry identifiers.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from core.settings import duckdb_memory_limit

# Pairs one EM round may block: EM iterates over every pair's comparison vector; 5 M pairs is
# ample evidence for a dozen m probabilities and a few hundred MiB of DuckDB memory.
EM_PAIR_BUDGET = 5_000_000
# Pairs one prediction rule may make, per record being linked (and never fewer than the floor):
# a person's own records in other sources plus namesakes are tens; hundreds means a key too
# common to block on.
PREDICTION_PAIRS_PER_RECORD = 200
PREDICTION_PAIRS_FLOOR = 2_000_000


@dataclass(frozen=True)
class RuleCount:
    rule: tuple[str, ...]
    pairs: int
    used: bool = True

    def as_dict(self) -> dict:
        return {"rule": "+".join(self.rule), "pairs": self.pairs, "used": self.used}


def sql_path(path) -> str:
    """A file path as a DuckDB string literal."""
    return "'" + str(path).replace("'", "''") + "'"


@contextmanager
def connection(spill_dir: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB bounded by the memory limit, spilling to ``spill_dir`` (a temporary
    folder, removed afterwards, when None: tests and ``ltceval link``)."""
    folder = tempfile.TemporaryDirectory(prefix="ltceval-link-") if spill_dir is None else nullcontext(spill_dir)
    with folder as spill:
        Path(spill).mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(":memory:", config={"memory_limit": duckdb_memory_limit(),
                                                 "temp_directory": str(spill),
                                                 "preserve_insertion_order": False})
        try:
            yield con
        finally:
            con.close()


def pair_counts(left: pd.DataFrame | str, right: pd.DataFrame, rules: list[tuple[str, ...]],
                con: duckdb.DuckDBPyConnection | None = None) -> list[RuleCount]:
    """Exact pairs each rule makes between left and right (records with a missing key make
    none, as in SQL equality); each rule counted on its own, not net of the others. ``left``
    may be the name of a table in ``con`` (linkage keeps its millions of tuples there)."""
    own = con is None
    con = con or duckdb.connect(":memory:")
    try:
        out = []
        for rule in rules:
            cols = list(rule)
            left_table = left if isinstance(left, str) else "blocking_left"
            if not isinstance(left, str):
                con.register("blocking_left", left[cols])
            con.register("blocking_right", right[cols])
            keys = ", ".join(f'"{c}"' for c in cols)
            not_null = " and ".join(f'"{c}" is not null' for c in cols)
            n = con.execute(f"""
                with l as (select {keys}, count(*) as n from {left_table} where {not_null} group by all),
                     r as (select {keys}, count(*) as n from blocking_right where {not_null} group by all)
                select coalesce(sum(l.n * r.n), 0)::hugeint from l join r using ({keys})""").fetchall()[0][0]
            if not isinstance(left, str):
                con.unregister("blocking_left")
            con.unregister("blocking_right")
            out.append(RuleCount(rule, int(n)))
        return out
    finally:
        if own:
            con.close()


def prediction_budget(n_records: int) -> int:
    return max(PREDICTION_PAIRS_FLOOR, PREDICTION_PAIRS_PER_RECORD * int(n_records))


def within_budget(counts: list[RuleCount], budget: int) -> list[RuleCount]:
    """The counts, each marked used when its pairs are within the budget."""
    return [RuleCount(c.rule, c.pairs, c.pairs <= budget) for c in counts]


def em_sample_fraction(counts: list[RuleCount], budget: int = EM_PAIR_BUDGET) -> float:
    """Share of the source tuples to train on, so that no EM rule blocks more than budget pairs."""
    largest = max((c.pairs for c in counts), default=0)
    return 1.0 if largest <= budget else budget / largest
