"""The report's plain-English reading of the parallel-trends sensitivity
(evaluation.reporting.robustness), on the R package's published example."""
import json
from pathlib import Path

import pytest

from evaluation.methods.honest import honest_sensitivity
from evaluation.reporting.robustness import _grid_sentence, _sensitivity_figure, _smoothness_sentence

EXAMPLE = json.loads((Path(__file__).parent / "data" / "honestdid_medicaid_example.json").read_text())


@pytest.fixture(scope="module")
def medicaid():
    return honest_sensitivity(EXAMPLE["betahat"], EXAMPLE["sigma"], 5, 2, [1.0, 0.0], "first",
                              mbar_grid=(0.0, 0.5, 1.0, 1.5, 2.0), m_grid=(0.0, 0.01, 0.02, 0.03))


def test_sentence_names_the_last_bound_that_holds(medicaid):
    # the R README: significant up to Mbar 1.5, not at 2; smoothness breakdown M = 0.03
    text = _grid_sentence(medicaid, "increase")
    assert "holds unless post-referral trends differ by more than 1.5 times the largest pre-referral" in text
    assert "at 2 times" in text
    assert "3.0% a month" in _smoothness_sentence(medicaid, "increase", "month")


def test_no_conclusion_no_claim(medicaid):
    assert "already includes no effect" in _grid_sentence(medicaid, None)
    assert _smoothness_sentence(medicaid, None, "month") == ""


def test_beyond_the_grid(medicaid):
    short = honest_sensitivity(EXAMPLE["betahat"], EXAMPLE["sigma"], 5, 2, [1.0, 0.0], "first",
                               mbar_grid=(0.0, 0.5), m_grid=(0.0,))
    assert short.breakdown_mbar is None
    assert "up to 0.5 times" in _grid_sentence(short, "increase")


def test_sensitivity_figure_is_an_inline_png(medicaid):
    assert _sensitivity_figure([("Example", medicaid)]).startswith("data:image/png;base64,")
