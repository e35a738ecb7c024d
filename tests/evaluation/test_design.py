"""evaluation.design: the one-row mart_design table becomes the design the evaluation uses."""
import pandas as pd
import pytest

from core.contract import PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE
from evaluation.design import StudyDesign


def _row(**changes) -> pd.DataFrame:
    row = {"comparison_design": "not_yet_referred", "selection_window_months": 4,
           "panel_months_before": PANEL_MONTHS_BEFORE, "panel_months_after": PANEL_MONTHS_AFTER,
           "matching_seed": 7}
    return pd.DataFrame([{**row, **changes}])


def test_the_design_row_gives_the_periods():
    d = StudyDesign.from_table(_row())
    assert d.selection_window_months == 4 and d.comparison_design == "not_yet_referred"
    assert d.selection_months == (-4, -3, -2, -1)
    assert d.comparison_months == tuple(range(-PANEL_MONTHS_BEFORE, -4))
    assert d.choices["matching_seed"] == 7
    plain = StudyDesign()
    assert plain.selection_months == () and plain.comparison_months == tuple(range(-PANEL_MONTHS_BEFORE, 0))


@pytest.mark.parametrize("table,message", [
    (pd.concat([_row(), _row()]), "mart_design has 2 rows"),
    (_row().iloc[:0], "mart_design has 0 rows"),
    (_row(panel_months_after=6), "built for months -12..6"),
    (_row(selection_window_months=PANEL_MONTHS_BEFORE), "selection_window_months 12 is not in"),
])
def test_a_design_the_evaluation_cannot_use_is_refused(table, message):
    with pytest.raises(ValueError, match=message):
        StudyDesign.from_table(table)
