"""The RPC port's catalog and health reads, filtered by the caller's token on the wire shapes the
endpoints answer with (records as `to_wire` makes them)."""

from __future__ import annotations

from meshfed.fsm.acl import Authorizer, DefaultPolicy, parse_rules
from meshfed.fsm.records import CheckServiceNode, HealthCheck, Node, NodeService, to_wire
from meshfed.server.acl.resolver import Identity
from meshfed.server.acl.rpc_filters import RPC_READ_FILTERS

WEB_ON_N1 = Identity("a", Authorizer.from_rules(
    [parse_rules('service "web" { policy = "read" }\nnode "n1" { policy = "read" }')], DefaultPolicy.DENY))
N1, N2 = to_wire(Node(node="n1", address="127.0.0.1")), to_wire(Node(node="n2", address="127.0.0.2"))
WEB, DB = to_wire(NodeService(id="web", service="web")), to_wire(NodeService(id="db", service="db"))


def keep(method: str, answer: object) -> tuple[object, bool]:
    return RPC_READ_FILTERS[method](WEB_ON_N1, answer)


def test_lists_keep_only_what_the_token_may_read() -> None:
    assert keep("Catalog/ListNodes", [N1, N2]) == ([N1], True)
    assert keep("Catalog/ListServices", {"web": [], "db": ["x"]}) == ({"web": []}, True)
    assert keep("Catalog/ServiceNodes", [[N1, WEB], [N2, WEB], [N1, DB]]) == ([[N1, WEB]], True)
    assert keep("Catalog/ListNodes", [N1]) == ([N1], False)


def test_a_node_the_token_may_not_read_shows_nothing_of_its_services() -> None:
    assert keep("Catalog/NodeServices", {"node": N2, "services": [WEB]}) == ({"node": None, "services": []}, True)
    assert keep("Catalog/NodeServices", {"node": N1, "services": [WEB, DB]}) == ({"node": N1, "services": [WEB]}, True)
    assert keep("Catalog/NodeServices", {"node": None, "services": []}) == ({"node": None, "services": []}, False)


def test_health_entries_and_checks() -> None:
    entry = to_wire(CheckServiceNode(node=Node(node="n1", address="a"), service=NodeService(id="web", service="web")))
    hidden = to_wire(CheckServiceNode(node=Node(node="n2", address="a"), service=NodeService(id="web", service="web")))
    assert keep("Health/ServiceNodes", [entry, hidden]) == ([entry], True)
    node_check = to_wire(HealthCheck(node="n2", check_id="serfHealth", name="serf"))
    web_check = to_wire(HealthCheck(node="n2", check_id="c", name="c", service_id="web", service_name="web"))
    assert keep("Health/NodeChecks", [node_check, web_check]) == ([web_check], True)


def test_intentions_and_config_entries_keep_what_the_token_may_read() -> None:
    to_web = {"SourceName": "api", "DestinationName": "web", "Action": "allow"}
    to_db = {"SourceName": "api", "DestinationName": "db", "Action": "allow"}
    assert keep("Intention/List", [to_web, to_db]) == ([to_web], True)
    assert keep("Intention/Get", to_db) == (None, True)
    assert keep("Intention/Get", to_web) == (to_web, False)
    web, db = {"Kind": "service-defaults", "Name": "web"}, {"Kind": "service-defaults", "Name": "db"}
    assert keep("ConfigEntry/List", [web, db]) == ([web], True)
    assert keep("ConfigEntry/Get", {"entry": db}) == ({"entry": None}, True)
    assert keep("ConfigEntry/Get", {"entry": web}) == ({"entry": web}, False)
    assert keep("ConfigEntry/ListAll", [web, db, {"Kind": "proxy-defaults", "Name": "global"}]) == (
        [web, {"Kind": "proxy-defaults", "Name": "global"}], True)  # proxy-defaults needs no read


def test_mesh_gateways_keep_the_gateways_whose_node_and_service_the_token_may_read() -> None:
    def gateway(node: str, service: str) -> dict[str, object]:
        return to_wire(CheckServiceNode(node=Node(node=node, address="a"), service=NodeService(id=service, service=service)))

    readable, other_node = gateway("n1", "web"), gateway("n2", "web")
    answer = {"dc2": [readable, other_node], "dc3": [gateway("n1", "db")]}
    assert keep("FederationState/ListMeshGateways", answer) == ({"dc2": [readable]}, True)  # dc3 left empty: dropped
    assert keep("FederationState/ListMeshGateways", {"dc2": [readable]}) == ({"dc2": [readable]}, False)
