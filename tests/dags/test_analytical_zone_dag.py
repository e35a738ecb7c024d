"""The analytical_zone DAG renders the dbt project with cosmos and ends in the GX task."""
import pytest

from core.assets import ANALYTICAL_ZONE, IDENTIFIABLE_ZONE


@pytest.fixture(scope="module")
def dag(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("LTCEVAL_OUT", str(tmp_path_factory.mktemp("out")))
    from airflow.dag_processing.dagbag import DagBag

    from core.settings import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR / "analytical_zone_dag.py"))
    assert bag.import_errors == {}
    return bag.dags["analytical_zone"]  # (get_dag would query the metadata DB)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_dbt_nodes_are_tasks_and_gx_runs_after_them(dag):
    ids = set(dag.task_ids)
    for mart in ("mart_matched_cohort", "mart_evaluation_panel", "mart_balance", "mart_attrition", "int_controls_matched_to_treated"):
        assert any(t.startswith(f"dbt.{mart}") for t in ids), mart
    gx = dag.get_task("validate_marts")
    upstream = gx.get_flat_relative_ids(upstream=True)
    assert {t for t in ids if t.startswith("dbt.")} | {"prepare_warehouse"} <= upstream
    # dbt builds a fresh staging warehouse: the reset runs before every dbt task
    prepare = dag.get_task("prepare_warehouse")
    assert {t for t in ids if t.startswith("dbt.")} <= prepare.get_flat_relative_ids(upstream=False)
    assert {a.uri for a in dag.timetable.asset_condition.objects} == {IDENTIFIABLE_ZONE.asset_uri}


def test_dbt_gets_the_run_paths(dag):
    task = next(t for t in dag.tasks if t.task_id.startswith("dbt.mart_evaluation_panel"))
    env = task.env
    # dbt writes the staging warehouse; the published one is swapped in after the gates
    assert env["LTCEVAL_WAREHOUSE"].endswith("analytical/.staging/warehouse.duckdb")
    assert env["LTCEVAL_PSEUDONYMISED_DIR"].endswith("analytical/pseudonymised")


def test_dbt_gets_the_contract_as_vars(dag):
    from core.contract import PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE, SEEDS

    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("dbt.")]
    assert dbt_tasks and all(t.vars == {"panel_months_before": PANEL_MONTHS_BEFORE,
                                        "panel_months_after": PANEL_MONTHS_AFTER,
                                        "matching_seed": SEEDS.matching} for t in dbt_tasks)


def test_warehouse_is_published_last_and_only_after_the_gates(dag):
    """A failed critical expectation fails validate_marts; the only task after it swaps the
    staged warehouse in, and it alone emits the evaluation_panel asset (which schedules the
    evaluation DAG)."""
    gx = dag.get_task("validate_marts")
    assert gx.downstream_task_ids == {"publish_warehouse"}
    pub = dag.get_task("publish_warehouse")
    assert pub.downstream_task_ids == set() and pub.upstream_task_ids == {"validate_marts"}
    publishers = [t.task_id for t in dag.tasks if any(getattr(o, "uri", None) == ANALYTICAL_ZONE.asset_uri for o in t.outlets)]
    assert publishers == ["publish_warehouse"]


def test_retries_only_where_they_can_help(dag):
    """dbt models/tests and the GX gates give the same result on a retry: none; the file
    operations around them retry."""
    for t in dag.tasks:
        if t.task_id.startswith("dbt.") or t.task_id == "validate_marts":
            assert t.retries == 0, t.task_id
    for t in ("prepare_warehouse", "publish_warehouse"):
        assert dag.get_task(t).retries >= 1


def test_one_duckdb_writer_at_a_time(dag):
    """DuckDB allows one writing process: one task and one run at a time, the GX reader opens
    read-only after dbt, and the DAG doc says so."""
    from cosmos.constants import InvocationMode

    assert dag.max_active_tasks == 1 and dag.max_active_runs == 1
    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("dbt.")]
    assert dbt_tasks and all(t.invocation_mode == InvocationMode.DBT_RUNNER for t in dbt_tasks)
    assert "read_only=True" in dag.doc_md or "read-only" in dag.doc_md
    assert "single writer" in dag.doc_md.lower()
