"""`meshfed demo -peering` (issue #11 item 7): the cluster-peering walkthrough (reference
peering.md, connect-data.md §D) on two independent clusters of real processes.

cluster-01 (datacenter dc1, on <base>.x) and cluster-02 (dc2, on <base+1>.x) share nothing: each
is its own primary with its own TLS CA, Connect CA (trust domain), gossip key, ACL management
token and mesh gateway. cluster-01 runs `socat` (the echo service) and its sidecar; cluster-02
runs web's sidecar with the upstream `{DestinationPeer = "cluster-01", DestinationName = "socat"}`.
The walkthrough then does what an operator does: generate a token in cluster-01, establish with
it in cluster-02, export socat to cluster-02 and allow `web` from that peer with an intention;
web's bytes go web's sidecar -> cluster-02's gateway -> cluster-01's gateway -> socat's sidecar.
Both clusters peer through their mesh gateways (the `mesh` entry), so the servers' own calls take
the same path: cluster-02's leader -> its gateway -> cluster-01's gateway -> a cluster-01 server.

SERVERS_PER_CLUSTER servers each, as the federation demo's DCs (both clusters are up and peered
in about 11 s on 2 cores)."""

from __future__ import annotations

import os
import time
from typing import Any

from meshfed.server.cli import demo_acl, demo_mesh
from meshfed.server.cli.demo_steps import refuse_busy, start_gateway, start_mesh, start_servers
from meshfed.server.cli.launcher import (
    HTTP_PORT,
    ChildProcess,
    FederatedDatacenter,
    GatewayProcess,
    datacenter_servers,
    federation_files,
    get_json,
    processes_of,
)
from meshfed.server.config.loader import generate_key

SERVERS_PER_CLUSTER = 3
MESH_ENTRY = {"Kind": "mesh", "Name": "mesh", "Peering": {"PeerThroughMeshGateways": True}}
# Peer name -> (datacenter, the name the other cluster is known by there).
CLUSTERS = {"cluster-01": ("dc1", "cluster-02"), "cluster-02": ("dc2", "cluster-01")}


def independent_cluster(root: str, peer_name: str, base: str, acl: dict[str, Any]) -> FederatedDatacenter:
    """A cluster of its own under <root>/<peer_name> (its own CA there), with a gateway on <base>.10."""
    datacenter = CLUSTERS[peer_name][0]
    home = os.path.join(root, peer_name)
    servers = datacenter_servers(datacenter, base, home, generate_key(), count=SERVERS_PER_CLUSTER)
    configs = federation_files(home, datacenter, datacenter, [s.node for s in servers], [], acl, peering=True)
    for server, path in zip(servers, configs, strict=True):
        server.config_files.append(path)
    gateway = GatewayProcess(datacenter, f"{base}.10", [f"{s.address}:{HTTP_PORT}" for s in servers],
                             os.path.join(home, "gateway.log"))
    return FederatedDatacenter(datacenter, servers, gateway)


def registrations(c1: FederatedDatacenter, c2: FederatedDatacenter) -> tuple[dict[str, Any], dict[str, Any]]:
    """socat in cluster-01 and web in cluster-02 (agent API bodies), web's upstream through the peering."""
    socat_host, web_host = demo_mesh.app_host(c1), demo_mesh.app_host(c2)
    socat = {"ID": "socat", "Name": "socat", "Port": demo_mesh.ECHO_PORT, "Address": socat_host,
             "Connect": {"SidecarService": {"Proxy": {"LocalServiceAddress": socat_host,
                                                      "Config": {"bind_address": socat_host}}}}}
    web = {"Name": "web", "Port": 8080, "Address": web_host, "Connect": {"SidecarService": {"Proxy": {
        "Config": {"bind_address": web_host},
        "Upstreams": [{"DestinationPeer": "cluster-01", "DestinationName": "socat", "LocalBindAddress": web_host,
                       "LocalBindPort": demo_mesh.UPSTREAM_PORT}]}}}}
    return socat, web


