"""`dbt docs generate` on the built warehouse, and the dbt unit tests the design relies on."""
import json
import pytest

pytestmark = pytest.mark.slow


def test_dbt_docs_generate_writes_the_catalog(built_warehouse, dbt_cli):
    proc = dbt_cli(built_warehouse, "docs", "generate")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    target = built_warehouse.out / "dbt" / "target"
    assert (target / "index.html").is_file()
    catalog = json.loads((target / "catalog.json").read_text())
    nodes = {n.split(".")[-1]: v for n, v in catalog["nodes"].items()}
    for mart in ("mart_matched_cohort", "mart_evaluation_panel", "mart_balance", "mart_attrition"):
        assert mart in nodes, mart
    assert "propensity_score" in {c.lower() for c in nodes["mart_matched_cohort"]["columns"]}
    manifest = json.loads((target / "manifest.json").read_text())
    # the matching step's tables are documented as dbt's source `matching`
    assert manifest["sources"]["source.ltceval.matching.int_controls_matched_to_treated"]["description"]


def test_unit_tests_cover_the_rules(built_warehouse, dbt_cli):
    proc = dbt_cli(built_warehouse, "ls", "--resource-type", "unit_test", "--output", "name")
    assert proc.returncode == 0, proc.stdout[-2000:]
    names = set(proc.stdout.split())
    for name in ("finished_course_needs_end_and_two_treatment_contacts", "recovery_and_reliable_change_flags",
                 "panel_months_bucketed_around_index", "exposure_stops_at_the_censor_date",
                 "censor_date_is_the_earlier_of_deregistration_and_death",
                 "baseline_trend_and_window_sums_of_the_months_before"):
        assert name in names, (name, names)


@pytest.mark.parametrize("setting,expected", [(None, "1.8 GiB"), ("1GB", "953.6 MiB")])
def test_dbt_runs_duckdb_with_a_bounded_memory_limit(built_warehouse, monkeypatch, setting, expected):
    # DuckDB's own default (80% of RAM) would never spill on a machine without swap
    from core.dbt import run_dbt

    if setting is None:
        monkeypatch.delenv("LTCEVAL_DBT_MEMORY_LIMIT", raising=False)
    else:
        monkeypatch.setenv("LTCEVAL_DBT_MEMORY_LIMIT", setting)
    proc = run_dbt(built_warehouse, "show", "--inline", "select current_setting('memory_limit') as memory_limit",
                   "--output", "json")
    assert proc.returncode == 0, proc.stdout[-2000:]
    shown = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    assert shown["show"] == [{"memory_limit": expected}]
