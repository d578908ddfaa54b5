"""The demo's service mesh (issue #10 item 6): the operators' walkthrough (reference
mesh-dataplane.md §8) on the demo's two DCs.

SERVICES are the services that get sidecars (and, with ACLs, a service-identity token each).

dc1 runs `socat` (meshfed's echo service) and its sidecar; dc2 runs `web`'s sidecar with the
upstream `socat` in dc1 on <dc2 base>.30:8181; proxy-defaults send cross-DC traffic through the
local gateway (mode `local`); an intention allows web => socat (needed once ACLs deny by default).
Registrations go through the agent API exactly as an operator would send them, so the demo also
shows the calls to copy.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from meshfed.server.cli.launcher import FederatedDatacenter, MeshProcess

SERVICES = ("socat", "web")
ECHO_PORT = 9090
UPSTREAM_PORT = 8181
PROXY_ADMIN_PORT = 19100


def app_host(dc: FederatedDatacenter) -> str:
    return dc.servers[0].address.rsplit(".", 1)[0] + ".30"


def mesh_processes(dcs: Sequence[FederatedDatacenter], root: str,
                   token_files: dict[str, str] | None = None) -> list[MeshProcess]:
    """`token_files`: service -> a 0600 file with its sidecar's token (ACLs on)."""
    dc1, dc2 = dcs
    socat_host, web_host = app_host(dc1), app_host(dc2)
    files = token_files or {}

    def token(service: str) -> list[str]:
        return ["-token-file", files[service]] if service in files else []

    return [
        MeshProcess("echo (socat)", ["echo", "-listen", f"{socat_host}:{ECHO_PORT}"], f"{root}/echo.log",
                    [(socat_host, ECHO_PORT)]),
        MeshProcess("socat sidecar", ["proxy", "-sidecar-for", "socat", "-http-addr", dc1.servers[0].http,
                                      "-admin-bind", f"{socat_host}:{PROXY_ADMIN_PORT}", *token("socat")],
                    f"{root}/socat-proxy.log", [(socat_host, 21000), (socat_host, PROXY_ADMIN_PORT)]),
        MeshProcess("web sidecar", ["proxy", "-sidecar-for", "web", "-http-addr", dc2.servers[0].http,
                                    "-admin-bind", f"{web_host}:{PROXY_ADMIN_PORT}", *token("web")],
                    f"{root}/web-proxy.log", [(web_host, 21000), (web_host, UPSTREAM_PORT), (web_host, PROXY_ADMIN_PORT)]),
    ]


def registrations(dcs: Sequence[FederatedDatacenter]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(server HTTP address, method, path, body) of every write the demo makes, in order."""
    dc1, dc2 = dcs
    socat_host, web_host = app_host(dc1), app_host(dc2)
    socat = {"ID": "socat", "Name": "socat", "Port": ECHO_PORT, "Address": socat_host, "Connect": {"SidecarService": {
        "Proxy": {"LocalServiceAddress": socat_host, "Config": {"bind_address": socat_host}}}}}
    web = {"Name": "web", "Port": 8080, "Address": web_host, "Connect": {"SidecarService": {"Proxy": {
        "Config": {"bind_address": web_host},
        "Upstreams": [{"DestinationName": "socat", "Datacenter": "dc1", "LocalBindAddress": web_host,
                       "LocalBindPort": UPSTREAM_PORT}]}}}}
    return [
        (dc1.servers[0].http, "PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                                    "MeshGateway": {"Mode": "local"}}),
        (dc1.servers[0].http, "PUT", "/v1/connect/intentions/exact?source=web&destination=socat", {"Action": "allow"}),
        (dc1.servers[0].http, "PUT", "/v1/agent/service/register", socat),
        (dc2.servers[0].http, "PUT", "/v1/agent/service/register", web),
    ]


def send(base: str, method: str, path: str, body: Any, token: str = "") -> Any:
    """The decoded JSON answer (None for an empty one)."""
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method)
    if token:
        request.add_header("X-Consul-Token", token)
    with urllib.request.urlopen(request, timeout=15) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def echoes(host: str, port: int, payload: bytes = b"hello") -> bool:
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            conn.sendall(payload)
            received = b""
            while len(received) < len(payload) and (chunk := conn.recv(1024)):
                received += chunk
            return received == payload
    except OSError:
        return False


def wait_for_echo(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if echoes(host, port):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no echo through {host}:{port} within {timeout:.0f}s")


def retrying_send(calls: Sequence[tuple[str, str, str, dict[str, Any]]], token: str = "", timeout: float = 30) -> Any:
    """Each write, retried while the DC settles (a 5xx or a refused connection right after start);
    returns the last call's answer."""
    answer = None
    for base, method, path, body in calls:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = send(base, method, path, body, token)
                break
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{method} {path} on {base}: {exc}") from None
                time.sleep(0.5)
    return answer
