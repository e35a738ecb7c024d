import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from simpanel import simulate_panel  # noqa: E402

from evaluation.panel import prepare_panel  # noqa: E402

from simpanel import PLANTED  # noqa: E402  (defined there: test modules import it by a unique name)


@pytest.fixture(scope="session")
def effect_panel():
    return prepare_panel(simulate_panel(n_sets=600, rate_ratio=PLANTED, seed=11))


@pytest.fixture(scope="session")
def null_panel():
    return prepare_panel(simulate_panel(n_sets=600, rate_ratio=1.0, seed=12))
