"""Reading the evaluation panel from a real DuckDB warehouse, once per warehouse file version."""
import duckdb
import pandas as pd
from simpanel import simulate_panel

from evaluation.panel import load_panel, prepare_panel


def _write_warehouse(path, panel: pd.DataFrame) -> None:
    tmp = path.with_name(path.name + ".new")
    con = duckdb.connect(str(tmp))
    con.register("panel_df", panel)
    con.execute("create table mart_evaluation_panel as select * from panel_df")
    con.close()
    tmp.replace(path)  # as publishing swaps a warehouse in: one rename


def test_the_panel_is_read_once_per_warehouse_version_and_each_caller_gets_its_own_copy(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    raw = simulate_panel(n_sets=60, rate_ratio=0.85, seed=3)
    _write_warehouse(warehouse, raw)
    first = load_panel(warehouse)
    pd.testing.assert_frame_equal(first, prepare_panel(raw))
    # a task that changes its panel changes its own copy, not the next task's
    first.loc[0, "ae_attendances"] = 999.0
    first["added_by_a_task"] = 1
    again = load_panel(warehouse)
    assert again is not first and "added_by_a_task" not in again
    pd.testing.assert_frame_equal(again, prepare_panel(raw))
    # a warehouse rebuilt and published again is read again
    other = simulate_panel(n_sets=40, rate_ratio=1.0, seed=4)
    _write_warehouse(warehouse, other)
    pd.testing.assert_frame_equal(load_panel(warehouse), prepare_panel(other))
    # a caller that has read the table already hands it over; it is prepared, not read again
    third = simulate_panel(n_sets=30, rate_ratio=1.0, seed=5)
    _write_warehouse(warehouse, third)
    pd.testing.assert_frame_equal(load_panel(warehouse, third), prepare_panel(third))


def test_read_table_reads_the_columns_and_rows_asked_for(tmp_path):
    from evaluation.panel import read_table

    warehouse = tmp_path / "warehouse.duckdb"
    raw = simulate_panel(n_sets=20, rate_ratio=1.0, seed=6)
    raw.loc[raw.index[::7], "ltc_group"] = None
    _write_warehouse(warehouse, raw)
    whole = read_table(warehouse, "mart_evaluation_panel")
    part = read_table(warehouse, "mart_evaluation_panel", ["person_id", "ltc_group"], where="ltc_group is not null")
    expected = whole.loc[whole["ltc_group"].notna(), ["person_id", "ltc_group"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected, check_exact=True)
    assert 0 < len(part) < len(whole)


def test_the_list_of_warehouse_tables_names_every_table_the_evaluation_reads():
    """The Spark engine hands the evaluation only evaluation.panel.WAREHOUSE_TABLES: a table read
    but not listed would be missing there."""
    import re

    from core.settings import REPO_ROOT
    from evaluation.panel import WAREHOUSE_TABLE_PREFIXES, WAREHOUSE_TABLES, read_by_evaluation

    # a model's name in quotes, a table after `from main.`, a table read_table reads (models and seeds)
    name = re.compile(r"[\"'](?:main\.)?((?:mart|int)_[a-z_]+)[\"']|from main\.([a-z_0-9]+)"
                      r"|read_table\([^,()]+, [\"']([a-z_0-9]+)[\"']")
    # the matching step runs inside the warehouse build (the analytical DAG), not the evaluation
    named = {a or b or c for f in (REPO_ROOT / "evaluation").rglob("*.py") if f.name != "matching_step.py"
             for a, b, c in name.findall(f.read_text(encoding="utf-8"))}
    assert named and all(read_by_evaluation(t) for t in named), sorted(t for t in named if not read_by_evaluation(t))
    assert set(WAREHOUSE_TABLES) | set(WAREHOUSE_TABLE_PREFIXES) <= named
