"""The identifiable_zone DAG: four tasks, retries only where they help, the Asset at the end."""


def test_dag_structure():
    from airflow.dag_processing.dagbag import DagBag

    from core.assets import IDENTIFIABLE_ZONE, airflow_asset
    from core.settings import DAGS_DIR

    bag = DagBag(str(DAGS_DIR / "identifiable_zone_dag.py"))
    assert not bag.import_errors
    dag = bag.dags["identifiable_zone"]
    assert dag.task_ids == ["validate", "link", "pseudonymise", "ig_report"] or \
        sorted(dag.task_ids) == sorted(["validate", "link", "pseudonymise", "ig_report"])
    assert dag.get_task("ig_report").outlets == [airflow_asset(IDENTIFIABLE_ZONE)]
    assert dag.get_task("link").upstream_task_ids == {"validate"}
    # the IG report goes into the version folder that validate opened for the run's data period
    assert dag.get_task("ig_report").upstream_task_ids == {"validate", "pseudonymise"}
    # retries only where they can help: not for data checks and linkage; yes for file writing
    # and a key that may come from a secrets backend
    assert dag.get_task("validate").retries == 0 and dag.get_task("link").retries == 0
    assert dag.get_task("pseudonymise").retries >= 1 and dag.get_task("ig_report").retries >= 1
