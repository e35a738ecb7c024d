"""The evaluation contract (core/contract.py) and the dbt project spell the same window and
outcome columns; the Python consumers take theirs from the contract."""
import re

import yaml

from core import contract
from core.settings import DBT_PROJECT_DIR


def test_dbt_vars_hold_the_contract_window():
    dbt_vars = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    assert dbt_vars["panel_months_before"] == contract.PANEL_MONTHS_BEFORE
    assert dbt_vars["panel_months_after"] == contract.PANEL_MONTHS_AFTER
    assert contract.PRE_MONTHS[0] == -contract.PANEL_MONTHS_BEFORE and contract.POST_MONTHS[-1] == 12


def test_the_panel_macro_writes_the_contract_outcomes_in_order():
    macros = (DBT_PROJECT_DIR / "macros" / "iapt.sql").read_text()
    body = macros[macros.index("macro panel_activity_columns"):]
    body = body[:body.index("endmacro")]
    columns = re.findall(r"\)\s+as (\w+),?\s*$", body, re.M)
    assert columns == ["exposure_months", *contract.COUNT_OUTCOMES]


def test_the_negative_controls_are_the_contract_s_in_order():
    macros = (DBT_PROJECT_DIR / "macros" / "person_month_panel.sql").read_text()
    body = macros[macros.index("macro negative_controls()"):]
    listed = re.findall(r"'(\w+)'", body[:body.index("endmacro")])
    assert tuple(listed) == contract.NEGATIVE_CONTROLS
    seed = (DBT_PROJECT_DIR / "seeds" / "negative_control_codes.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in seed} == set(contract.NEGATIVE_CONTROLS)
    assert set(contract.NEGATIVE_CONTROLS).isdisjoint(contract.COUNT_OUTCOMES)


def test_python_consumers_read_the_contract():
    from evaluation import panel, pipeline

    assert panel.COUNT_OUTCOMES is contract.COUNT_OUTCOMES and pipeline.OUTCOMES is contract.COUNT_OUTCOMES
    assert panel.PANEL_COLUMNS[7:12] == contract.COUNT_OUTCOMES
    assert panel.PANEL_COLUMNS[12:12 + len(contract.NEGATIVE_CONTROLS)] == contract.NEGATIVE_CONTROLS
    assert set(contract.OUTCOMES) < set(contract.OUTCOME_LABELS)
