"""Identifiable zone: validate landing extracts, link persons, pseudonymise, report.

Thin TaskFlow tasks over identifiable_zone.pipeline. Paths are resolved inside each task
(LTCEVAL_OUT), never at parse time. Return values (XComs) are counts, the data period and
fingerprints only. The last task publishes the pseudonymised-tables asset that the analytical
DAG waits on.

Configuration: LTCEVAL_SOURCES_CONFIG names the sources config (config/sources.yml for
identifiable extracts, config/sources_pseudonymised_upstream.yml for extracts pseudonymised
upstream). The pseudonymisation key comes from LTCEVAL_PSEUDO_KEY, LTCEVAL_PSEUDO_KEY_FILE,
the Airflow Variable ``ltceval_pseudo_key`` or the password of the Airflow Connection
``ltceval_pseudo_key`` (both read inside the task through Airflow's secrets backends).
LTCEVAL_LINKAGE_MODEL=current (or a model file) reuses a saved linkage model instead of
training one.

Data period and publishing (``ltceval.publish``): ``validate`` derives the run's data period
from the extracts (the last month with activity; LTCEVAL_PERIOD=YYYY-MM, if set, must agree)
and opens the run's unpublished version folder under ``reports/.versions/`` (failing at once
if the output folder cannot be written). ``ig_report`` writes the IG report there and hands
the period and version key to the next DAGs (``analytical/current_run.json``); the evaluation
DAG publishes the folder as ``reports/<period>`` when every gate has passed. Files are
validated once: each is cached by checksum, so a monthly run validates only the new month.

Retries (``ltceval.publish.IO_RETRIES``): none for validate and link (data checks and linkage
give the same result on the same input); pseudonymise and ig_report retry, as the key may come
from a secrets backend and both write files (a full disk or a permission error still fails at
once: a person has to act).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from ltceval.assets import PSEUDONYMISED_TABLES
from ltceval.publish import IO_RETRIES, NO_RETRIES


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
    @task(**NO_RETRIES)
    def validate() -> dict:
        from identifiable_zone import pipeline
        from ltceval import publish
        from ltceval.settings import Paths

        paths = Paths.from_env()
        run_id = get_current_context()["run_id"]
        summary = pipeline.validate_all(paths, run_id=run_id)
        run = publish.new_run(summary["period"])
        with publish.airflow_retry_policy():
            publish.open_version(paths, run)
        return {**summary, **run.to_json()}

    @task(**NO_RETRIES)
    def link(_validated: dict) -> dict:
        from identifiable_zone import pipeline
        from ltceval.settings import Paths

        return pipeline.link_all(Paths.from_env())

    @task(**IO_RETRIES)
    def pseudonymise(_linked: dict) -> dict:
        from identifiable_zone import pipeline
        from ltceval.settings import Paths

        return pipeline.pseudonymise_and_publish(Paths.from_env())

    @task(outlets=[PSEUDONYMISED_TABLES], **IO_RETRIES)
    def ig_report(validated: dict, _published: dict) -> dict:
        from identifiable_zone import pipeline
        from ltceval import publish
        from ltceval.settings import Paths

        paths = Paths.from_env()
        run = publish.Run(validated["period"], validated["run_key"])
        with publish.airflow_retry_policy():
            out = pipeline.write_ig_report(publish.staged(paths, run))
            publish.write_handoff(paths, run)
        return {**out, **run.to_json()}

    validated = validate()
    ig_report(validated, pseudonymise(link(validated)))


identifiable_zone()
