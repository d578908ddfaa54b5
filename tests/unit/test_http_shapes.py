"""Consul JSON shapes produced from records (server/http/shapes.py).

The expected documents are written out by hand from reference/federation.md §1.2 and the §4
example, and from Consul's `/v1/catalog/service` and `/v1/health/service` handlers, so a change to
a key name, an omitted key or a null-vs-empty convention fails here.
"""

from __future__ import annotations

import json

import pytest

from meshfed.fsm.records import (
    CheckServiceNode,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
    ServiceAddress,
    Weights,
)
from meshfed.server.http import shapes


def gateway_csn() -> CheckServiceNode:
    """The mesh gateway of reference/federation.md §4, as records."""
    node = Node(
        node="gateway1",
        address="10.0.2.5",
        id="3fb9a696-8209-4eee-a1f7-48600deb9716",
        datacenter="dc2",
        tagged_addresses={"lan": "10.0.2.5", "wan": "198.51.100.7"},
        create_index=31,
        modify_index=31,
    )
    service = NodeService(
        id="mesh-gateway",
        service="mesh-gateway",
        kind="mesh-gateway",
        address="10.0.2.5",
        tagged_addresses={
            "lan": ServiceAddress("10.0.2.5", 8443),
            "wan": ServiceAddress("198.51.100.7", 443),
        },
        meta={"consul-wan-federation": "1"},
        port=8443,
        create_index=32,
        modify_index=32,
    )
    check = HealthCheck(
        node="gateway1",
        check_id="service:mesh-gateway",
        name="web connectivity",
        status="passing",
        service_id="mesh-gateway",
        service_name="mesh-gateway",
        create_index=33,
        modify_index=33,
    )
    return CheckServiceNode(node=node, service=service, checks=(check,))


# Written from the reference example (reference/federation.md §4), not from the code under test.
EXPECTED_GATEWAY_CSN = {
    "Node": {
        "ID": "3fb9a696-8209-4eee-a1f7-48600deb9716",
        "Node": "gateway1",
        "Address": "10.0.2.5",
        "Datacenter": "dc2",
        "TaggedAddresses": {"lan": "10.0.2.5", "wan": "198.51.100.7"},
        "Meta": None,
        "CreateIndex": 31,
        "ModifyIndex": 31,
    },
    "Service": {
        "Kind": "mesh-gateway",
        "ID": "mesh-gateway",
        "Service": "mesh-gateway",
        "Tags": None,
        "Address": "10.0.2.5",
        "TaggedAddresses": {
            "lan": {"Address": "10.0.2.5", "Port": 8443},
            "wan": {"Address": "198.51.100.7", "Port": 443},
        },
        "Meta": {"consul-wan-federation": "1"},
        "Port": 8443,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Proxy": {"MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "PeerName": "",
        "CreateIndex": 32,
        "ModifyIndex": 32,
    },
    "Checks": [
        {
            "Node": "gateway1",
            "CheckID": "service:mesh-gateway",
            "Name": "web connectivity",
            "Status": "passing",
            "Notes": "",
            "Output": "",
            "ServiceID": "mesh-gateway",
            "ServiceName": "mesh-gateway",
            "ServiceTags": None,
            "Type": "",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": 33,
            "ModifyIndex": 33,
        }
    ],
}


def test_csn_matches_reference_example_exactly() -> None:
    assert shapes.csn_json(gateway_csn()) == EXPECTED_GATEWAY_CSN


def test_key_order_follows_consul_struct_order() -> None:
    """Key order is not semantic in JSON, but humans diff our output against Consul's."""
    rendered = shapes.csn_json(gateway_csn())
    for part in ("Node", "Service"):
        assert list(rendered[part]) == list(EXPECTED_GATEWAY_CSN[part])
    assert list(rendered["Checks"][0]) == list(EXPECTED_GATEWAY_CSN["Checks"][0])


