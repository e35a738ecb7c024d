"""Third DAG: evaluate the matched panel and publish the business case.

Scheduled on the `evaluation_panel` asset (published after dbt builds mart_evaluation_panel
and the mart gates pass). Each task calls one function of ``ltceval.tasks`` (which calls
``evaluation.pipeline``) and returns its small JSON summary (XCom). One estimate task per
outcome (they run in parallel), then the negative controls (estimated as the outcomes; the
empirical null they give calibrates each outcome's interval), then costing (unit costs re-based, bootstrap intervals,
caseload projection), then sensitivity and secondary analyses and, beside them, the linkage
sensitivity (the headline results with links at a stricter and a looser threshold;
LTCEVAL_LINKAGE_SENSITIVITY), then the report, written into
the run's unpublished version folder (`reports/.versions/<run key>/`, opened by the
identifiable-zone DAG and holding its IG report and the GX results). `publish` then checks
that folder is complete and atomically repoints `reports/<period>` (and `reports/latest`) at
it (``ltceval.publish.publish_reports``), and publishes the `business_case_report` asset: a
failed or killed run leaves the previously published reports as they were.
Costing choices come from LTCEVAL_* environment variables (`evaluation.costing.CostingConfig`).

Retries: none for the statistics (estimates, costing, sensitivities: same data, same result);
`report` and `publish` write files and retry on transient I/O errors
(``ltceval.retries.IO_RETRIES``; a full disk or a permission error fails at once).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from core.assets import ANALYTICAL_ZONE, EVALUATION, airflow_asset
from core.contract import COUNT_OUTCOMES
from ltceval import tasks
from ltceval.retries import IO_RETRIES, NO_RETRIES


@dag(dag_id=EVALUATION.dag_id, schedule=[airflow_asset(ANALYTICAL_ZONE)], start_date=datetime(2024, 1, 1), catchup=False,
     max_active_runs=1, tags=["ltceval", "analytical", "evaluation"], doc_md=__doc__)
def evaluation():
    @task(**NO_RETRIES)
    def estimate(outcome: str) -> dict:
        return tasks.estimate_outcome(outcome)

    @task(**NO_RETRIES)
    def negative_controls(_estimates: list[dict]) -> dict:
        return tasks.calibrate_with_negative_controls()

    @task(**NO_RETRIES)
    def cost(_calibration: dict) -> dict:
        return tasks.cost_outcomes()

    @task(**NO_RETRIES)
    def sensitivity(_costing: dict) -> dict:
        return tasks.run_sensitivity()

    @task(**NO_RETRIES)
    def linkage_sensitivity(_costing: dict) -> dict:
        return tasks.run_linkage_sensitivity()

    @task(**IO_RETRIES)
    def report(_sensitivities: list[dict]) -> dict:
        return tasks.write_business_case()

    @task(outlets=[airflow_asset(EVALUATION)], **IO_RETRIES)
    def publish(written: dict) -> dict:
        return tasks.publish_reports(written)

    estimates = [estimate.override(task_id=f"estimate_{o}")(o) for o in COUNT_OUTCOMES]
    costing = cost(negative_controls(estimates))
    publish(report([sensitivity(costing), linkage_sensitivity(costing)]))


evaluation_dag = evaluation()
