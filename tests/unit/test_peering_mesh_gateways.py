"""Peering through mesh gateways, the server's choices (peering.md §4): which addresses a token
lists is covered end to end; here, where the dialer's leader calls a peer, from replicated state."""

from __future__ import annotations

from meshfed.fsm import StateMachine, encode_batch
from meshfed.fsm.commands import CatalogRegister, ConfigEntrySet
from meshfed.fsm.peering.commands import PeeringTrustBundleWrite, PeeringWrite
from meshfed.fsm.peering.records import Peering, PeeringTrustBundle
from meshfed.fsm.records import STATUS_PASSING, ConfigEntry, HealthCheck, Node, NodeService, ServiceAddress
from meshfed.server.peering.mesh import dial_addresses, gateway_addresses, peer_through_mesh_gateways

PEER = Peering(id="d-1", name="cluster-01", peer_id="remote", peer_server_addresses=("127.0.9.10:8443",))


class Log:
    def __init__(self) -> None:
        self.machine = StateMachine()
        self.index = 0

    def apply(self, command: object) -> None:
        self.index += 1
        self.machine.apply(self.index, encode_batch([("", command)]))


def with_gateway(log: Log) -> None:
    service = NodeService(id="gw", service="mesh-gateway", kind="mesh-gateway", address="127.0.2.10", port=8443,
                          tagged_addresses={"lan": ServiceAddress("127.0.2.10", 8443),
                                            "wan": ServiceAddress("203.0.113.7", 443)})
    log.apply(CatalogRegister(Node(node="gw-node", address="127.0.2.10"), service,
                              (HealthCheck("gw-node", "gw-ttl", status=STATUS_PASSING, service_id="gw",
                                           service_name="mesh-gateway"),)))


def test_the_leader_dials_through_its_own_gateway_only_with_the_flag_and_the_peers_bundle():
    log = Log()
    log.apply(PeeringWrite(PEER))
    with_gateway(log)
    state = log.machine.state
    assert gateway_addresses(state) == ["203.0.113.7:443"] and gateway_addresses(state, wan=False) == ["127.0.2.10:8443"]
    assert not peer_through_mesh_gateways(state)
    assert dial_addresses(state, PEER) == ("127.0.9.10:8443",)

    log.apply(ConfigEntrySet(ConfigEntry.of({"Kind": "mesh", "Name": "mesh",
                                             "Peering": {"PeerThroughMeshGateways": True}})))
    assert peer_through_mesh_gateways(state)
    # No bundle yet: our gateway cannot know where the peer's gateways are; the token's addresses.
    assert dial_addresses(state, PEER) == ("127.0.9.10:8443",)
    log.apply(PeeringTrustBundleWrite(PeeringTrustBundle(peer_name="cluster-01", trust_domain="td", root_pems=("x",),
                                                         gateway_addresses=("127.0.9.10:8443",))))
    assert dial_addresses(state, PEER) == ("127.0.2.10:8443",)


def test_a_peer_whose_datacenter_shares_our_name_is_dialed_at_its_own_gateways():
    """Two independent clusters are often both `dc1`. Our gateway never routes our own DC's server
    name to a peer (our servers stay ours), so through it the stream would reach our own servers
    and fail verification: the leader dials the peer's gateways from the token directly."""
    log = Log()
    twin = Peering(id="d-2", name="twin", peer_id="remote-2", peer_server_name="server.DC1.consul",
                   peer_server_addresses=("198.51.100.4:443",))
    log.apply(PeeringWrite(twin))
    with_gateway(log)
    log.apply(ConfigEntrySet(ConfigEntry.of({"Kind": "mesh", "Name": "mesh",
                                             "Peering": {"PeerThroughMeshGateways": True}})))
    log.apply(PeeringTrustBundleWrite(PeeringTrustBundle(peer_name="twin", trust_domain="td2", root_pems=("x",),
                                                         gateway_addresses=("198.51.100.4:443",))))
    state = log.machine.state
    assert dial_addresses(state, twin, datacenter="dc1") == ("198.51.100.4:443",)
    assert dial_addresses(state, twin, datacenter="dc2") == ("127.0.2.10:8443",)
