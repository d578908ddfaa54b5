"""The readiness probes of deploy/kubernetes, run against a status endpoint that answers as a
server or gateway would, with and without what makes the pod ready."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.test_deploy_kubernetes import RENDERED, container_of, gateway, one


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    answers: dict[str, Any] = {}

    def do_GET(self) -> None:
        known = self.path in self.answers
        body = json.dumps(self.answers.get(self.path)).encode()
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def status_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.240.251", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_probe(command: list[str], local: str, server: http.server.HTTPServer) -> bool:
    assert command[:2] == ["python3", "-c"]
    host, port = server.server_address[:2]
    script = command[2].replace(local, f"http://{host}:{port}")
    assert script != command[2], f"the probe does not call {local}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=10).returncode == 0


@pytest.mark.parametrize(("leader", "ready"), [("", False), ("10.1.2.3:8301", True)])
def test_server_readiness_needs_a_known_leader(leader: str, ready: bool, status_server: http.server.HTTPServer) -> None:
    """The API answers 200 with "" while there is no leader, so only the body tells the two apart."""
    _StatusHandler.answers = {"/v1/status/leader": leader}
    spec = one(RENDERED["dc1"], "StatefulSet", "meshfed")["spec"]["template"]["spec"]
    command = container_of(spec)["readinessProbe"]["exec"]["command"]
    assert _run_probe(command, "http://127.0.0.1:8500", status_server) == ready


@pytest.mark.parametrize(("servers", "ready"), [({}, False), ({"meshfed-0": "10.1.0.5:8300"}, True)])
def test_gateway_readiness_needs_a_local_server(
    servers: dict[str, str], ready: bool, status_server: http.server.HTTPServer
) -> None:
    _StatusHandler.answers = {"/v1/gateway/routes": {"Datacenter": "dc1", "LocalServers": servers,
                                                     "RemoteGateways": {}, "ActiveConnections": 0}}
    _, container, _ = gateway("dc1")
    command = container["readinessProbe"]["exec"]["command"]
    assert _run_probe(command, "http://127.0.0.1:8444", status_server) == ready


