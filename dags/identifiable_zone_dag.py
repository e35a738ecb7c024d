"""Identifiable zone: validate landing extracts, link persons, pseudonymise, report.

Each task calls one function of ``ltceval.tasks`` (which calls ``identifiable_zone.pipeline``)
and returns its small summary: counts, the data period and fingerprints, never an identifier.
The last task publishes the pseudonymised-tables asset that the analytical DAG waits on.

Configuration: LTCEVAL_SOURCES_CONFIG names the sources config (config/sources.yml for
identifiable extracts, config/sources_pseudonymised_upstream.yml for extracts pseudonymised
upstream). The pseudonymisation key comes from LTCEVAL_PSEUDO_KEY, LTCEVAL_PSEUDO_KEY_FILE,
the Airflow Variable ``ltceval_pseudo_key`` or the password of the Airflow Connection
``ltceval_pseudo_key`` (both read inside the task through Airflow's secrets backends), each
normalised the same way (``core.keys.normalise_key``). Only this DAG needs the key: `ltceval
run` gives it to this DAG's process alone (``ltceval.run.step_env``).
LTCEVAL_LINKAGE_MODEL=current (or a model file) reuses a saved linkage model instead of
training one.

Data period and publishing (``ltceval.publish``): ``validate`` derives the run's data period
from the extracts (the last month with activity; LTCEVAL_PERIOD=YYYY-MM, if set, must agree)
and opens the run's unpublished version folder under ``reports/.versions/`` (failing at once
if the output folder cannot be written). ``ig_report`` writes the IG report there and hands
the period and version key to the next DAGs (``analytical/current_run.json``); the evaluation
DAG publishes the folder as ``reports/<period>`` when every gate has passed. Files are
validated once: each is cached by checksum, so a monthly run validates only the new month.

Retries (``ltceval.retries``): none for validate and link (data checks and linkage give the
same result on the same input); pseudonymise and ig_report retry, as the key may come from a
secrets backend and both write files (a full disk or a permission error still fails at once).
"""
from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from core.assets import IDENTIFIABLE_ZONE, airflow_asset
from ltceval import tasks
from ltceval.retries import IO_RETRIES, NO_RETRIES


@dag(dag_id=IDENTIFIABLE_ZONE.dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     max_active_runs=1, tags=["ltceval", "identifiable"], doc_md=__doc__)
def identifiable_zone():
    @task(**NO_RETRIES)
    def validate() -> dict:
        return tasks.validate_extracts(run_id=get_current_context()["run_id"])

    @task(**NO_RETRIES)
    def link(_validated: dict) -> dict:
        return tasks.link_records()

    @task(**IO_RETRIES)
    def pseudonymise(_linked: dict) -> dict:
        return tasks.pseudonymise_tables()

    @task(outlets=[airflow_asset(IDENTIFIABLE_ZONE)], **IO_RETRIES)
    def ig_report(validated: dict, _published: dict) -> dict:
        return tasks.write_ig_report(validated)

    validated = validate()
    ig_report(validated, pseudonymise(link(validated)))


identifiable_zone()
