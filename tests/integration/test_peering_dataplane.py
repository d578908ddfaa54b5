"""Peered service traffic between two independent clusters (issue #11 step 4, peering.md §4, §7).

Two single-server clusters with their own TLS CA and their own Connect CA (different trust
domains), one mesh gateway each. cluster-01 exports socat (an echo service behind meshfed's
sidecar); web's sidecar in cluster-02 has the upstream `{DestinationPeer = "cluster-01"}`. Its
connection goes web's proxy -> cluster-02's gateway -> cluster-01's gateway -> socat's sidecar,
which verifies web's leaf against cluster-02's trust bundle and asks its servers, where only an
intention whose source names the peering admits it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from typing import Any

import requests

from meshfed.server.cli.launcher import GatewayProcess, MeshProcess
from tests.ports import local_port

from .harness import wait_until
from .test_dataplane import ECHO_PORT, echo_through, echoes, metric
from .test_federation import tcp_peers
from .test_peering import _tls_config, get, post

UPSTREAM_PORT = local_port(1)  # not test_dataplane's: the two files may run at once


def test_web_in_cluster_02_calls_socat_exported_by_cluster_01(make_dc: Any, tmp_path: Any) -> None:
    root = str(tmp_path)
    c1 = make_dc("dc1", count=1, config=_tls_config(root, "dc1"))
    c2 = make_dc("dc2", count=1, config={**_tls_config(root, "dc2"), "peering_stream_timeout": "3s"})
    started = time.monotonic()
    for server in (*c1.servers, *c2.servers):  # both clusters boot at once
        server.start()
    c1.wait_leader()
    c2.wait_leader()
    marks = {"leaders": time.monotonic() - started}
    s1, s2 = c1.servers[0], c2.servers[0]
    base1, base2 = s1.address.rsplit(".", 1)[0], s2.address.rsplit(".", 1)[0]
    app_host, web_host = f"{base1}.30", f"{base2}.30"
    processes = [
        GatewayProcess("dc1", f"{base1}.10", [f"{s1.address}:8500"], f"{root}/gw1.log"),
        GatewayProcess("dc2", f"{base2}.10", [f"{s2.address}:8500"], f"{root}/gw2.log"),
        MeshProcess("echo", ["echo", "-listen", f"{app_host}:{ECHO_PORT}"], f"{root}/echo.log"),
        MeshProcess("socat-proxy", ["proxy", "-sidecar-for", "socat", "-http-addr", f"{s1.address}:8500",
                                    "-admin-bind", f"{app_host}:19100"], f"{root}/socat-proxy.log"),
        MeshProcess("web-proxy", ["proxy", "-sidecar-for", "web", "-http-addr", f"{s2.address}:8500",
                                  "-admin-bind", f"{web_host}:19100"], f"{root}/web-proxy.log"),
    ]
    gw1, gw2 = processes[0], processes[1]
    try:
        socat = {"ID": "socat", "Name": "socat", "Port": ECHO_PORT, "Address": app_host, "Connect": {"SidecarService": {
            "Proxy": {"LocalServiceAddress": app_host, "Config": {"bind_address": app_host}}}}}
        web = {"Name": "web", "Port": 8080, "Address": web_host, "Connect": {"SidecarService": {"Proxy": {
            "Config": {"bind_address": web_host},
            "Upstreams": [{"DestinationPeer": "cluster-01", "DestinationName": "socat",
                           "LocalBindPort": UPSTREAM_PORT}]}}}}
        assert requests.put(s1.http + "/v1/agent/service/register", json=socat, timeout=10).status_code == 200
        assert requests.put(s2.http + "/v1/agent/service/register", json=web, timeout=10).status_code == 200
        # cluster-01 peers through its mesh gateway (peering.md §4): its token lists the gateway,
        # not servers; before a gateway is registered a token is refused and nothing is written.
        # cluster-02 too: once cluster-01's trust bundle (its server name, its gateways) reached
        # cluster-02's gateway, cluster-02's leader calls cluster-01 through that local gateway.
        mesh = {"Kind": "mesh", "Name": "mesh", "Peering": {"PeerThroughMeshGateways": True}}
        for server in (s1, s2):
            assert requests.put(server.http + "/v1/config", json=mesh, timeout=10).json() is True
        early = post(s1, "/v1/peering/token", {"PeerName": "cluster-02"})
        assert early.status_code == 400 and "no healthy mesh gateway" in early.text, early.text
        assert get(s1, "/v1/peerings").json() == []
        for process in processes:
            process.start()

        # The walkthrough: token in cluster-01, establish in cluster-02, export socat.
        answers: list[requests.Response] = []
        wait_until(lambda: answers.append(post(s1, "/v1/peering/token", {"PeerName": "cluster-02"}))
                   or answers[-1].status_code == 200, 20, interval=0.3, what="a token listing cluster-01's gateway")
        token = answers[-1].json()["PeeringToken"]
        assert json.loads(base64.b64decode(token))["ServerAddresses"] == [gw1.bind]
        established = post(s2, "/v1/peering/establish", {"PeerName": "cluster-01", "PeeringToken": token})
        assert established.status_code == 200, established.text
        entry = {"Kind": "exported-services", "Name": "default",
                 "Services": [{"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]}]}
        assert requests.put(s1.http + "/v1/config", json=entry, timeout=10).json() is True

        # Each side learns the other's gateways with its roots (shown as PeerServerAddresses on
        # the acceptor, which has no server addresses of the dialer).
        wait_until(lambda: get(s1, "/v1/peering/cluster-02").json().get("PeerServerAddresses") == [gw2.bind], 20,
                   what="cluster-02's gateway known in cluster-01")
        wait_until(lambda: [b["MeshGateways"] for b in get(s2, "/v1/internal/peering/trust-bundles").json()]
                   == [[gw1.bind]], 20, what="cluster-01's gateway known in cluster-02")
        # The exporter's synthetic sidecar set: its gateway, with the SNI a peer's proxy dials.
        def peered_sidecars() -> list[tuple[str, str]]:
            rows = get(s2, "/v1/health/connect/socat?peer=cluster-01").json()
            return [(f"{r['Service']['Address']}:{r['Service']['Port']}", r["Service"]["PeerName"],
                     *r["Service"]["Connect"]["PeerMeta"]["SNI"]) for r in rows]

        wait_until(lambda: [row[:2] for row in peered_sidecars()] == [(gw1.bind, "cluster-01")], 20,
                   what="socat's sidecar set at cluster-01's gateway, imported in cluster-02")
        assert peered_sidecars()[0][2].startswith("socat.default.default.cluster-02.external.")
        assert get(s2, "/v1/peering/cluster-01").json()["StreamStatus"]["ImportedServices"] == ["socat"]

        # An intention naming a peering that does not exist is refused.
        bad = {"Kind": "service-intentions", "Name": "socat",
               "Sources": [{"Name": "web", "Peer": "cluster-09", "Action": "allow"}]}
        refused = requests.put(s1.http + "/v1/config", json=bad, timeout=10)
        assert refused.status_code == 400 and "Sources[0].Peer" in refused.text, refused.text

        # No intention: the caller reaches socat's sidecar (through both gateways) and is denied
        # there, although the cluster's default allows local callers.
        socat_admin = f"{app_host}:19100"

        def denied_once() -> bool:
            echoes(UPSTREAM_PORT)
            return metric(socat_admin, 'meshfed_proxy_authorizations_total{decision="deny"}') >= 1

        marks["peered"] = time.monotonic() - started
        wait_until(denied_once, 30, interval=0.5, what="web's connection denied at socat's sidecar")
        marks["denied"] = time.monotonic() - started
        assert not echoes(UPSTREAM_PORT)

        allow = {"Kind": "service-intentions", "Name": "socat",
                 "Sources": [{"Name": "web", "Peer": "cluster-02", "Action": "allow"}]}
        assert requests.put(s1.http + "/v1/config", json=allow, timeout=10).json() is True
        wait_until(lambda: echoes(UPSTREAM_PORT), 15, interval=0.3, what="bytes echoed from cluster-01")
        marks["allowed"] = time.monotonic() - started
        print("seconds since start:", {k: round(v, 1) for k, v in marks.items()})
        assert echo_through(UPSTREAM_PORT, b"x" * 100_000) == b"x" * 100_000

        # The path: web's proxy holds a connection to its own gateway only; each gateway counted
        # its route (cluster-02's towards the peer, cluster-01's to socat's sidecar).
        with socket.create_connection(("127.0.0.1", UPSTREAM_PORT), timeout=5) as held:
            held.sendall(b"ping")
            assert held.recv(4) == b"ping"
            peers = tcp_peers(processes[4].process.pid)
            assert (gw2.address, gw2.port) in peers
            assert not any(host.startswith(base1 + ".") for host, _ in peers)
        assert 'route="peer-remote:cluster-02"' in requests.get(gw2.admin + "/metrics", timeout=5).text

        # Control plane through both gateways: cluster-02's server calls its own gateway (which
        # routes cluster-01's server name to cluster-01's gateway, which routes it to a server)
        # and holds no connection to cluster-01's server, which holds none from cluster-02's.
        wait_until(lambda: "peer-server:server.dc1.consul" in requests.get(gw2.admin + "/metrics", timeout=5).text,
                   15, interval=0.3, what="cluster-02's calls to cluster-01 through its own gateway")
        dialer_peers = tcp_peers(s2.process.pid)
        assert (gw2.address, gw2.port) in dialer_peers, dialer_peers
        assert not any(host == s1.address for host, _ in dialer_peers), dialer_peers
        assert not any(host == s2.address for host, _ in tcp_peers(s1.process.pid))
        assert 'route="local:any"' in requests.get(gw1.admin + "/metrics", timeout=5).text
        assert 'route="service:socat"' in requests.get(gw1.admin + "/metrics", timeout=5).text

        # Stream status: cluster-01 goes silent -> cluster-02 reads FAILING past its (3 s) timeout,
        # ACTIVE again once cluster-01 answers; the heartbeat age is a metric per peering.
        status = get(s2, "/v1/peering/cluster-01").json()
        assert status["State"] == "ACTIVE" and status["StreamStatus"]["LastHeartbeat"], status
        s1.stop()
        wait_until(lambda: get(s2, "/v1/peering/cluster-01").json()["State"] == "FAILING", 15,
                   what="cluster-02's peering FAILING while cluster-01 is down")
        metrics = get(s2, "/v1/agent/metrics?format=prometheus").text
        age = next(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith('meshfed_peering_heartbeat_age_seconds{peer="cluster-01"}'))
        assert age > 3.0
        s1.start()
        wait_until(lambda: get(s2, "/v1/peering/cluster-01").json()["State"] == "ACTIVE", 30,
                   what="cluster-02's peering ACTIVE again")
    finally:
        # Proxies first, then the servers (whose peering calls go through the gateways): a gateway
        # then has no connection to drain and stops at once.
        for process in reversed(processes):
            if process is gw2:
                c2.stop()
                c1.stop()
            if os.environ.get("MESHFED_KEEP_LOGS") or not process.alive():
                print(f"--- {getattr(process, 'name', '') or getattr(process, 'node', '')} ---\n{process.log_tail(40)}")
            process.stop()


def test_two_clusters_both_named_dc1_peer_through_their_gateways(tmp_path: Any) -> None:
    """Independent clusters often keep Consul's default datacenter name. Our gateway never routes
    our own DC's server name to a peer, so the dialer's leader calls the peer's gateway directly
    (server/peering/mesh.py dial_addresses); servers still never connect to each other."""
    from .conftest import next_block
    from .harness import Datacenter

    clusters, gateways = [], []
    for label in ("c1", "c2"):
        root = str(tmp_path / label)
        os.makedirs(root)
        clusters.append(Datacenter("dc1", f"127.0.{next_block()}", root, count=1,
                                   config={**_tls_config(root, "dc1"), "peering_stream_timeout": "5s"}))
    try:
        for dc in clusters:
            dc.start()
        s1, s2 = clusters[0].servers[0], clusters[1].servers[0]
        for dc, server in zip(clusters, (s1, s2), strict=True):
            base = server.address.rsplit(".", 1)[0]
            gateways.append(GatewayProcess("dc1", f"{base}.10", [f"{server.address}:8500"],
                                           f"{tmp_path}/{dc.servers[0].address}-gw.log"))
            gateways[-1].start()
            mesh = {"Kind": "mesh", "Name": "mesh", "Peering": {"PeerThroughMeshGateways": True}}
            assert requests.put(server.http + "/v1/config", json=mesh, timeout=10).json() is True
        answers: list[requests.Response] = []
        wait_until(lambda: answers.append(post(s1, "/v1/peering/token", {"PeerName": "cluster-02"}))
                   or answers[-1].status_code == 200, 20, interval=0.3, what="a token listing cluster-01's gateway")
        established = post(s2, "/v1/peering/establish", {"PeerName": "cluster-01",
                                                         "PeeringToken": answers[-1].json()["PeeringToken"]})
        assert established.status_code == 200, established.text
        requests.put(s1.http + "/v1/catalog/register", timeout=10, json={
            "Node": "box", "Address": "10.0.0.5", "Service": {"Service": "socat", "Port": 5000}})
        entry = {"Kind": "exported-services", "Name": "default",
                 "Services": [{"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]}]}
        assert requests.put(s1.http + "/v1/config", json=entry, timeout=10).json() is True

        wait_until(lambda: [r["Node"]["Node"] for r in get(s2, "/v1/health/service/socat?peer=cluster-01").json()]
                   == ["box"], 20, what="socat imported by the other dc1")
        assert get(s2, "/v1/peering/cluster-01").json()["State"] == "ACTIVE"
        assert not any(host == s1.address for host, _ in tcp_peers(s2.process.pid))
        assert (gateways[0].address, gateways[0].port) in tcp_peers(s2.process.pid)
    finally:
        for process in gateways:
            process.stop()
        for dc in clusters:
            dc.stop()
