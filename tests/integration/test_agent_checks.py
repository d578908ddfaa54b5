"""The agent's check runner end to end (one server): a TCP check on a port nobody listens on is
critical, and passing within its interval once a listener appears; an HTTP check reads the status
code; a sidecar's two default checks (TCP on its port, alias of its parent) decide whether it is
among `/v1/health/connect/<svc>?passing`; and an unchanged result is not written again."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .harness import Datacenter, wait_until

APP_PORT = 7001
SIDECAR_PORT = 21000  # the first port of the sidecar range


@contextmanager
def listening(host: str, port: int) -> Iterator[None]:
    """A socket that accepts connections (the kernel completes the handshake from the backlog)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        yield


def agent_checks(dc: Datacenter) -> dict[str, Any]:
    response = dc.get(dc.servers[0], "/v1/agent/checks")
    response.raise_for_status()
    return response.json()


def status_of(dc: Datacenter, check_id: str) -> str:
    return agent_checks(dc).get(check_id, {}).get("Status", "")


def passing_sidecars(dc: Datacenter) -> list[str]:
    rows = dc.get(dc.servers[0], "/v1/health/connect/api?passing").json()
    return [row["Service"]["ID"] for row in rows]


def metric(dc: Datacenter, sample: str) -> float:
    """The sum of the samples that start with `sample` (a name, or a name with all its labels)."""
    text = dc.get(dc.servers[0], "/v1/agent/metrics?format=prometheus").text
    return sum(float(value) for line in text.splitlines() if not line.startswith("#")
               for key, _, value in [line.rpartition(" ")] if key == sample or key.startswith(sample + "{"))


def test_tcp_http_and_sidecar_default_checks_follow_their_targets(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", count=1, config={"telemetry": {"prometheus_retention_time": "60s"}})
    dc.start()
    server = dc.servers[0]
    host = server.address.rsplit(".", 1)[0] + ".40"
    api = {"Name": "api", "Port": APP_PORT, "Address": host,
           "Check": {"TCP": f"{host}:{APP_PORT}", "Interval": "1s", "Timeout": "1s"},
           "Connect": {"SidecarService": {}}}
    assert dc.put(server, "/v1/agent/service/register", api).status_code == 200
    web = {"Name": "web", "Port": 80, "Checks": [
        {"Name": "leader", "HTTP": f"{server.http}/v1/status/leader", "Interval": "1s"},
        {"Name": "missing", "HTTP": f"{server.http}/v1/nothing-here", "Interval": "1s"}]}
    assert dc.put(server, "/v1/agent/service/register", web).status_code == 200
    bad = dc.put(server, "/v1/agent/service/register", {"Name": "x", "Check": {"TCP": "a:1"}})
    assert (bad.status_code, bad.text) == (
        400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks")

    # Nobody listens: the TCP check and the sidecar's are critical, the alias follows the parent.
    wait_until(lambda: "connection refused" in agent_checks(dc).get("service:api", {}).get("Output", ""), 5,
               what="the api check run")
    checks = agent_checks(dc)
    assert checks["service:api"]["Output"] == f"dial tcp {host}:{APP_PORT}: connect: connection refused"
    listening_check, aliasing = checks["service:api-sidecar-proxy:1"], checks["service:api-sidecar-proxy:2"]
    assert (listening_check["Name"], listening_check["Type"], listening_check["Interval"]) == (
        "Connect Sidecar Listening", "tcp", "10s")
    assert listening_check["Definition"]["TCP"] == f"{host}:{SIDECAR_PORT}"
    assert (aliasing["Name"], aliasing["ServiceID"], aliasing["Type"]) == (
        "Connect Sidecar Aliasing api", "api-sidecar-proxy", "alias")
    wait_until(lambda: status_of(dc, "service:api-sidecar-proxy:2") == "critical"
               and "Aliased check" in agent_checks(dc)["service:api-sidecar-proxy:2"]["Output"], 5, what="alias")
    assert passing_sidecars(dc) == []
    # HTTP: 200 passing, 404 critical, with Consul's output.
    wait_until(lambda: status_of(dc, "service:web:1") == "passing" and status_of(dc, "service:web:2") == "critical",
               5, what="the HTTP checks")
    assert agent_checks(dc)["service:web:1"]["Output"].startswith(f"HTTP GET {server.http}/v1/status/leader: 200 OK Output:")

    with listening(host, APP_PORT):
        with listening(host, SIDECAR_PORT):
            # A new check that has not passed yet retries every second: the proxy is found at once.
            wait_until(lambda: passing_sidecars(dc) == ["api-sidecar-proxy"], 5, what="the sidecar passing")
            assert agent_checks(dc)["service:api"]["Output"] == f"TCP connect {host}:{APP_PORT}: Success"
            assert "check 'service:api' (Service 'api' check) is now passing (was critical)" in server.log_tail(300)
            # Passing runs that change nothing are not written through Raft.
            writes = metric(dc, "meshfed_agent_check_updates_total")
            runs = metric(dc, 'meshfed_agent_checks_run_total{result="passing",type="tcp"}')
            time.sleep(2.5)
            assert metric(dc, 'meshfed_agent_checks_run_total{result="passing",type="tcp"}') >= runs + 2
            assert metric(dc, "meshfed_agent_check_updates_total") == writes
        # The proxy's port closes: out of the passing set within the 10 s interval.
        wait_until(lambda: passing_sidecars(dc) == [], 12, interval=0.2, what="the sidecar dropping out")
        assert "connection refused" in agent_checks(dc)["service:api-sidecar-proxy:1"]["Output"]

    # Deregistering takes the checks along; the runner stops probing them.
    assert dc.put(server, "/v1/agent/service/deregister/api").status_code == 200
    assert not [c for c in agent_checks(dc) if "api" in c]
