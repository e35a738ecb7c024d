"""The analytical_zone DAG renders the dbt project with cosmos in two task groups either side of
the matching step (watcher mode: one `dbt build` a group, a task per model, seed and model's
tests) and ends in the GX task."""
import pytest

from analytical_dag_runs import DBT_GROUPS, MATCHING_TASK, PRODUCERS, is_dbt_task, node_task, project_nodes
from core.assets import ANALYTICAL_ZONE, IDENTIFIABLE_ZONE

PRODUCER_DONES = tuple(f"{p}_done" for p in PRODUCERS)


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


def _dbt_tasks(dag, group: str | None = None):
    """The tasks that run dbt or report a dbt node (the cosmos operators; not the gates)."""
    return [t for t in dag.tasks if is_dbt_task(t.task_id) and hasattr(t, "invocation_mode")
            and (group is None or t.task_id.startswith(f"{group}."))]


def _sensors(dag):
    return [t for t in _dbt_tasks(dag) if t.task_id not in PRODUCERS]


def test_every_model_and_seed_is_a_task_and_gx_runs_after_them(dag):
    ids = set(dag.task_ids)
    models, seeds = project_nodes()
    assert len(models) > 30 and {"mart_evaluation_panel", "mart_balance", "int_match_pool_filtered_to_eligible"} <= models
    # each model and seed is a task of exactly one group (node_task: one id or none)
    assert all(node_task(ids, name, "run") for name in models) and all(node_task(ids, name, "seed") for name in seeds)
    before, after = DBT_GROUPS
    assert node_task(ids, "int_match_pool_filtered_to_eligible", "run").startswith(f"{before}.")
    assert {node_task(ids, m, "run").split(".")[0] for m in
            ("mart_matched_cohort", "mart_balance", "mart_attrition", "mart_evaluation_panel",
             "mart_linkage_sensitivity_deltas")} == {after}
    # a model's data tests are a task of their own, reporting on that model
    tests = [t for t in _sensors(dag) if t.task_id.endswith(".test")]
    assert tests and all(t.task_id.removesuffix(".test") + ".run" in t.upstream_task_ids
                         or t.task_id.removesuffix(".test") + ".seed" in t.upstream_task_ids for t in tests)
    assert all(t.model_unique_id.split(".")[0] in ("model", "seed") for t in tests)  # no detached test task
    assert len(_sensors(dag)) == len(models) + len(seeds) + len(tests)
    gx = dag.get_task("validate_marts")
    upstream = gx.get_flat_relative_ids(upstream=True)
    dbt_ids = {t for t in ids if is_dbt_task(t)}
    assert dbt_ids | {"prepare_warehouse", MATCHING_TASK} <= upstream
    assert dbt_ids | {MATCHING_TASK} <= dag.get_task("prepare_warehouse").get_flat_relative_ids(upstream=False)
    assert {a.uri for a in dag.timetable.asset_condition.objects} == {IDENTIFIABLE_ZONE.asset_uri}


def test_the_matching_step_runs_between_the_two_dbt_groups(dag):
    """Every task of the first group (up to the eligible pool) runs before the matching step,
    every task of the second (what reads its tables) after it; a failed first build (its
    producer's gate) stops the matching."""
    before, after = DBT_GROUPS
    matching = dag.get_task(MATCHING_TASK)
    ids = set(dag.task_ids)
    assert {t for t in ids if t.startswith(f"{before}.")} == matching.get_flat_relative_ids(upstream=True) - {"prepare_warehouse"}
    assert {t for t in ids if t.startswith(f"{after}.")} <= matching.get_flat_relative_ids(upstream=False)
    assert PRODUCER_DONES[0] in matching.upstream_task_ids and matching.trigger_rule == "all_success"
    assert dag.get_task(PRODUCERS[1]).upstream_task_ids == {MATCHING_TASK}


def test_the_groups_select_either_side_of_the_matching_source(dag):
    """The producers build the selections of ltceval.warehouse_build, the one build outside Airflow."""
    from ltceval.warehouse_build import FIRST_SELECTION, SECOND_SELECTION

    first, second = (dag.get_task(p) for p in PRODUCERS)
    assert FIRST_SELECTION == ("--exclude", "source:matching+") and SECOND_SELECTION == ("--select", "source:matching+")
    assert "source:matching+" in first.exclude and not first.select
    assert second.select == "source:matching+" and "source:matching+" not in second.exclude


