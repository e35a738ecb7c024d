"""ops.run_checks.check_runs on what a real api-server answered after the chain had run
(tests/ops/conftest.py), and on that answer changed in each way a broken chain would change it."""
from __future__ import annotations

import pytest

from core.assets import ANALYTICAL_ZONE, EVALUATION, IDENTIFIABLE_ZONE
from ops import StackError
from ops.airflow_api import ApiClient
from ops.run_checks import ASSET_CHAIN, DAG_IDS, check_runs

EVENTS = "/api/v2/assets/events"


def _runs(responses: dict, link) -> list[dict]:
    return responses[f"/api/v2/dags/{link.dag_id}/dagRuns"]["dag_runs"]


def _event(responses: dict, link) -> dict:
    return next(e for e in responses[EVENTS]["asset_events"] if e["name"] == link.asset_name)


def _api(server) -> ApiClient:
    return ApiClient(server.url, server.username, server.password)


def test_the_recorded_chain_passes(canned_api):
    result = check_runs(_api(canned_api))
    assert list(result["runs"]) == list(DAG_IDS)
    assert list(result["events"]) == list(ASSET_CHAIN)
    for link in (IDENTIFIABLE_ZONE, ANALYTICAL_ZONE, EVALUATION):
        assert result["runs"][link.dag_id]["dag_run_id"] == _runs(canned_api.responses, link)[0]["dag_run_id"]
        assert result["events"][link.asset_name]["source_run_id"] == result["runs"][link.dag_id]["dag_run_id"]


def _no_successful_run(r):
    _runs(r, ANALYTICAL_ZONE)[0]["state"] = "failed"


def _first_run_not_manual(r):
    _runs(r, IDENTIFIABLE_ZONE)[0]["run_type"] = "scheduled"


def _downstream_started_by_hand(r):
    _runs(r, EVALUATION)[0]["run_type"] = "manual"


def _event_missing(r):
    r[EVENTS]["asset_events"] = [e for e in r[EVENTS]["asset_events"] if e["name"] != EVALUATION.asset_name]


def _event_from_another_run(r):
    _event(r, IDENTIFIABLE_ZONE)["source_run_id"] = "manual__2000-01-01T00:00:00+00:00"


def _event_created_no_run(r):
    _event(r, ANALYTICAL_ZONE)["created_dagruns"] = []


@pytest.mark.parametrize("break_chain, message", [
    (_no_successful_run, "analytical_zone: no successful DAG run"),
    (_first_run_not_manual, "identifiable_zone was not triggered by hand: run type scheduled"),
    (_downstream_started_by_hand, "evaluation was not started by its Asset: run type manual"),
    (_event_missing, "no Asset event for business_case_report"),
    (_event_from_another_run, "pseudonymised_tables event from identifiable_zone/manual__2000-01-01"),
    (_event_created_no_run, "evaluation_panel event did not create evaluation/"),
])
def test_a_broken_chain_is_refused(canned_api, break_chain, message):
    break_chain(canned_api.responses)
    with pytest.raises(StackError) as err:
        check_runs(_api(canned_api))
    assert message in str(err.value)
