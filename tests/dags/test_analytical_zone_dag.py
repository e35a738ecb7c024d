"""The analytical_zone DAG renders the dbt project with cosmos (watcher mode: one `dbt build`,
a task per model, seed and model's tests) and ends in the GX task."""
import pytest

from analytical_dag_runs import PRODUCER, node_task, project_nodes
from core.assets import ANALYTICAL_ZONE, IDENTIFIABLE_ZONE

PRODUCER_DONE = "dbt.dbt_producer_watcher_done"


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


def _dbt_tasks(dag):
    """The tasks that run dbt or report a dbt node (the cosmos operators; not the gate)."""
    return [t for t in dag.tasks if t.task_id.startswith("dbt.") and hasattr(t, "invocation_mode")]


def _sensors(dag):
    return [t for t in _dbt_tasks(dag) if t.task_id != PRODUCER]


def test_every_model_and_seed_is_a_task_and_gx_runs_after_them(dag):
    ids = set(dag.task_ids)
    models, seeds = project_nodes()
    assert len(models) > 30 and {"mart_evaluation_panel", "mart_balance", "int_controls_matched_to_treated"} <= models
    assert all(node_task(ids, name, "run") for name in models) and all(node_task(ids, name, "seed") for name in seeds)
    # a model's data tests are a task of their own, reporting on that model
    tests = [t for t in _sensors(dag) if t.task_id.endswith(".test")]
    assert tests and all(t.task_id.removesuffix(".test") + ".run" in t.upstream_task_ids
                         or t.task_id.removesuffix(".test") + ".seed" in t.upstream_task_ids for t in tests)
    assert all(t.model_unique_id.split(".")[0] in ("model", "seed") for t in tests)  # no detached test task
    assert len(_sensors(dag)) == len(models) + len(seeds) + len(tests)
    gx = dag.get_task("validate_marts")
    upstream = gx.get_flat_relative_ids(upstream=True)
    assert {t for t in ids if t.startswith("dbt.")} | {"prepare_warehouse"} <= upstream
    assert {t for t in ids if t.startswith("dbt.")} <= dag.get_task("prepare_warehouse").get_flat_relative_ids(upstream=False)
    assert {a.uri for a in dag.timetable.asset_condition.objects} == {IDENTIFIABLE_ZONE.asset_uri}


def test_one_dbt_build_then_a_sensor_per_node(dag):
    """Only the producer runs dbt (one `dbt build`, after the reset of the staging warehouse);
    every node's task is a sensor that starts after it has ended, so that under `dag.test()`
    (one task at a time) no sensor waits for a producer that cannot start, and a failed
    producer fails the run even if every sensor passed."""
    from cosmos.operators.watcher import DbtConsumerWatcherSensor, DbtProducerWatcherOperator

    producer = dag.get_task(PRODUCER)
    assert isinstance(producer, DbtProducerWatcherOperator) and producer.base_cmd == ["build"]
    assert producer.upstream_task_ids == {"prepare_warehouse"}
    sensors = _sensors(dag)
    assert sensors and all(isinstance(t, DbtConsumerWatcherSensor) for t in sensors)
    assert all(PRODUCER in t.get_flat_relative_ids(upstream=True) for t in sensors)
    roots = [t for t in sensors if not t.upstream_task_ids - {PRODUCER, PRODUCER_DONE}]
    assert roots and all(t.upstream_task_ids == {PRODUCER, PRODUCER_DONE} and t.trigger_rule == "one_done"
                         for t in roots)
    assert PRODUCER_DONE in dag.get_task("validate_marts").upstream_task_ids
    assert dag.get_task(PRODUCER_DONE).trigger_rule == "none_failed"


def test_production_builds_leave_dbt_unit_tests_to_the_test_suite(dag):
    """dbt's unit tests check code on fixed rows, not data: the producer's `dbt build` excludes
    them and no task waits for one (tests/analytical_zone builds with them: `dbt build`)."""
    producer = dag.get_task(PRODUCER)
    assert "resource_type:unit_test" in producer.exclude
    assert not [t for t in dag.task_ids if "unit_test" in t]
    assert [t for t in dag.task_ids if t.endswith(".test")]  # the data tests still are tasks


def test_dbt_gets_the_run_paths(dag):
    # the producer builds; a sensor runs its node itself only on a cleared run (cosmos fallback)
    for task in _dbt_tasks(dag):
        # dbt writes the staging warehouse; the published one is swapped in after the gates
        assert task.env["LTCEVAL_WAREHOUSE"].endswith("analytical/.staging/warehouse.duckdb"), task.task_id
        assert task.env["LTCEVAL_PSEUDONYMISED_DIR"].endswith("analytical/pseudonymised"), task.task_id


def test_dbt_gets_the_contract_as_vars(dag):
    from core.contract import PANEL_MONTHS_AFTER, PANEL_MONTHS_BEFORE, SEEDS

    dbt_tasks = _dbt_tasks(dag)
    assert dbt_tasks and all(t.vars == {"panel_months_before": PANEL_MONTHS_BEFORE,
                                        "panel_months_after": PANEL_MONTHS_AFTER,
                                        "matching_seed": SEEDS.matching} for t in dbt_tasks)


def test_warehouse_is_published_last_and_only_after_the_gates(dag):
    """A failed critical expectation fails validate_marts; the only task after it swaps the
    staged warehouse in, and it alone emits an asset: the evaluation_panel one (which
    schedules the evaluation DAG), none for the staging tables."""
    gx = dag.get_task("validate_marts")
    assert gx.downstream_task_ids == {"publish_warehouse"}
    pub = dag.get_task("publish_warehouse")
    assert pub.downstream_task_ids == set() and pub.upstream_task_ids == {"validate_marts"}
    publishers = [t.task_id for t in dag.tasks if any(getattr(o, "uri", None) == ANALYTICAL_ZONE.asset_uri for o in t.outlets)]
    assert publishers == ["publish_warehouse"]
    assert not any(t.emit_datasets for t in _dbt_tasks(dag))


def test_retries_only_where_they_can_help(dag):
    """dbt models/tests and the GX gates give the same result on a retry: none; the file
    operations around them retry."""
    for t in dag.tasks:
        if t.task_id.startswith("dbt.") or t.task_id == "validate_marts":
            assert t.retries == 0, t.task_id
    for t in ("prepare_warehouse", "publish_warehouse"):
        assert dag.get_task(t).retries >= 1


def test_one_duckdb_writer_at_a_time(dag):
    """DuckDB allows one writing process: one task and one run at a time, dbt in the task's
    process, the GX reader opens read-only after dbt, and the DAG doc says so."""
    from cosmos.constants import InvocationMode

    assert dag.max_active_tasks == 1 and dag.max_active_runs == 1
    dbt_tasks = _dbt_tasks(dag)
    assert dbt_tasks and all(t.invocation_mode == InvocationMode.DBT_RUNNER for t in dbt_tasks)
    assert "read_only=True" in dag.doc_md or "read-only" in dag.doc_md
    assert "single writer" in dag.doc_md.lower()
