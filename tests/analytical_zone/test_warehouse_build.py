"""The warehouse build in three steps (ltceval.warehouse_build): dbt's two selections either side
of the matching step (evaluation.matching_step), on the session's built DuckDB warehouse."""
from __future__ import annotations

import shutil

import duckdb
import pytest

from evaluation.matching_step import BALANCE_TABLE, MATCHED_TABLE, run_matching
from ltceval.warehouse_build import FIRST_SELECTION, SECOND_SELECTION, selections


def _listed(dbt_cli, paths, *selection: str) -> set[str]:
    proc = dbt_cli(paths, "ls", *selection, "--output", "name", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return set(proc.stdout.split())


def test_the_two_selections_split_the_project_at_the_matching(built_warehouse, dbt_cli):
    first = _listed(dbt_cli, built_warehouse, *FIRST_SELECTION)
    second = _listed(dbt_cli, built_warehouse, *SECOND_SELECTION)
    assert first.isdisjoint(second) and first | second == _listed(dbt_cli, built_warehouse)
    assert "int_match_pool_filtered_to_eligible" in first
    assert {"mart_matched_cohort", "mart_balance", "mart_attrition", "mart_evaluation_panel",
            "mart_linkage_sensitivity_deltas", f"matching.{MATCHED_TABLE}", f"matching.{BALANCE_TABLE}"} <= second
    # a narrowed build (benchmarks/monte_carlo.py): the named nodes' ancestors either side, and
    # the pool (dbt's ancestors stop at a source)
    narrow_first, narrow_second = (_listed(dbt_cli, built_warehouse, *s) for s in selections(["+mart_balance"]))
    assert "mart_balance" in narrow_second and "mart_evaluation_panel" not in narrow_second
    assert {"int_match_pool_filtered_to_eligible", "int_match_pool_stacked_by_index_month"} <= narrow_first
    assert narrow_first.isdisjoint(narrow_second) and "mart_person_month_panel" not in narrow_first


def _copy(built_warehouse, tmp_path):
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built_warehouse.warehouse, copy)
    return built_warehouse.with_warehouse(copy)


def _rows(paths, table: str):
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute(f"select * from {table}").fetchall()


def test_the_matching_step_again_writes_the_same_tables(built_warehouse, tmp_path):
    """Run again on the built pool: the same rows in the same order (the sort keys are unique)."""
    paths = _copy(built_warehouse, tmp_path)
    summary = run_matching(paths)
    assert summary["matched_rows"] == len(_rows(paths, MATCHED_TABLE)) > 0
    for table in (MATCHED_TABLE, BALANCE_TABLE):
        assert _rows(paths, table) == _rows(built_warehouse, table), table


def test_the_matching_reads_the_callers_vars(built_warehouse, tmp_path):
    """extra_vars, as given to dbt (core.dbt.run_dbt), set the matching's design too."""
    paths = _copy(built_warehouse, tmp_path)
    run_matching(paths, extra_vars={"matching_ratio": 2, "matching_refine": False})
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        controls = con.execute(f"select max(n), min(w) from (select matched_set_id, count(*) filter (where is_treated = 0) n, "
                               f"min(match_weight) w from {MATCHED_TABLE} group by 1)").fetchone()
    assert controls == (2, 0.5)


@pytest.mark.parametrize("extra_vars,message", [
    ({"matching_covariates": ["age", "no_such_column"]}, "no column no_such_column"),
    ({"matching_exact": ["sex; drop table x"]}, "dbt var matching_exact"),
    ({"matching_ratio": "two"}, "dbt var matching_ratio='two'"),
])
def test_a_bad_design_is_named(built_warehouse, tmp_path, extra_vars, message):
    paths = _copy(built_warehouse, tmp_path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        run_matching(paths, extra_vars=extra_vars)


def test_an_unknown_engine_or_a_missing_warehouse_is_named(built_warehouse, tmp_path):
    with pytest.raises(ValueError, match="engine 'postgres'"):
        run_matching(built_warehouse, engine="postgres")
    with pytest.raises(FileNotFoundError, match="no warehouse at"):
        run_matching(built_warehouse.with_warehouse(tmp_path / "none.duckdb"))
