"""Third DAG: evaluate the matched panel and publish the business case.

Scheduled on the `evaluation_panel` asset (published after dbt builds mart_evaluation_panel).
Thin tasks: each calls one function of `evaluation.pipeline` with the run's `Paths` and returns
its small JSON summary (XCom). One estimate task per outcome (they run in parallel), then
costing (unit costs re-based, bootstrap intervals, caseload projection), then sensitivity and
secondary analyses, then the report, which publishes the `business_case_report` asset.
Costing choices come from LTCEVAL_* environment variables (`evaluation.costing.CostingConfig`).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from ltceval.assets import BUSINESS_CASE_REPORT, EVALUATION_PANEL

# kept in step with evaluation.pipeline.OUTCOMES (checked by tests); not imported here so
# that parsing the DAG file stays cheap
OUTCOMES = (
    "ae_attendances",
    "emergency_admissions",
    "bed_days",
    "outpatient_attendances",
    "gp_appointments",
)


@dag(
    dag_id="evaluation",
    schedule=[EVALUATION_PANEL],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["ltceval", "analytical", "evaluation"],
    doc_md=__doc__,
)
def evaluation():
    @task
    def estimate(outcome: str) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.estimate(Paths.from_env(), outcome)

    @task
    def cost(estimates: list[dict]) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.cost(Paths.from_env())

    @task
    def sensitivity(costing: dict) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.sensitivity(Paths.from_env())

    @task(outlets=[BUSINESS_CASE_REPORT])
    def report(sens: dict) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.report(Paths.from_env())

    estimates = [estimate.override(task_id=f"estimate_{o}")(o) for o in OUTCOMES]
    report(sensitivity(cost(estimates)))


evaluation_dag = evaluation()