def test_one_dbt_build_a_group_then_a_sensor_per_node(dag):
    """Only the producers run dbt (one `dbt build` each: the first after the reset of the
    staging warehouse, the second after the matching step); every node's task is a sensor that
    starts after its group's producer has ended, so that under `dag.test()` (one task at a time)
    no sensor waits for a producer that cannot start, and a failed producer fails the run even
    if every sensor passed."""
    from cosmos.operators.watcher import DbtConsumerWatcherSensor, DbtProducerWatcherOperator

    assert dag.get_task(PRODUCERS[0]).upstream_task_ids == {"prepare_warehouse"}
    for group, producer_id, done_id in zip(DBT_GROUPS, PRODUCERS, PRODUCER_DONES):
        producer = dag.get_task(producer_id)
        assert isinstance(producer, DbtProducerWatcherOperator) and producer.base_cmd == ["build"]
        sensors = [t for t in _dbt_tasks(dag, group) if t.task_id != producer_id]
        assert sensors and all(isinstance(t, DbtConsumerWatcherSensor) for t in sensors)
        assert all(t.producer_task_id == producer_id for t in sensors)  # each watches its own group's build
        assert all(producer_id in t.get_flat_relative_ids(upstream=True) for t in sensors)
        roots = [t for t in sensors if not t.upstream_task_ids - {producer_id, done_id}]
        assert roots and all(t.upstream_task_ids == {producer_id, done_id} and t.trigger_rule == "one_done"
                             for t in roots)
        assert dag.get_task(done_id).trigger_rule == "none_failed"
    assert PRODUCER_DONES[1] in dag.get_task("validate_marts").upstream_task_ids


def test_production_builds_leave_dbt_unit_tests_to_the_test_suite(dag):
    """dbt's unit tests check code on fixed rows, not data: the producers' `dbt build`s exclude
    them and no task waits for one (tests/analytical_zone builds with them)."""
    for producer in PRODUCERS:
        assert "resource_type:unit_test" in dag.get_task(producer).exclude
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
        if is_dbt_task(t.task_id) or t.task_id in ("validate_marts", MATCHING_TASK):
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


@pytest.fixture(scope="module")
def spark_dag(tmp_path_factory):
    """The DAG as `ltceval run --engine spark` parses it (LTCEVAL_ENGINE=spark)."""
    from airflow.dag_processing.dagbag import DagBag

    from core.settings import DAGS_DIR, ENGINE_ENV

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("LTCEVAL_OUT", str(tmp_path_factory.mktemp("spark-out")))
        mp.setenv(ENGINE_ENV, "spark")
        bag = DagBag(dag_folder=str(DAGS_DIR / "analytical_zone_dag.py"))
    finally:
        mp.undo()
    assert bag.import_errors == {}
    return bag.dags["analytical_zone"]


def test_on_spark_dbt_builds_the_spark_target_in_child_processes_and_the_evaluation_tables_are_collected(spark_dag):
    """dbt's Spark target; dbt in a child process (its JVM, holding the metastore's lock, ends
    before the matching step's); the tables the evaluation reads are collected into the staging
    DuckDB file after the second group and before the gates, which publish it."""
    from cosmos.constants import InvocationMode

    dbt_tasks = _dbt_tasks(spark_dag)
    assert dbt_tasks and all(t.invocation_mode == InvocationMode.SUBPROCESS for t in dbt_tasks)
    assert {t.profile_config.target_name for t in dbt_tasks} == {"spark"}
    collect = spark_dag.get_task("collect_for_evaluation")
    assert PRODUCER_DONES[1] in collect.upstream_task_ids
    assert {t for t in spark_dag.task_ids if t.startswith(f"{DBT_GROUPS[1]}.")} <= collect.get_flat_relative_ids(upstream=True)
    assert spark_dag.get_task("validate_marts").upstream_task_ids >= {"collect_for_evaluation"}
    assert spark_dag.get_task("publish_warehouse").upstream_task_ids == {"validate_marts"}
