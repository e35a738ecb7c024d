import importlib.util
from pathlib import Path

from evaluation.pipeline import OUTCOMES
from core.assets import ANALYTICAL_ZONE, EVALUATION, airflow_asset

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "evaluation_dag.py"


def test_evaluation_dag_structure():
    spec = importlib.util.spec_from_file_location("evaluation_dag_file", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.evaluation_dag
    assert dag.dag_id == "evaluation"
    assert airflow_asset(ANALYTICAL_ZONE) in list(dag.timetable.asset_condition.objects)
    tasks = {t.task_id: t for t in dag.tasks}
    estimates = {f"estimate_{o}" for o in OUTCOMES}
    assert set(tasks) == estimates | {"negative_controls", "cost", "sensitivity", "linkage_sensitivity", "report",
                                       "publish"}
    # the negative controls calibrate the outcomes' estimates, so they follow all of them
    assert tasks["negative_controls"].upstream_task_ids == estimates
    assert tasks["cost"].upstream_task_ids == {"negative_controls"}
    assert tasks["sensitivity"].upstream_task_ids == {"cost"}
    assert tasks["linkage_sensitivity"].upstream_task_ids == {"cost"}
    assert tasks["report"].upstream_task_ids == {"sensitivity", "linkage_sensitivity"}
    # the report is written aside; publish swaps it in and alone emits the asset
    assert tasks["publish"].upstream_task_ids == {"report"}
    assert list(tasks["publish"].outlets) == [airflow_asset(EVALUATION)]
    assert all(not tasks[t].outlets for t in estimates | {"report"})
    # statistics: same data, same result, no retry; file writing retries
    assert all(tasks[t].retries == 0 for t in estimates | {"negative_controls", "cost", "sensitivity",
                                                            "linkage_sensitivity"})
    assert tasks["report"].retries >= 1 and tasks["publish"].retries >= 1
