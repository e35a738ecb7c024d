"""A stand-in for Airflow's REST API that answers from recorded responses.

Airflow's API is not ours, so for testing our client of it and our checks of a run (without the
minutes a real stack takes; tests/ops/test_scheduler_postgres.py does that) a real HTTP server
on 127.0.0.1 serves what a real api-server answered: data/airflow_api_chain.json, recorded from
`python ops/airflow_stack.py --keep` after the three DAG runs had succeeded. It keeps the
simple auth manager's rules: a JWT from POST /auth/token, then `Authorization: Bearer` on
every /api/v2 call but the health check.
"""
from __future__ import annotations

import copy
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

RECORDED = Path(__file__).parent / "data" / "airflow_api_chain.json"
UNAUTHENTICATED = {"/api/v2/monitor/health"}


class CannedAirflowApi(ThreadingHTTPServer):
    """``responses`` maps a path (no query) to its JSON body; ``requests`` records what came in."""

    def __init__(self, responses: dict[str, dict], username: str = "admin", password: str = "pw"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responses = responses
        self.username, self.password = username, password
        self.token = secrets.token_urlsafe(16)
        self.requests: list[tuple[str, str, dict | None]] = []  # (method, path with query, body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: CannedAirflowApi

    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, body))
        path = urlsplit(self.path).path
        if path == "/auth/token" and self.command == "POST":
            if body == {"username": self.server.username, "password": self.server.password}:
                return self._answer(201, {"access_token": self.server.token})
            return self._answer(401, {"detail": "Invalid credentials"})
        if path not in UNAUTHENTICATED and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._answer(401, {"detail": "Not authenticated"})
        if path not in self.server.responses:
            return self._answer(404, {"detail": "Not Found"})
        return self._answer(200, self.server.responses[path])

    do_GET = do_POST = do_PATCH = _handle

    def log_message(self, *args) -> None:  # quiet: pytest shows what matters
        pass


@pytest.fixture
def recorded_chain() -> dict[str, dict]:
    """The recorded responses of a successful chain (a fresh copy for each test to change)."""
    return copy.deepcopy(json.loads(RECORDED.read_text()))


@pytest.fixture
def canned_api(recorded_chain):
    server = CannedAirflowApi(recorded_chain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