def test_federation_state_matches_reference_example() -> None:
    state = FederationState(
        datacenter="dc2",
        mesh_gateways=(gateway_csn(),),
        updated_at="2020-03-09T19:52:23.041392Z",
        primary_modify_index=118,
        create_index=40,
        modify_index=52,
    )
    assert shapes.federation_state_json(state) == {
        "Datacenter": "dc2",
        "MeshGateways": [EXPECTED_GATEWAY_CSN],
        "UpdatedAt": "2020-03-09T19:52:23.041392Z",
        "PrimaryModifyIndex": 118,
        "CreateIndex": 40,
        "ModifyIndex": 52,
    }


def test_federation_state_without_gateways_omits_mesh_gateways() -> None:
    rendered = shapes.federation_state_json(FederationState(datacenter="dc3", create_index=7, modify_index=9))
    assert "MeshGateways" not in rendered
    assert rendered == {
        "Datacenter": "dc3",
        "UpdatedAt": "",
        "PrimaryModifyIndex": 0,
        "CreateIndex": 7,
        "ModifyIndex": 9,
    }


def test_node_empty_maps_are_null() -> None:
    rendered = shapes.node_json(Node(node="n1", address="10.0.0.1"))
    assert rendered["TaggedAddresses"] is None
    assert rendered["Meta"] is None


def test_node_meta_rendered_when_present() -> None:
    rendered = shapes.node_json(Node(node="n1", address="10.0.0.1", meta={"rack": "r1"}))
    assert rendered["Meta"] == {"rack": "r1"}


def test_plain_service_omits_omitempty_keys() -> None:
    rendered = shapes.service_json(NodeService(id="web-1", service="web"))
    assert "Kind" not in rendered
    assert "Port" not in rendered
    assert "TaggedAddresses" not in rendered
    assert rendered["Tags"] is None
    assert rendered["Meta"] is None
    assert rendered["Proxy"] == {"MeshGateway": {}, "Expose": {}}
    assert rendered["Connect"] == {}
    assert rendered["PeerName"] == ""


def test_service_tags_and_weights_rendered() -> None:
    svc = NodeService(
        id="web-1", service="web", tags=("a", "b"), port=80, weights=Weights(passing=5, warning=2)
    )
    rendered = shapes.service_json(svc)
    assert rendered["Tags"] == ["a", "b"]
    assert rendered["Port"] == 80
    assert rendered["Weights"] == {"Passing": 5, "Warning": 2}


def test_tags_as_lists_turns_null_tags_into_empty_lists() -> None:
    """Consul's /v1/health/service handler rewrites nil Service.Tags and Checks[].ServiceTags to []."""
    rendered = shapes.csn_json(gateway_csn(), tags_as_lists=True)
    assert rendered["Service"]["Tags"] == []
    assert rendered["Checks"][0]["ServiceTags"] == []
    # Non-empty tags are unaffected by the flag.
    svc = NodeService(id="w", service="w", tags=("x",))
    assert shapes.service_json(svc, tags_as_lists=True)["Tags"] == ["x"]


def test_proxy_keeps_user_config_and_adds_struct_defaults() -> None:
    svc = NodeService(
        id="gw",
        service="gw",
        proxy={"MeshGateway": {"Mode": "local"}, "Config": {"envoy_dns_discovery_type": "STRICT_DNS"}},
    )
    assert shapes.service_json(svc)["Proxy"] == {
        "MeshGateway": {"Mode": "local"},
        "Expose": {},
        "Config": {"envoy_dns_discovery_type": "STRICT_DNS"},
    }


def test_proxy_default_not_duplicated_under_other_casing() -> None:
    svc = NodeService(id="gw", service="gw", proxy={"meshgateway": {"mode": "remote"}})
    proxy = shapes.service_json(svc)["Proxy"]
    assert proxy == {"Expose": {}, "meshgateway": {"mode": "remote"}}


