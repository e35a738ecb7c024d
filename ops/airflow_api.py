"""The REST API calls the stack and its checks make, with the standard library only (urllib)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

from ops import StackError


class ApiClient:
    """The Airflow 3 public REST API (`/api/v2`) with a JWT from the simple auth manager."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True,
                 timeout: float = 30) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            if self.token is None:
                self.login()
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise StackError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(raw) if raw else {}

    def login(self) -> None:
        """POST /auth/token with the simple auth manager's user and password -> access_token."""
        resp = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                             auth=False)
        self.token = resp["access_token"]

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def patch(self, path: str, body: dict) -> dict:
        return self._request("PATCH", path, body)

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def healthy(self) -> bool:
        """The api-server answers and reports its metadata database healthy."""
        try:
            health = self._request("GET", "/api/v2/monitor/health", auth=False, timeout=5)
        except (OSError, StackError, ValueError):
            return False
        return health.get("metadatabase", {}).get("status") == "healthy"

    def dag_runs(self, dag_id: str) -> list[dict]:
        """A DAG's runs, newest first."""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=-run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=500"
                        )["task_instances"]

    def asset_events(self) -> list[dict]:
        """Every Asset event, oldest first."""
        return self.get("/api/v2/assets/events?limit=500&order_by=timestamp")["asset_events"]