def wait_active(dc: FederatedDatacenter, peer: str, token: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        try:
            status, _, body = get_json(f"{dc.servers[0].http}/v1/peering/{peer}", timeout=5, token=token)
            state = str((body or {}).get("State", "")) if status == 200 else f"HTTP {status}"
        except (OSError, ValueError) as exc:
            state = str(exc)
        if state == "ACTIVE":
            return
        time.sleep(0.25)
    raise TimeoutError(f"peering {peer} in {dc.name} not ACTIVE within {timeout:.0f}s (last: {state})")


def walkthrough(root: str, base: str, where: str, everything: list[ChildProcess]) -> None:
    """Returns once bytes echo through the peering; the caller runs until stopped."""
    prefix, _, third = base.rpartition(".")
    tokens = {name: demo_acl.DemoTokens() for name in CLUSTERS}
    c1, c2 = (independent_cluster(root, name, b, demo_acl.server_acl((CLUSTERS[name][0],), tokens[name])[
        CLUSTERS[name][0]]) for name, b in zip(CLUSTERS, (base, f"{prefix}.{int(third) + 1}"), strict=True))
    labels = {c1.name: f"cluster-01 ({c1.name})", c2.name: f"cluster-02 ({c2.name})"}
    mesh = demo_mesh.mesh_processes((c1, c2), root, {
        "socat": demo_acl.write_secret(root, "socat-token", tokens["cluster-01"].service("socat")),
        "web": demo_acl.write_secret(root, "web-token", tokens["cluster-02"].service("web"))})
    refuse_busy([*processes_of((c1, c2)), *mesh])
    everything += [*processes_of((c1, c2)), *mesh]
    management = {name: tokens[name].management for name in CLUSTERS}
    print(f"meshfed demo -peering: data, certificates, keys and logs in {root} ({where})")
    print(f"  two independent clusters of {SERVERS_PER_CLUSTER} servers each, each with its own TLS CA, Connect CA, "
          "gossip key, ACLs and mesh gateway")
    files = {name: demo_acl.write_secret(root, f"{name}-management-token", secret) for name, secret in management.items()}
    for name, path in files.items():
        print(f"  ACLs on, default deny; {name}'s management token is in {path} (mode 0600)")
    start_servers((c1, c2), labels)
    print("  creating the mesh-gateway and service tokens in each cluster (reference acl.md §8)")
    for name, dc, services in (("cluster-01", c1, ["socat"]), ("cluster-02", c2, ["web"])):
        demo_mesh.retrying_send(demo_acl.seed_calls([dc], tokens[name], services, replication=False), management[name])
    for name, dc in (("cluster-01", c1), ("cluster-02", c2)):
        start_gateway(root, dc, tokens[name].gateway(dc.name), labels[dc.name])
    socat, web = registrations(c1, c2)
    print("  registering socat with a sidecar in cluster-01, web's sidecar (upstream socat from peer cluster-01) "
          "in cluster-02")
    demo_mesh.retrying_send([(c1.servers[0].http, "PUT", "/v1/agent/service/register", socat)], management["cluster-01"])
    demo_mesh.retrying_send([(c2.servers[0].http, "PUT", "/v1/agent/service/register", web)], management["cluster-02"])
    print("  both clusters: mesh entry Peering.PeerThroughMeshGateways = true (servers talk only through the gateways)")
    for name, dc in (("cluster-01", c1), ("cluster-02", c2)):
        demo_mesh.retrying_send([(dc.servers[0].http, "PUT", "/v1/config", MESH_ENTRY)], management[name])
    print("  cluster-01: POST /v1/peering/token {PeerName: cluster-02} (it lists cluster-01's gateway)")
    answer = demo_mesh.retrying_send([(c1.servers[0].http, "POST", "/v1/peering/token", {"PeerName": "cluster-02"})],
                                     management["cluster-01"])
    print("  cluster-02: POST /v1/peering/establish {PeerName: cluster-01, PeeringToken: <the token>}")
    demo_mesh.retrying_send([(c2.servers[0].http, "POST", "/v1/peering/establish",
                              {"PeerName": "cluster-01", "PeeringToken": answer["PeeringToken"]})],
                            management["cluster-02"])
    wait_active(c1, "cluster-02", management["cluster-01"])
    wait_active(c2, "cluster-01", management["cluster-02"])
    print("  both clusters read the peering ACTIVE")
    print("  cluster-01: exported-services socat -> peer cluster-02; service-intentions socat: allow web from peer cluster-02")
    demo_mesh.retrying_send([
        (c1.servers[0].http, "PUT", "/v1/config", {"Kind": "exported-services", "Name": "default",
                                                   "Services": [{"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]}]}),
        (c1.servers[0].http, "PUT", "/v1/config", {"Kind": "service-intentions", "Name": "socat",
                                                   "Sources": [{"Name": "web", "Peer": "cluster-02", "Action": "allow"}]}),
    ], management["cluster-01"])
    web_host = demo_mesh.app_host(c2)
    start_mesh(mesh, web_host)
    print("peering is up: web (cluster-02) reaches socat (cluster-01) through both mesh gateways.")
    for name, dc in (("cluster-01", c1), ("cluster-02", c2)):
        print(f"  {labels[dc.name]}: HTTP API {dc.servers[0].http}   mesh gateway {dc.gateway.bind} "
              f"(metrics {dc.gateway.admin}/metrics)   token: export CONSUL_HTTP_TOKEN=$(cat {files[name]})")
    print(f"try: meshfed peering read -name cluster-01 -http-addr {c2.servers[0].http}   (with cluster-02's token)")
    print(f"try: curl -H \"X-Consul-Token: $(cat {files['cluster-02']})\" "
          f"'{c2.servers[0].http}/v1/health/connect/socat?peer=cluster-01'")
    print(f"try: nc {web_host} {demo_mesh.UPSTREAM_PORT}   (type a line: socat in cluster-01 echoes it back; "
          "Ctrl-C stops the demo)", flush=True)
