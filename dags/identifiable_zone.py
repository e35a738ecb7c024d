"""Identifiable zone: validate landing extracts, link persons, pseudonymise, report.

Thin TaskFlow tasks over identifiable_zone.pipeline. Paths are resolved inside each task
(LTCEVAL_OUT), never at parse time. Return values (XComs) are counts and fingerprints only.
The last task publishes the pseudonymised-tables asset that the analytical DAG waits on.

Configuration: LTCEVAL_SOURCES_CONFIG names the sources config (config/sources.yml for
identifiable extracts, config/sources_pseudonymised_upstream.yml for extracts pseudonymised
upstream). The pseudonymisation key comes from LTCEVAL_PSEUDO_KEY, LTCEVAL_PSEUDO_KEY_FILE,
the Airflow Variable ``ltceval_pseudo_key`` or the password of the Airflow Connection
``ltceval_pseudo_key`` (both read inside the task through Airflow's secrets backends).
LTCEVAL_LINKAGE_MODEL=current (or a model file) reuses a saved linkage model instead of
training one.
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from ltceval.assets import PSEUDONYMISED_TABLES


@dag(
    dag_id="identifiable_zone",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["ltceval", "identifiable"],
    doc_md=__doc__,
)
def identifiable_zone():
    @task
    def validate() -> dict:
        from identifiable_zone import pipeline
        from ltceval.settings import Paths

        run_id = get_current_context()["run_id"]
        return pipeline.validate_all(Paths.from_env(), run_id=run_id)

    @task
    def link(_validated: dict) -> dict:
        from identifiable_zone import pipeline
        from ltceval.settings import Paths

        return pipeline.link_all(Paths.from_env())

    @task
    def pseudonymise(_linked: dict) -> dict:
        from identifiable_zone import pipeline
        from ltceval.settings import Paths

        return pipeline.pseudonymise_and_publish(Paths.from_env())

    @task(outlets=[PSEUDONYMISED_TABLES])
    def ig_report(_published: dict) -> dict:
        from identifiable_zone import pipeline
        from ltceval.settings import Paths

        return pipeline.write_ig_report(Paths.from_env())

    ig_report(pseudonymise(link(validate())))


identifiable_zone()