def test_check_hides_meshfed_ttl_bookkeeping() -> None:
    check = HealthCheck(
        node="n1",
        check_id="gw-ttl",
        status="warning",
        type="ttl",
        ttl="30s",
        status_updated_at=1234.5,
        service_tags=("t",),
        definition={"HTTP": "http://x"},
    )
    rendered = shapes.check_json(check)
    assert rendered["Type"] == "ttl"
    assert rendered["ServiceTags"] == ["t"]
    assert rendered["Definition"] == {"HTTP": "http://x"}
    assert not any(key.lower() in ("ttl", "statusupdatedat") for key in rendered)


def test_catalog_service_is_flattened_servicenode() -> None:
    csn = gateway_csn()
    rendered = shapes.catalog_service_json(csn.node, csn.service)
    assert rendered == {
        "ID": "3fb9a696-8209-4eee-a1f7-48600deb9716",
        "Node": "gateway1",
        "Address": "10.0.2.5",
        "Datacenter": "dc2",
        "TaggedAddresses": {"lan": "10.0.2.5", "wan": "198.51.100.7"},
        "NodeMeta": None,
        "ServiceKind": "mesh-gateway",
        "ServiceID": "mesh-gateway",
        "ServiceName": "mesh-gateway",
        "ServiceTags": [],
        "ServiceAddress": "10.0.2.5",
        "ServiceTaggedAddresses": {
            "lan": {"Address": "10.0.2.5", "Port": 8443},
            "wan": {"Address": "198.51.100.7", "Port": 443},
        },
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": {"consul-wan-federation": "1"},
        "ServicePort": 8443,
        "ServiceEnableTagOverride": False,
        "ServiceProxy": {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": 32,
        "ModifyIndex": 32,
    }


def test_catalog_service_plain_service() -> None:
    node = Node(node="n1", address="10.0.0.1", create_index=3, modify_index=4)
    svc = NodeService(id="web-1", service="web", tags=("v1",), create_index=10, modify_index=12)
    rendered = shapes.catalog_service_json(node, svc)
    assert "ServiceTaggedAddresses" not in rendered
    assert rendered["ServiceKind"] == ""
    assert rendered["ServicePort"] == 0
    assert rendered["ServiceTags"] == ["v1"]
    assert (rendered["CreateIndex"], rendered["ModifyIndex"]) == (10, 12)


@pytest.mark.parametrize("leader", [True, False])
def test_server_json(leader: bool) -> None:
    info = ServerInfo(
        node="s1",
        datacenter="dc1",
        raft_address="127.0.0.1:8301",
        rpc_address="127.0.0.1:8300",
        http_address="127.0.0.1:8500",
    )
    assert shapes.server_json(info, leader) == {  # Address: the RPC address, as Consul answers it
        "ID": "s1",
        "Node": "s1",
        "Address": "127.0.0.1:8300",
        "Leader": leader,
        "Voter": True,
        "ProtocolVersion": "3",
    }


def test_rendered_documents_are_json_and_do_not_alias_records() -> None:
    csn = gateway_csn()
    svc = NodeService(id="p", service="p", proxy={"Config": {"a": 1}}, connect={"Native": True})
    check = HealthCheck(node="n", check_id="c", definition={"HTTP": "h"})
    documents = [
        shapes.csn_json(csn),
        shapes.service_json(svc),
        shapes.check_json(check),
        shapes.catalog_service_json(csn.node, csn.service),
    ]
    json.dumps(documents)  # must not raise

    # Handlers may post-process what they get; that must never reach the stored record.
    documents[0]["Node"]["TaggedAddresses"]["wan"] = "changed"
    documents[0]["Service"]["Meta"]["x"] = "y"
    documents[1]["Connect"]["Native"] = False
    documents[2]["Definition"]["HTTP"] = "changed"
    assert csn.node.tagged_addresses["wan"] == "198.51.100.7"
    assert "x" not in csn.service.meta
    assert svc.connect == {"Native": True}
    assert check.definition == {"HTTP": "h"}
