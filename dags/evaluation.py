"""Third DAG: evaluate the matched panel and publish the business case.

Scheduled on the `evaluation_panel` asset (published after dbt builds mart_evaluation_panel
and the mart gates pass). Thin tasks: each calls one function of `evaluation.pipeline` with the
run's `Paths` and returns its small JSON summary (XCom). One estimate task per outcome (they
run in parallel), then costing (unit costs re-based, bootstrap intervals, caseload
projection), then sensitivity and secondary analyses, then the report, written into the
run's unpublished version folder (`reports/.versions/<run key>/`, opened by the
identifiable-zone DAG and holding its IG report and the GX results). `publish` then checks
that folder is complete and atomically repoints `reports/<period>` (and `reports/latest`) at
it (``ltceval.publish.publish_reports``), and publishes the `business_case_report` asset: a
failed or killed run leaves the previously published reports as they were.
Costing choices come from LTCEVAL_* environment variables (`evaluation.costing.CostingConfig`).

Retries: none for the statistics (estimates, costing, sensitivity: same data, same result);
`report` and `publish` write files and retry on transient I/O errors
(``ltceval.publish.IO_RETRIES``; a full disk or a permission error fails at once).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from ltceval.assets import BUSINESS_CASE_REPORT, EVALUATION_PANEL
from ltceval.publish import IO_RETRIES, NO_RETRIES

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
    @task(**NO_RETRIES)
    def estimate(outcome: str) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.estimate(Paths.from_env(), outcome)

    @task(**NO_RETRIES)
    def cost(estimates: list[dict]) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.cost(Paths.from_env())

    @task(**NO_RETRIES)
    def sensitivity(costing: dict) -> dict:
        from evaluation import pipeline
        from ltceval.settings import Paths

        return pipeline.sensitivity(Paths.from_env())

    @task(**IO_RETRIES)
    def report(sens: dict) -> dict:
        from evaluation import pipeline
        from ltceval import publish
        from ltceval.settings import Paths

        paths = Paths.from_env()
        run = publish.current_run(paths)
        with publish.airflow_retry_policy():
            out = pipeline.report(publish.staged(paths, run), period=run.period)
        return {**out, **run.to_json()}

    @task(outlets=[BUSINESS_CASE_REPORT], **IO_RETRIES)
    def publish(written: dict) -> dict:
        from ltceval import publish as pub
        from ltceval.settings import Paths

        paths = Paths.from_env()
        run = pub.Run(written["period"], written["run_key"])
        with pub.airflow_retry_policy():
            folder = pub.publish_reports(paths, run)
        return {"published": str(folder), "report": str(folder / "business_case.html"), **run.to_json()}

    estimates = [estimate.override(task_id=f"estimate_{o}")(o) for o in OUTCOMES]
    publish(report(sensitivity(cost(estimates))))


evaluation_dag = evaluation()
