"""Peered data plane, pure parts: the peered SNI, gateway routing on it, and peer intention sources."""

from __future__ import annotations

from meshfed.fsm import intentions as views
from meshfed.rpc.gateway_routes import RoutingTable
from meshfed.rpc.spiffe import PeeredSNI, parse_peered_sni, peered_service_sni

C1 = "11111111-2222-3333-4444-555555555555.consul"
C2 = "99999999-2222-3333-4444-555555555555.consul"


def test_peered_sni_is_consuls_shape_and_parses_back():
    sni = peered_service_sni("Socat", "cluster-02", C1)
    assert sni == f"socat.default.default.cluster-02.external.{C1}"
    assert parse_peered_sni(sni) == PeeredSNI("socat", "default", "default", "cluster-02", C1)
    for junk in (f"socat.default.dc1.internal.{C1}", "server.dc1.consul", f"a.b.c.external.{C1}",
                 f"so cat.default.default.p.external.{C1}", "socat.default.default.p.external.",
                 f"s.default.default.p.external.x.external.{C1}"):
        assert parse_peered_sni(junk) is None, junk


def test_gateway_routes_a_peer_trust_domain_to_its_gateways_and_its_own_to_the_service():
    importer = RoutingTable(datacenter="dc1", trust_domain=C2, peer_gateways={C1: [("127.0.9.1", 8443)]})
    sni = peered_service_sni("socat", "cluster-02", C1)
    assert importer.resolve(sni) == ("peer-remote:cluster-02", [("127.0.9.1", 8443)])
    assert importer.local_service(sni) is None
    exporter = RoutingTable(datacenter="dc1", trust_domain=C1)
    assert exporter.resolve(sni) is None and exporter.local_service(sni) == "socat"
    unknown = RoutingTable(datacenter="dc1", trust_domain=C2)
    assert unknown.resolve(sni) is None and unknown.local_service(sni) is None


def test_gateway_routes_a_dialed_peers_server_name_to_its_gateways_but_never_our_own_dc():
    """PeerThroughMeshGateways (peering.md §4): our leader's calls to a peer enter our gateway
    with the peer's server name; a peer whose DC shares our name cannot capture our servers."""
    local = {"dc2-s1": ("127.0.2.1", 8300)}
    table = RoutingTable(datacenter="dc2", local_servers=local,
                         peer_servers={"server.dc1.consul": [("127.0.9.10", 8443)]})
    assert table.resolve("SERVER.dc1.consul") == ("peer-server:server.dc1.consul", [("127.0.9.10", 8443)])
    assert table.resolve("server.dc3.consul") is None
    same_name = RoutingTable(datacenter="dc1", local_servers=local,
                             peer_servers={"server.dc1.consul": [("127.0.9.10", 8443)]})
    assert same_name.resolve("server.dc1.consul") == ("local:any", [("127.0.2.1", 8300)])


def entry(*sources):
    return {"Kind": "service-intentions", "Name": "socat", "Sources": list(sources)}


def test_peer_sources_match_only_callers_of_that_peer_and_a_peer_caller_is_denied_by_default():
    allow_peer = {"Name": "web", "Peer": "cluster-02", "Action": "allow"}
    allow_local = {"Name": "web", "Action": "allow"}
    assert views.decide([entry(allow_peer)], "web", "socat", True, source_peer="cluster-02")[0] is True
    assert views.decide([entry(allow_peer)], "web", "socat", True)[0] is True  # local web: the default
    assert views.decide([entry(allow_local)], "web", "socat", True, source_peer="cluster-02")[0] is False
    assert views.decide([], "web", "socat", True, source_peer="cluster-02")[0] is False
    assert views.decide([entry(allow_peer)], "web", "socat", True, source_peer="cluster-03")[0] is False
    wildcard = {"Name": "*", "Peer": "cluster-02", "Action": "allow"}
    assert views.decide([entry(wildcard)], "api", "socat", False, source_peer="CLUSTER-02")[0] is True
    deny_local = {"Name": "*", "Action": "deny"}
    assert views.decide([entry(deny_local, allow_peer)], "web", "socat", True, source_peer="cluster-02")[0] is True


def test_a_destination_peer_upstream_always_goes_through_gateways():
    import pytest

    from meshfed.server.dataplane.proxy_config import (
        HOP_LOCAL_GATEWAY,
        HOP_REMOTE_GATEWAY,
        ProxyConfigError,
        from_registration,
        peered_first_hop,
    )

    def registration(**upstream):
        return {"Kind": "connect-proxy", "Port": 21000, "Proxy": {"DestinationServiceName": "web", "Upstreams": [
            {"DestinationName": "socat", "LocalBindPort": 9191, **upstream}]}}

    (upstream,) = from_registration(registration(DestinationPeer="cluster-01")).upstreams
    assert upstream.peer == "cluster-01" and upstream.datacenter == ""
    with pytest.raises(ProxyConfigError, match="mutually exclusive"):
        from_registration(registration(DestinationPeer="cluster-01", Datacenter="dc2"))
    assert peered_first_hop("", "") == HOP_LOCAL_GATEWAY
    assert peered_first_hop("none", "remote") == HOP_LOCAL_GATEWAY  # the upstream's own mode wins
    assert peered_first_hop("", "remote") == HOP_REMOTE_GATEWAY


def test_peer_trust_builds_the_peered_target_and_unions_roots():
    import pytest

    from meshfed.server.dataplane.peer_trust import PeerTrust

    trust = PeerTrust()
    with pytest.raises(RuntimeError, match="no trust bundle"):
        trust.target("cluster-01", "socat")
    bundle = {"PeerName": "cluster-01", "TrustDomain": C1, "RootPEMs": ["B", "A"], "RemotePeerName": "cluster-02",
              "Datacenter": "dc1", "MeshGateways": ["127.0.9.10:8443", "junk"]}
    assert trust.update([bundle]) is True and trust.update([bundle]) is False
    assert trust.target("Cluster-01", "socat") == (
        f"socat.default.default.cluster-02.external.{C1}", f"spiffe://{C1}/ns/default/dc/dc1/svc/socat")
    assert trust.gateways("cluster-01") == [("127.0.9.10", 8443)]
    assert trust.roots(["A", "C"]) == ["A", "C", "B"]
    assert trust.vouched_for("not a uri", None) == (True, "")  # left to the server's authorize
    assert trust.vouched_for(f"spiffe://{C1}/ns/default/dc/dc1/svc/web", None)[0] is False  # no leaf
