"""Service definitions in a -config-dir (issue #10 item 1): registered at start with their sidecar,
still there after a restart, and re-applied by reload (HTTP and SIGHUP): an edited definition is
re-registered, a removed one deregistered, a new file read, a service registered over HTTP left
alone, and a bad edit refused with the running set kept."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from .harness import Datacenter, wait_until

SERVICES_HCL = """
service {
  name = "socat"
  port = 8181
  meta { Team_Name = "edge" }
  connect { sidecar_service { proxy {
    upstreams = [{ destination_name = "x", local_bind_port = 9191, datacenter = "dc1" }]
    config { connect_timeout_ms = 500 }
  } } }
}
services = [{ name = "db", port = 5432, check = { tcp = "127.0.0.1:5432", interval = "1s" } }]
"""


def _services(dc: Datacenter) -> dict[str, Any]:
    response = dc.get(dc.servers[0], "/v1/agent/services")
    response.raise_for_status()
    return response.json()


def _has(dc: Datacenter, *ids: str, absent: tuple[str, ...] = ()) -> dict[str, Any] | None:
    services = _services(dc)
    return services if all(i in services for i in ids) and not any(i in services for i in absent) else None


def test_config_dir_services_register_survive_a_restart_and_follow_reloads(make_dc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config_dir = tmp_path / "services.d"
    config_dir.mkdir()
    services_file = config_dir / "services.hcl"
    services_file.write_text(SERVICES_HCL, encoding="utf-8")
    dc = make_dc("dc1", count=1, extra_args=["-config-dir", str(config_dir)])
    dc.start()
    server = dc.servers[0]

    services = wait_until(lambda: _has(dc, "socat", "socat-sidecar-proxy", "db"), 15, what="file services")
    sidecar = services["socat-sidecar-proxy"]
    assert (sidecar["Kind"], sidecar["Port"], services["socat"]["Meta"]) == ("connect-proxy", 21000, {"Team_Name": "edge"})
    proxy = sidecar["Proxy"]
    assert {k: proxy["Upstreams"][0][k] for k in ("DestinationName", "LocalBindPort", "Datacenter")} == {
        "DestinationName": "x", "LocalBindPort": 9191, "Datacenter": "dc1"}
    assert proxy["Config"] == {"connect_timeout_ms": 500}  # a user map: keys as written
    assert (proxy["DestinationServiceName"], proxy["LocalServicePort"]) == ("socat", 8181)
    connect = dc.get(server, "/v1/health/connect/socat").json()
    assert [entry["Service"]["ID"] for entry in connect] == ["socat-sidecar-proxy"]
    # No proxy listens on the sidecar's port: its default TCP check keeps it out of the passing set.
    assert dc.get(server, "/v1/health/connect/socat?passing").json() == []
    # A file's TCP check is run by the agent like one registered over HTTP.
    wait_until(lambda: "dial tcp 127.0.0.1:5432: connect: connection refused" == dc.get(
        server, "/v1/agent/checks").json().get("service:db", {}).get("Output"), 5, what="db's TCP check run")
    assert "service definitions: registered" in server.log_tail(200)
    assert dc.put(server, "/v1/agent/service/register", {"Name": "web-http", "Port": 80}).status_code == 200

    server.stop()
    server.start()
    dc.wait_leader()
    after = wait_until(lambda: _has(dc, "socat", "socat-sidecar-proxy", "db", "web-http"), 15, what="after restart")
    assert after["socat-sidecar-proxy"]["Port"] == 21000

    # Edit: db removed from the file, socat's port changed. The HTTP-registered service stays.
    services_file.write_text(SERVICES_HCL.replace("port = 8181", "port = 8282").replace(
        SERVICES_HCL.splitlines()[-1], ""), encoding="utf-8")
    assert dc.put(server, "/v1/agent/reload").status_code == 200
    edited = wait_until(lambda: _has(dc, "socat", "web-http", absent=("db",)), 10, what="db deregistered")
    assert edited["socat"]["Port"] == 8282
    assert edited["socat-sidecar-proxy"]["Proxy"]["LocalServicePort"] == 8282
    assert edited["socat-sidecar-proxy"]["Port"] == 21000  # re-registration keeps the sidecar's port

    # A bad edit is refused naming file and key; the running set stays.
    bad = config_dir / "bad.json"
    bad.write_text(json.dumps({"service": {"name": "cache", "prot": 1}}), encoding="utf-8")
    refused = dc.put(server, "/v1/agent/reload")
    assert refused.status_code == 400 and str(bad) in refused.text and "service.prot" in refused.text
    assert "did you mean port?" in refused.text
    # A new file in the directory, read on SIGHUP.
    bad.write_text(json.dumps({"service": {"name": "cache", "port": 6379}}), encoding="utf-8")
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: _has(dc, "cache", "socat", "web-http", absent=("db",)), 10, what="cache after SIGHUP")
