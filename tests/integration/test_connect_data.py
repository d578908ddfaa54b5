"""Config entries, intentions and CA roots across two federated datacenters (issue #4).

Writes are sent to the *secondary* on purpose: they must land in the primary (re-targeted through
the gateways) and come back to every DC by replication (connect-data §A.7, §B.2, §B.5, §C).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import consul
import pytest
import requests
from cryptography import x509

from meshfed.server.cli.launcher import (
    FederatedDatacenter,
    ServerProcess,
    federated_datacenters,
    processes_of,
    start_federation,
    wait_for_leader,
)

from .conftest import next_block
from .harness import wait_until

S = requests.Session()


def http(server: ServerProcess, method: str, path: str, body: Any = None) -> requests.Response:
    return S.request(method, server.http + path, json=body, timeout=15)


def leader_of(dc: FederatedDatacenter) -> ServerProcess:
    live = next(s for s in dc.servers if s.alive())
    address = http(live, "GET", "/v1/status/leader").json()
    for server in dc.servers:
        if server.rpc_address == address:
            return server
    raise ValueError(f"{dc.name} has no leader")


def cli(server: ServerProcess, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", *args, "-http-addr", f"{server.address}:8500"],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[FederatedDatacenter]]:
    root = str(tmp_path_factory.mktemp("connect"))
    dcs = federated_datacenters(root, [f"127.0.{next_block()}", f"127.0.{next_block()}"])
    processes: list[Any] = processes_of(dcs)
    try:
        start_federation(dcs, timeout=60)
        yield dcs
    finally:
        for process in processes:
            if os.environ.get("MESHFED_KEEP_LOGS") or not process.alive():
                print(f"--- {getattr(process, 'node', '') or process.datacenter} ---\n{process.log_tail(60)}")
            process.stop()


def test_config_entries_written_in_the_secondary_land_in_the_primary_and_replicate(fed: list[FederatedDatacenter],
                                                                                  tmp_path: Any) -> None:
    dc1, dc2 = fed
    c2 = consul.Consul(host=dc2.servers[1].address, port=8500)
    assert c2.config.set("proxy-defaults", "global", {"Config": {"protocol": "http"}, "MeshGateway": {"Mode": "remote"}}) is True
    primary = http(leader_of(dc1), "GET", "/v1/config/proxy-defaults/global")
    assert primary.status_code == 200 and primary.json()["MeshGateway"] == {"Mode": "remote"}
    for server in dc2.servers:
        wait_until(lambda s=server: http(s, "GET", "/v1/config/proxy-defaults/global?stale").status_code == 200, 15,
                   interval=0.2, what=f"proxy-defaults replicated to {server.node}")

    # HCL through the CLI, as Consul users write it
    hcl = tmp_path / "web.hcl"
    hcl.write_text('Kind = "service-defaults"\nName = "web"\nProtocol = "http"\nMeshGateway {\n  Mode = "local"\n}\n')
    result = cli(dc2.servers[0], "config", "write", str(hcl))
    assert result.returncode == 0, result.stderr
    assert "service-defaults/web" in result.stdout
    wait_until(lambda: "web" in cli(dc2.servers[2], "config", "list", "-kind", "service-defaults").stdout, 15,
               interval=0.3, what="service-defaults replicated")
    read = cli(dc1.servers[0], "config", "read", "-kind", "service-defaults", "-name", "web")
    assert '"Mode": "local"' in read.stdout

    # py-consul get/list/delete, CAS, and a refused entry naming its field
    assert c2.config.get("service-defaults", "web")["Protocol"] == "http"
    assert [e["Name"] for e in c2.config.list("service-defaults")] == ["web"]
    bad = http(dc2.servers[0], "PUT", "/v1/config",
               {"Kind": "service-defaults", "Name": "x", "MeshGateway": {"Mode": "nearest"}})
    assert bad.status_code == 400 and "MeshGateway.Mode" in bad.text
    stale_cas = http(dc2.servers[0], "PUT", "/v1/config?cas=1", {"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"})
    assert stale_cas.status_code == 200 and stale_cas.json() is False
    assert c2.config.delete("service-defaults", "web") is True
    for server in dc2.servers:
        wait_until(lambda s=server: http(s, "GET", "/v1/config/service-defaults/web?stale").status_code == 404, 15,
                   interval=0.2, what="deletion replicated")

    mode = http(dc2.servers[0], "GET", "/v1/internal/mesh-gateway-mode?service=web&upstream=api&upstream-datacenter=dc1")
    assert mode.json()["Mode"] == "remote" and mode.json()["Source"] == "proxy-defaults"


def test_intentions_through_py_consul_and_cli_in_both_dcs(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed
    c2 = consul.Consul(host=dc2.servers[0].address, port=8500)
    assert c2.connect.intentions.upsert("web", "db", action="deny") is True
    created = cli(dc2.servers[1], "intention", "create", "web", "socat")
    assert created.returncode == 0 and "Created: web => socat (allow)" in created.stdout, created.stderr
    for dc in fed:
        for server in dc.servers:
            wait_until(lambda s=server: len(http(s, "GET", "/v1/connect/intentions?stale").json()) == 2, 15,
                       interval=0.2, what=f"intentions on {server.node}")
    assert cli(dc1.servers[2], "intention", "check", "web", "socat").returncode == 0
    denied = cli(dc2.servers[2], "intention", "check", "web", "db")
    assert denied.returncode == 2 and "Denied" in denied.stdout
    matched = http(dc1.servers[0], "GET", "/v1/connect/intentions/match?by=source&name=web").json()
    assert [i["DestinationName"] for i in matched["web"]] == ["db", "socat"]
    assert all(i["Precedence"] == 9 for i in matched["web"])

    legacy = http(dc2.servers[0], "POST", "/v1/connect/intentions",
                  {"SourceName": "api", "DestinationName": "cache", "Action": "allow", "SourceType": "consul"})
    assert legacy.status_code == 200, legacy.text
    intention_id = legacy.json()["ID"]
    wait_until(lambda: http(dc2.servers[1], "GET", f"/v1/connect/intentions/{intention_id}?stale").status_code == 200,
               15, what="legacy intention replicated")
    assert http(dc1.servers[0], "GET", f"/v1/connect/intentions/{intention_id}").json()["SourceName"] == "api"
    refused = http(dc2.servers[0], "PUT", "/v1/connect/intentions/exact?source=web&destination=db", {"Action": "perhaps"})
    assert refused.status_code == 400 and "Action" in refused.text

    assert cli(dc2.servers[0], "intention", "delete", "web", "socat").returncode == 0
    assert http(dc2.servers[0], "DELETE", f"/v1/connect/intentions/{intention_id}").json() is True
    wait_until(lambda: [i["DestinationName"] for i in http(dc2.servers[2], "GET", "/v1/connect/intentions?stale").json()]
               == ["db"], 15, what="deletions replicated")


def test_ca_roots_bootstrapped_in_the_primary_with_an_intermediate_per_secondary(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed
    c1 = consul.Consul(host=dc1.servers[0].address, port=8500)
    roots1 = c1.connect.ca.roots()
    assert roots1["TrustDomain"].endswith(".consul") and len(roots1["Roots"]) == 1
    root = roots1["Roots"][0]
    assert root["Active"] and root["ID"] == roots1["ActiveRootID"]
    root_cert = x509.load_pem_x509_certificate(root["RootCert"].encode())
    uris = root_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{roots1['TrustDomain']}"]
    assert all("SigningKey" not in r for r in roots1["Roots"])

    def dc2_roots() -> dict[str, Any]:
        return http(dc2.servers[0], "GET", "/v1/connect/ca/roots?stale").json()

    wait_until(lambda: (dc2_roots().get("Roots") or [{}])[0].get("IntermediateCerts"), 30, interval=0.3,
               what="dc2's intermediate")
    roots2 = dc2_roots()
    assert roots2["TrustDomain"] == roots1["TrustDomain"] and roots2["ActiveRootID"] == roots1["ActiveRootID"]
    intermediate = x509.load_pem_x509_certificate(roots2["Roots"][0]["IntermediateCerts"][-1].encode())
    intermediate.verify_directly_issued_by(root_cert)

    # rotation by configuration (key type change): the old root stays listed, inactive
    configuration = c1.connect.ca.configuration()
    assert configuration["Provider"] == "consul"
    c1.connect.ca.update_configuration("consul", {**configuration["Config"], "PrivateKeyType": "ec", "PrivateKeyBits": 384})
    rotated = c1.connect.ca.roots()
    assert len(rotated["Roots"]) == 2 and rotated["ActiveRootID"] != roots1["ActiveRootID"]
    assert [r["Active"] for r in rotated["Roots"] if r["ID"] == roots1["ActiveRootID"]] == [False]
    wait_until(lambda: dc2_roots()["ActiveRootID"] == rotated["ActiveRootID"], 30, interval=0.3,
               what="dc2 follows the rotation with a new intermediate")


def test_replication_status_lists_every_type_and_an_election_rewrites_nothing(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed
    http(dc2.servers[0], "PUT", "/v1/config", {"Kind": "service-defaults", "Name": "api", "Protocol": "grpc"})
    wait_until(lambda: http(dc2.servers[1], "GET", "/v1/config/service-defaults/api?stale").status_code == 200, 15,
               what="entry replicated")
    types = {t["Type"]: t for t in http(leader_of(dc2), "GET", "/v1/internal/replication").json()["Types"]}
    assert set(types) >= {"federation_state", "config_entry", "ca_roots"}
    assert all(t["Running"] for t in types.values())

    index_before = http(dc2.servers[0], "GET", "/v1/config/service-defaults?stale").headers["X-Consul-Index"]
    old = leader_of(dc2)
    old.kill()
    wait_until(lambda: leader_of(dc2) is not old, 10, what="new dc2 leader")
    new = leader_of(dc2)

    def config_status() -> dict[str, Any]:
        return {t["Type"]: t for t in http(new, "GET", "/v1/internal/replication").json()["Types"]}["config_entry"]

    wait_until(lambda: config_status()["Rounds"] >= 1, 30, interval=0.3, what="config replication resumed")
    assert config_status()["Applies"] == 0, "a new leader rewrote unchanged config entries"
    assert http(new, "GET", "/v1/config/service-defaults?stale").headers["X-Consul-Index"] == index_before
    old.start()
    wait_for_leader(dc2.servers, timeout=30)
