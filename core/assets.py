"""The chain of the three DAGs: each publishes one Asset and the next is scheduled on it.

One definition of the DAG ids and Asset names for the DAG files, the embedded runner and the
scheduler checks (``ops/``). Names only, so that reading them does not import Airflow (seconds);
``airflow_asset`` builds the Airflow object a DAG file needs.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChainLink:
    """A DAG and the Asset it publishes when it succeeds."""

    dag_id: str
    asset_name: str
    asset_uri: str


IDENTIFIABLE_ZONE = ChainLink("identifiable_zone", "pseudonymised_tables", "ltceval://analytical/pseudonymised")
ANALYTICAL_ZONE = ChainLink("analytical_zone", "evaluation_panel", "ltceval://analytical/mart_evaluation_panel")
EVALUATION = ChainLink("evaluation", "business_case_report", "ltceval://reports/business_case")
# in run order: each DAG after the first is scheduled on the Asset of the one before
CHAIN = (IDENTIFIABLE_ZONE, ANALYTICAL_ZONE, EVALUATION)


def airflow_asset(link: ChainLink):
    """The ``airflow.sdk.Asset`` a DAG publishes (outlets) or is scheduled on."""
    from airflow.sdk import Asset

    return Asset(name=link.asset_name, uri=link.asset_uri)
