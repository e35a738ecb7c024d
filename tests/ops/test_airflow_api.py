"""ops.airflow_api.ApiClient against a real HTTP server answering as Airflow's api-server did
(tests/ops/conftest.py): the JWT login, the bearer token, the paths and bodies it sends, errors."""
from __future__ import annotations

import pytest

from ops import StackError
from ops.airflow_api import ApiClient
from ops.local_ports import free_port
from ops.run_checks import DAG_IDS


def test_logs_in_once_then_sends_the_token(canned_api):
    api = ApiClient(canned_api.url + "/", canned_api.username, canned_api.password)
    runs = {dag_id: api.dag_runs(dag_id) for dag_id in DAG_IDS}
    assert runs == {d: canned_api.responses[f"/api/v2/dags/{d}/dagRuns"]["dag_runs"] for d in DAG_IDS}
    assert all(runs.values())
    methods_paths = [(m, p) for m, p, _ in canned_api.requests]
    assert methods_paths[0] == ("POST", "/auth/token")
    assert methods_paths[1:] == [("GET", f"/api/v2/dags/{d}/dagRuns?limit=100&order_by=-run_after")
                                 for d in DAG_IDS]


def test_a_refused_login_names_the_call_and_the_status(canned_api):
    api = ApiClient(canned_api.url, canned_api.username, "not-the-password")
    with pytest.raises(StackError, match=r"POST /auth/token: HTTP 401: .*Invalid credentials"):
        api.asset_events()


def test_patch_and_post_send_json_bodies(canned_api):
    api = ApiClient(canned_api.url, canned_api.username, canned_api.password)
    canned_api.responses["/api/v2/dags/evaluation"] = {"dag_id": "evaluation", "is_paused": False}
    assert api.patch("/api/v2/dags/evaluation", {"is_paused": False})["is_paused"] is False
    with pytest.raises(StackError, match="HTTP 404"):
        api.post("/api/v2/dags/nope/dagRuns", {"logical_date": None})
    assert canned_api.requests[-2:] == [("PATCH", "/api/v2/dags/evaluation", {"is_paused": False}),
                                        ("POST", "/api/v2/dags/nope/dagRuns", {"logical_date": None})]


def test_task_instances_quote_the_run_id(canned_api):
    run_id = canned_api.responses["/api/v2/dags/evaluation/dagRuns"]["dag_runs"][0]["dag_run_id"]
    quoted = run_id.replace(":", "%3A").replace("+", "%2B")
    assert quoted != run_id  # Airflow's run ids carry a timestamp with ':' and '+'
    path = f"/api/v2/dags/evaluation/dagRuns/{quoted}/taskInstances"
    canned_api.responses[path] = {"task_instances": [{"task_id": "render_report", "state": "success"}],
                                  "total_entries": 1}
    api = ApiClient(canned_api.url, canned_api.username, canned_api.password)
    assert api.task_instances("evaluation", run_id) == [{"task_id": "render_report", "state": "success"}]
    assert canned_api.requests[-1][1] == path + "?limit=500"


def test_healthy_only_when_the_metadata_database_is(canned_api):
    api = ApiClient(canned_api.url, canned_api.username, canned_api.password)
    assert api.healthy()
    assert api.token is None  # the health check needs no login
    canned_api.responses["/api/v2/monitor/health"]["metadatabase"]["status"] = "unhealthy"
    assert not api.healthy()
    del canned_api.responses["/api/v2/monitor/health"]
    assert not api.healthy()
    assert not ApiClient(f"http://127.0.0.1:{free_port()}", "admin", "pw").healthy()  # nothing listens
