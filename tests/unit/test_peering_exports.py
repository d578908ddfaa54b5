"""What the exporting side offers one peer (peering.md §1.3): the exported services' instances and,
for a service in the mesh, a synthetic `<svc>-sidecar-proxy` set whose addresses are this cluster's
mesh gateways and whose `Connect.PeerMeta` names the SNI and SPIFFE ID the peer's proxies dial and
verify, so `/v1/health/connect/<svc>?peer=` answers on the importing side as Consul's does."""

from __future__ import annotations

from meshfed.fsm import CAStateSet, CatalogRegister, ConfigEntrySet
from meshfed.fsm.records import CAState, ConfigEntry, HealthCheck, Node, NodeService, ServiceAddress
from meshfed.server.ca.identity import trust_domain
from meshfed.server.peering.exports import exported_instances
from tests.twins.raft import RaftTwin

CLUSTER_ID = "11111111-2222-3333-4444-555555555555"


def cluster(with_gateway: bool = True) -> RaftTwin:
    twin = RaftTwin()
    twin.apply_now(CAStateSet(CAState(CLUSTER_ID, {"Provider": "consul"}, ({"ID": "r", "Active": True,
                                                                           "RootCert": "PEM"},)), cas=0))
    twin.apply_now(ConfigEntrySet(ConfigEntry.of({"Kind": "exported-services", "Name": "default", "Services": [
        {"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]},
        {"Name": "plain", "Consumers": [{"Peer": "cluster-02"}]}]})))
    twin.apply_now(CatalogRegister(Node(node="app", address="10.0.0.5"),
                                   NodeService(id="socat", service="socat", port=5000)))
    twin.apply_now(CatalogRegister(Node(node="app", address="10.0.0.5"), NodeService(
        id="socat-sidecar-proxy", service="socat-sidecar-proxy", kind="connect-proxy", port=21000,
        proxy={"DestinationServiceName": "socat"})))
    twin.apply_now(CatalogRegister(Node(node="app", address="10.0.0.5"),
                                   NodeService(id="plain", service="plain", port=6000)))
    if with_gateway:
        twin.apply_now(CatalogRegister(
            Node(node="gw", address="10.0.0.9"),
            NodeService(id="mesh-gateway", service="mesh-gateway", kind="mesh-gateway", port=8443,
                        tagged_addresses={"wan": ServiceAddress("192.0.2.9", 443)}),
            (HealthCheck(node="gw", check_id="alive", status="passing", service_id="mesh-gateway"),)))
    return twin


def test_a_mesh_service_is_exported_with_a_sidecar_set_at_the_gateways() -> None:
    exports = exported_instances(cluster().state, "cluster-02", "dc1")
    assert sorted(exports) == ["plain", "socat", "socat-sidecar-proxy"]
    assert [n["service"]["port"] for n in exports["socat"]] == [5000]
    [proxy] = exports["socat-sidecar-proxy"]
    service = proxy["service"]
    assert service["kind"] == "connect-proxy" and service["service"] == "socat-sidecar-proxy"
    assert (service["address"], service["port"]) == ("192.0.2.9", 443)
    assert service["proxy"]["DestinationServiceName"] == "socat"
    td = trust_domain(CLUSTER_ID)
    assert service["connect"]["PeerMeta"] == {
        "SNI": [f"socat.default.default.cluster-02.external.{td}"],
        "SpiffeID": [f"spiffe://{td}/ns/default/dc/dc1/svc/socat"],
        "Protocol": "tcp",
    }


def test_no_sidecar_set_without_a_gateway_or_for_a_service_outside_the_mesh() -> None:
    assert sorted(exported_instances(cluster(with_gateway=False).state, "cluster-02", "dc1")) == ["plain", "socat"]
    assert "plain-sidecar-proxy" not in exported_instances(cluster().state, "cluster-02", "dc1")
