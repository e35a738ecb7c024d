"""Block random streams and record ids: what makes the output independent of the chunk size."""
from __future__ import annotations

import numpy as np
import pytest

from synthetic.streams import RNG_BLOCK, BlockRNG, RecordIds


def test_a_block_draws_the_same_values_in_any_chunk():
    whole = BlockRNG(5, 0, 3 * RNG_BLOCK)
    alone = BlockRNG(5, RNG_BLOCK, RNG_BLOCK)  # the second block on its own
    a = whole.per_person().poisson(np.full(3 * RNG_BLOCK, 2.0))
    b = alone.per_person().poisson(np.full(RNG_BLOCK, 2.0))
    assert (a[RNG_BLOCK:2 * RNG_BLOCK] == b).all()
    # then a draw for a subset of rows (here every third person) continues each block's stream
    rows = np.arange(0, 3 * RNG_BLOCK, 3)
    c = whole.for_rows(rows).random()
    d = alone.for_rows(rows[(rows >= RNG_BLOCK) & (rows < 2 * RNG_BLOCK)] - RNG_BLOCK).random()
    assert np.array_equal(c[(rows >= RNG_BLOCK) & (rows < 2 * RNG_BLOCK)], d)


def test_streams_refuse_rows_out_of_block_order_and_chunks_off_a_block_boundary():
    rng = BlockRNG(1, 0, 2 * RNG_BLOCK)
    with pytest.raises(ValueError, match="block order"):
        rng.for_rows(np.array([RNG_BLOCK + 1, 3]))
    assert rng.order(np.array([RNG_BLOCK + 1, 3, RNG_BLOCK, 4])).tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="block boundary"):
        BlockRNG(1, 500, 1_000)
    with pytest.raises(ValueError, match="asked for 3 values"):
        rng.for_rows(np.array([1, 2])).random(3)


def test_record_ids_are_unique_unordered_and_continue_across_calls():
    ids = RecordIds(3)
    a = np.r_[ids.take("E", 60_000, 12), ids.take("E", 40_000, 12)]
    assert len(set(a)) == len(a) and all(len(x) == 12 and x[0] == "E" for x in a[:100])
    assert np.array_equal(a, RecordIds(3).take("E", 100_000, 12))
    nums = np.array([int(x[1:]) for x in a[:1000]])
    assert (np.diff(nums) > 0).mean() < 0.6  # not in record order
    assert not set(RecordIds(4).take("E", 1000, 12)) == set(a[:1000])
    small = RecordIds(1)
    assert len(set(small.take("X", 100, 3))) == 100
    with pytest.raises(ValueError, match="more than 100"):
        small.take("X", 1, 3)
