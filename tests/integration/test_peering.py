"""Cluster peering between two independent clusters (issue #11, connect-data.md §D).

Each cluster is its own primary with its own TLS CA; cluster-01 accepts, cluster-02 dials. The
dialer's leader verifies the acceptor's gRPC certificate against the CA carried in the token
(cluster-02's own CA would refuse it), spends the establishment secret once, then holds the
peering stream, over which each side imports what the other exports to it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import requests

from meshfed.rpc.tls import create_ca, create_server_cert

from .harness import Datacenter, wait_until


def _tls_config(root: str, datacenter: str) -> dict[str, Any]:
    """A CA of this cluster's own; servers verify peers' certificates only when dialing (a peer
    cluster holds no certificate from our CA)."""
    directory = os.path.join(root, f"tls-{datacenter}")
    os.makedirs(directory)
    ca = create_ca(directory)
    cert = create_server_cert(directory, ca, datacenter)
    return {
        "connect": {"enabled": True},
        "tls": {"defaults": {"ca_file": ca.cert_file, "cert_file": cert.cert_file, "key_file": cert.key_file,
                             "verify_incoming": False, "verify_outgoing": True}},
    }


def post(server: Any, path: str, body: Any) -> requests.Response:
    return requests.post(server.http + path, json=body, timeout=15)


def get(server: Any, path: str) -> requests.Response:
    return requests.get(server.http + path, timeout=10)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", "peering", *args],
                          capture_output=True, text=True, timeout=60)


def test_token_establish_export_import_delete(make_dc: Any, tmp_path: Any) -> None:
    acceptor: Datacenter = make_dc("dc1", count=3, config=_tls_config(str(tmp_path), "dc1"))
    dialer: Datacenter = make_dc("dc2", count=1, config=_tls_config(str(tmp_path), "dc2"))
    acceptor.start()
    dialer.start()
    a_follower, b_server = acceptor.followers()[0], dialer.servers[0]

    # Bad requests name the field, nothing is written.
    assert post(a_follower, "/v1/peering/token", {}).text.startswith("PeerName is required")
    bad = post(a_follower, "/v1/peering/token", {"PeerName": "Cluster_02"})
    assert bad.status_code == 400 and "is not a valid peer name" in bad.text
    truncated = post(b_server, "/v1/peering/establish", {"PeerName": "cluster-01", "PeeringToken": "eyJD"})
    assert truncated.status_code == 400 and "PeeringToken" in truncated.text
    assert get(b_server, "/v1/peerings").json() == []

    # 1. Generate on a follower (forwarded to the leader); a second token invalidates the first.
    first = post(a_follower, "/v1/peering/token", {"PeerName": "cluster-02"})
    assert first.status_code == 200, first.text
    generated = cli("generate-token", "-name", "cluster-02", "-http-addr", a_follower.http)
    assert generated.returncode == 0, generated.stderr
    second = generated.stdout.strip()
    decoded = json.loads(base64.b64decode(second))
    assert decoded["ServerName"] == "server.dc1.consul" and decoded["CA"][0].startswith("-----BEGIN CERTIFICATE")
    assert sorted(decoded["ServerAddresses"]) == sorted(s.rpc_address for s in acceptor.servers)
    assert get(a_follower, "/v1/peering/cluster-02").json()["State"] == "PENDING"

    stale = post(b_server, "/v1/peering/establish",
                 {"PeerName": "cluster-01", "PeeringToken": first.json()["PeeringToken"]})
    assert stale.status_code == 403, stale.text
    assert "invalid peering establishment secret" in stale.text

    # A token whose CA is not the one that signed the acceptor's certificate cannot establish.
    os.makedirs(tmp_path / "other-ca")
    other_ca = create_ca(str(tmp_path / "other-ca"))
    forged = dict(decoded, CA=[open(other_ca.cert_file).read()])
    refused = post(b_server, "/v1/peering/establish", {
        "PeerName": "cluster-01", "PeeringToken": base64.b64encode(json.dumps(forged).encode()).decode()})
    assert refused.status_code == 503 and "could not reach the peer's servers" in refused.text, refused.text
    assert get(b_server, "/v1/peering/cluster-01").json()["State"] == "PENDING"  # written, not established

    # 2. Establish once: both sides ACTIVE; the same token again is refused.
    ok = cli("establish", "-name", "cluster-01", "-peering-token", second, "-http-addr", b_server.http)
    assert ok.stdout.strip() == "Successfully established peering connection with cluster-01", ok.stderr
    again = post(b_server, "/v1/peering/establish", {"PeerName": "cluster-01", "PeeringToken": second})
    assert again.status_code == 403 and "a new peering token must be generated" in again.text
    b_row = get(b_server, "/v1/peering/cluster-01").json()
    assert b_row["State"] == "ACTIVE" and b_row["PeerID"] == decoded["PeerID"]
    assert b_row["PeerServerName"] == "server.dc1.consul" and b_row["Remote"]["Datacenter"] == "dc1"
    wait_until(lambda: all(get(s, "/v1/peering/cluster-02").json()["State"] == "ACTIVE" for s in acceptor.servers),
               10, what="the acceptor's row ACTIVE on every server")

    # 3. Export a service from cluster-01; cluster-02 reads it with ?peer= and only then.
    reg = requests.put(acceptor.leader().http + "/v1/catalog/register", json={
        "Node": "box1", "Address": "10.1.1.1", "Service": {"Service": "socat", "Port": 5000}}, timeout=10)
    assert reg.status_code == 200, reg.text
    entry = {"Kind": "exported-services", "Name": "default",
             "Services": [{"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]}]}
    assert requests.put(a_follower.http + "/v1/config", json=entry, timeout=10).json() is True

    def imported() -> list[dict[str, Any]]:
        return get(b_server, "/v1/health/service/socat?peer=cluster-01").json()

    rows = wait_until(imported, 15, what="socat imported into cluster-02")
    assert [(r["Node"]["Node"], r["Service"]["Port"], r["Service"]["PeerName"]) for r in rows] == \
        [("box1", 5000, "cluster-01")]
    assert get(b_server, "/v1/health/service/socat").json() == []  # never mixed into local answers
    assert get(b_server, "/v1/health/service/socat?peer=nope").json() == []
    assert get(b_server, "/v1/catalog/services?peer=cluster-01").json() == {"socat": []}
    assert "socat" not in get(b_server, "/v1/catalog/services").json()
    assert get(b_server, "/v1/peering/cluster-01").json()["StreamStatus"]["ImportedServices"] == ["socat"]
    listed = cli("list", "-http-addr", b_server.http)
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[:4] == ["cluster-01", "ACTIVE", "1", "0"]
    shown = cli("read", "-name", "cluster-01", "-http-addr", b_server.http)
    assert "State: ACTIVE" in shown.stdout and "Imported Services: socat" in shown.stdout, shown.stderr
    assert get(a_follower, "/v1/peering/cluster-02").json()["StreamStatus"]["ExportedServices"] == ["socat"]

    # The stream runs both ways: the acceptor imports what the dialer exports to it (through any
    # acceptor server: the stream is held by the acceptor's leader, reads forward there).
    assert requests.put(b_server.http + "/v1/catalog/register", json={
        "Node": "web1", "Address": "10.2.2.2", "Service": {"Service": "web", "Port": 8080}}, timeout=10).ok
    assert requests.put(b_server.http + "/v1/config", json={
        "Kind": "exported-services", "Name": "default",
        "Services": [{"Name": "web", "Consumers": [{"Peer": "cluster-01"}]}]}, timeout=10).json() is True
    rows = wait_until(lambda: get(a_follower, "/v1/health/service/web?peer=cluster-02").json(), 10,
                      what="web imported into cluster-01")
    assert [(r["Node"]["Node"], r["Service"]["PeerName"]) for r in rows] == [("web1", "cluster-02")]
    assert get(a_follower, "/v1/peering/cluster-02").json()["StreamStatus"]["ImportedServices"] == ["web"]

    # Each side holds the other's Connect roots (the stream carries both halves), and both
    # leaders' stream status is live.
    def bundle_of(server: Any) -> dict[str, Any]:
        bundles = get(server, "/v1/internal/peering/trust-bundles").json()
        return bundles[0] if bundles else {}

    a_roots = get(acceptor.leader(), "/v1/connect/ca/roots").json()
    b_roots = get(b_server, "/v1/connect/ca/roots").json()
    assert a_roots["TrustDomain"] != b_roots["TrustDomain"]  # two independent CAs
    b_bundle = wait_until(lambda: bundle_of(b_server), 10, what="the acceptor's bundle on the dialer")
    assert b_bundle["TrustDomain"] == a_roots["TrustDomain"] and b_bundle["RemotePeerName"] == "cluster-02"
    assert b_bundle["RootPEMs"] == [r["RootCert"] for r in a_roots["Roots"]]
    a_bundle = wait_until(lambda: bundle_of(a_follower), 10, what="the dialer's bundle on the acceptor")
    assert a_bundle["TrustDomain"] == b_roots["TrustDomain"] and a_bundle["PeerName"] == "cluster-02"
    b_view = get(b_server, "/v1/peering/cluster-01").json()
    assert b_view["PeerCAPems"] == [decoded["CA"][0], *b_bundle["RootPEMs"]]
    a_view = get(acceptor.leader(), "/v1/peering/cluster-02").json()
    assert a_view["PeerCAPems"] == a_bundle["RootPEMs"]
    for view in (a_view, b_view):
        assert all(view["StreamStatus"][k] for k in ("LastHeartbeat", "LastReceive", "LastSend")), view

    # The imports are state: they survive a restart of the importing cluster.
    b_server.stop()
    b_server.start()
    dialer.wait_leader()
    assert [r["Node"]["Node"] for r in imported()] == ["box1"]

    # The acceptor's leader goes away: the dialer's stream is redialed (a follower relays it to the
    # new leader), and a new
    # instance registered under the new leader shows on the other side.
    old_leader = acceptor.leader()
    old_leader.stop()
    survivor = next(s for s in acceptor.servers if s is not old_leader)
    wait_until(lambda: requests.put(survivor.http + "/v1/catalog/register", json={
        "Node": "box2", "Address": "10.1.1.2", "Service": {"Service": "socat", "Port": 5001}}, timeout=10).ok,
        20, what="a write after the acceptor's leader stopped")
    wait_until(lambda: sorted(r["Node"]["Node"] for r in imported()) == ["box1", "box2"], 20,
               what="the second instance imported")
    old_leader.start()
    metrics = get(b_server, "/v1/agent/metrics?format=prometheus").text
    assert 'meshfed_peering_imported_services{peer="cluster-01"} 1.0' in metrics
    assert 'meshfed_peering_active{peer="cluster-01"} 1.0' in metrics
    assert 'meshfed_peering_stream_connected{peer="cluster-01"} 1.0' in metrics
    sent = next(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith('meshfed_peering_stream_bytes_received{peer="cluster-01"}'))
    assert sent > 0

    # Removing the export removes the import.
    entry["Services"] = []
    assert requests.put(a_follower.http + "/v1/config", json=entry, timeout=10).json() is True
    wait_until(lambda: imported() == [], 15, what="socat no longer imported")

    # 4. Delete on the acceptor: the dialer learns it (TERMINATED, imports dropped), then deletes its own.
    entry["Services"] = [{"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]}]
    requests.put(a_follower.http + "/v1/config", json=entry, timeout=10)
    wait_until(imported, 15, what="socat imported again")
    assert requests.delete(a_follower.http + "/v1/peering/cluster-02", timeout=10).status_code == 200
    assert get(a_follower, "/v1/peering/cluster-02").status_code == 404
    wait_until(lambda: get(b_server, "/v1/peering/cluster-01").json()["State"] == "TERMINATED", 15,
               what="the dialer's row TERMINATED")
    assert imported() == []
    assert get(b_server, "/v1/internal/peering/trust-bundles").json() == []  # dropped with TERMINATED
    deleted = cli("delete", "-name", "cluster-01", "-http-addr", b_server.http)
    assert deleted.stdout.strip() == "Successfully submitted peering connection, cluster-01, for deletion"
    missing = get(b_server, "/v1/peering/cluster-01")
    assert missing.status_code == 404 and missing.text == 'Peering not found for "cluster-01"'
    gone = cli("read", "-name", "cluster-01", "-http-addr", b_server.http)
    assert gone.returncode == 1 and 'No peering with name "cluster-01" found.' in gone.stderr
    assert cli("list", "-http-addr", b_server.http).stdout.strip() == "There are no peering connections."

    # 5. Re-peering needs a fresh token; a delete on the dialer tells the acceptor (TERMINATED,
    #    its row kept until deleted there).
    fresh = post(a_follower, "/v1/peering/token", {"PeerName": "cluster-02"}).json()["PeeringToken"]
    assert json.loads(base64.b64decode(fresh))["PeerID"] != decoded["PeerID"]
    assert post(b_server, "/v1/peering/establish", {"PeerName": "cluster-01", "PeeringToken": fresh}).status_code == 200
    wait_until(imported, 15, what="socat imported after re-peering")
    assert requests.delete(b_server.http + "/v1/peering/cluster-01", timeout=10).status_code == 200
    wait_until(lambda: get(a_follower, "/v1/peering/cluster-02").json()["State"] == "TERMINATED", 10,
               what="the acceptor's row TERMINATED")
    assert get(b_server, "/v1/peering/cluster-01").status_code == 404

    # A TERMINATED acceptor row takes a new token without being deleted first.
    again_token = post(a_follower, "/v1/peering/token", {"PeerName": "cluster-02"}).json()["PeeringToken"]
    assert get(a_follower, "/v1/peering/cluster-02").json()["State"] == "PENDING"
    assert post(b_server, "/v1/peering/establish",
                {"PeerName": "cluster-01", "PeeringToken": again_token}).status_code == 200
    wait_until(lambda: get(a_follower, "/v1/peering/cluster-02").json()["State"] == "ACTIVE", 10,
               what="the acceptor ACTIVE again")
    assert requests.delete(a_follower.http + "/v1/peering/cluster-02", timeout=10).status_code == 200
    assert get(a_follower, "/v1/peerings").json() == []
