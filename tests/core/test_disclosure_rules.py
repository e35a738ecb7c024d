"""The shared small-number rules: a published mean never leaves a single count possible."""
from __future__ import annotations

import math
from decimal import Decimal

import pytest
from disclosure_checks import counts_fitting, pinned_count

from core.disclosure import (possible_counts, published_mean, round_count, share_of_rounded,
                             significant)


def printed(x) -> str:
    return x if isinstance(x, str) else repr(float(x))


def test_the_checker_finds_the_count_behind_a_mean_printed_too_finely():
    # the examples: 3/83 in full, and even to three significant figures
    assert pinned_count(repr(3 / 83), round_count(83)) == 83
    assert pinned_count("0.0361", round_count(83)) == 83
    assert pinned_count(repr(506 / 83), round_count(83)) == 83
    assert counts_fitting("0.0361", possible_counts(85)) == {83}


@pytest.mark.parametrize("n", [*range(8, 160), 499, 1000, 1003, 10163])
def test_a_published_mean_fits_every_count_its_rounded_count_stands_for(n):
    candidates = set(possible_counts(round_count(n)))
    for k in sorted({0, 1, 2, 3, 5, 7, n // 3, n // 2, n - 1, n, 2 * n + 1, 7 * n + 3, 55 * n + 17}):
        for unit in (1.0, 1 / 12, 169.0):
            p = published_mean(unit * k / n, n, unit)
            text = printed(p)
            if float(text) == 0:
                continue
            assert counts_fitting(text, candidates, unit) == candidates, (k, n, unit, text)
            assert len(Decimal(text).normalize().as_tuple().digits) <= 3  # at most 3 significant figures


@pytest.mark.parametrize("n", [1, 4, 7])
def test_a_mean_of_1_to_7_people_is_suppressed(n):
    assert published_mean(2.5, n) == "*"


def test_counts_significant_figures_and_shares():
    assert [round_count(n) for n in (0, 1, 7, 8, 12, 13, 83, 10163)] == [0, "*", "*", 10, 10, 15, 85, 10165]
    with pytest.raises(ValueError):
        round_count(2.5)
    assert list(possible_counts(85)) == [83, 84, 85, 86, 87]
    assert list(possible_counts(10)) == [8, 9, 10, 11, 12]
    assert significant(0.03614457831325301) == 0.0361
    assert significant(-504.98295330287243) == -505.0
    assert significant(42923.55) == 42900.0
    assert significant("*") == "*" and math.isnan(significant(float("nan")))
    # a share of the rounded counts, not of the raw ones
    assert share_of_rounded(1975, 2000) == significant(100 * 1975 / 2000)
    assert share_of_rounded(83, 120) == significant(100 * 85 / 120)
    assert share_of_rounded(3, 120) == "*" and share_of_rounded(0, 0) is None
