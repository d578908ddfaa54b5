"""Config entries, intentions and CA roots across two federated datacenters (issue #4).

Writes are sent to the *secondary* on purpose: they must land in the primary (re-targeted through
the gateways) and come back to every DC by replication (connect-data §A.7, §B.2, §B.5, §C).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import consul
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshfed.server.cli.launcher import (
    FederatedDatacenter,
    ServerProcess,
    wait_for_leader,
)

from .conftest import running_federation
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
    with running_federation(str(tmp_path_factory.mktemp("connect"))) as dcs:
        yield dcs


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


def _certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def _uri(cert: x509.Certificate) -> str:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (uri,) = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uri


def test_leaf_certificates_chain_to_the_shared_root_in_both_dcs_and_renew_on_rotation(
        fed: list[FederatedDatacenter]) -> None:
    """mesh-dataplane §2: the answering server makes the key, its leader signs the CSR; a secondary
    appends its intermediate; a blocking caller wakes with a new leaf when the root rotates."""
    dc1, dc2 = fed
    roots = http(dc1.servers[0], "GET", "/v1/agent/connect/ca/roots").json()
    trust_domain = roots["TrustDomain"]
    root = next(r for r in roots["Roots"] if r["Active"])
    root_cert = x509.load_pem_x509_certificate(root["RootCert"].encode())
    follower = next(s for s in dc1.servers if s is not leader_of(dc1))

    first = http(follower, "GET", "/v1/agent/connect/ca/leaf/web")
    assert first.status_code == 200, first.text
    assert first.headers["X-Cache"] == "MISS"
    leaf = first.json()
    (cert,) = _certs(leaf["CertPEM"])
    cert.verify_directly_issued_by(root_cert)
    assert _uri(cert) == leaf["ServiceURI"] == f"spiffe://{trust_domain}/ns/default/dc/dc1/svc/web"
    key = serialization.load_pem_private_key(leaf["PrivateKeyPEM"].encode(), password=None)
    assert key.public_key() == cert.public_key() and key.key_size == root["PrivateKeyBits"]  # follows the CA
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 72 * 3600 <= lifetime.total_seconds() <= 72 * 3600 + 120  # 72 h, plus the one-minute backdate
    assert leaf["SerialNumber"].count(":") >= 1 and leaf["Service"] == "web"
    again = http(follower, "GET", "/v1/agent/connect/ca/leaf/web")
    assert again.headers["X-Cache"] == "HIT" and again.json()["SerialNumber"] == leaf["SerialNumber"]

    secondary = http(dc2.servers[1], "GET", "/v1/agent/connect/ca/leaf/api")
    assert secondary.status_code == 200, secondary.text
    leaf2, intermediate = _certs(secondary.json()["CertPEM"])
    leaf2.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root_cert)
    assert _uri(leaf2) == f"spiffe://{trust_domain}/ns/default/dc/dc2/svc/api"

    assert http(follower, "GET", "/v1/agent/connect/ca/leaf/no%20spaces").status_code == 400

    # A caller blocking on the leaf it holds wakes when the root rotates, with a leaf of the new root.
    index = int(first.headers["X-Consul-Index"])
    answer: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: answer.update(
        response=S.get(f"{follower.http}/v1/agent/connect/ca/leaf/web?index={index}&wait=30s", timeout=40)))
    waiter.start()
    time.sleep(0.5)
    c1 = consul.Consul(host=dc1.servers[0].address, port=8500)
    configuration = c1.connect.ca.configuration()["Config"]
    new_bits = 256 if configuration["PrivateKeyBits"] != 256 else 384
    c1.connect.ca.update_configuration("consul", {**configuration, "PrivateKeyBits": new_bits})
    started = time.monotonic()
    waiter.join(40)
    assert time.monotonic() - started < 20, "the blocking leaf query did not wake on the rotation"
    renewed = answer["response"]
    assert renewed.status_code == 200 and int(renewed.headers["X-Consul-Index"]) > index
    new_root = next(r for r in c1.connect.ca.roots()["Roots"] if r["Active"])
    (renewed_cert,) = _certs(renewed.json()["CertPEM"])
    renewed_cert.verify_directly_issued_by(x509.load_pem_x509_certificate(new_root["RootCert"].encode()))


def test_leaf_signing_is_rate_limited_with_consuls_429(fed: list[FederatedDatacenter]) -> None:
    dc1, _ = fed
    c1 = consul.Consul(host=dc1.servers[0].address, port=8500)
    configuration = c1.connect.ca.configuration()["Config"]
    c1.connect.ca.update_configuration("consul", {**configuration, "CSRMaxPerSecond": 0.01})
    try:
        statuses = [http(dc1.servers[0], "GET", f"/v1/agent/connect/ca/leaf/burst{n}") for n in range(3)]
        assert [r.status_code for r in statuses] == [200, 429, 429]
        assert statuses[1].text == "Rate limit reached, try again later"
    finally:
        c1.connect.ca.update_configuration("consul", {**configuration, "CSRMaxPerSecond": 50})


def test_connect_authorize_decides_by_intentions_with_consuls_reasons(fed: list[FederatedDatacenter]) -> None:
    """mesh-dataplane §3, asked in the secondary as a dc2 proxy would; the intention is written in dc1."""
    dc1, dc2 = fed
    trust_domain = http(dc1.servers[0], "GET", "/v1/agent/connect/ca/roots").json()["TrustDomain"]
    web = f"spiffe://{trust_domain}/ns/default/dc/dc2/svc/web"
    assert http(dc1.servers[0], "PUT", "/v1/connect/intentions/exact?source=web&destination=billing",
                {"Action": "deny"}).status_code == 200

    def ask(body: dict[str, Any]) -> requests.Response:
        return http(dc2.servers[2], "POST", "/v1/agent/connect/authorize", body)

    def denied() -> bool:
        return ask({"Target": "billing", "ClientCertURI": web}).json()["Authorized"] is False

    wait_until(denied, 30, interval=0.3, what="dc2 applies dc1's deny intention")
    reason = ask({"Target": "billing", "ClientCertURI": web}).json()["Reason"]
    assert reason.startswith("Matched L4 intention: default/web => default/billing (ID: ")
    assert ask({"Target": "ledger", "ClientCertURI": web}).json() == {
        "Authorized": True, "Reason": "Default behavior configured by ACLs"}
    bad = {
        "Target service must be specified": {"ClientCertURI": web},
        "ClientCertURI not a valid Connect identifier": {"Target": "billing", "ClientCertURI": "https://x"},
        "ClientCertURI not a valid Service identifier": {
            "Target": "billing", "ClientCertURI": f"spiffe://{trust_domain}/agent/client/dc/dc2/id/n1"},
    }
    for message, body in bad.items():
        response = ask(body)
        assert (response.status_code, response.text) == (400, message)


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
