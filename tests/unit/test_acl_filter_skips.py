"""A list filter is skipped when the token reads every name of each resource the filter is marked
as consulting (`@reads`). That is only safe if the marks are complete: here each marked filter
runs with a token that reads exactly its marked resources and nothing else, on an answer whose
rows touch everything the filter checks, and must keep all of it. A filter that consulted an
unmarked resource would drop a row and fail."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.fsm.acl import Authorizer, DefaultPolicy, parse_rules
from meshfed.fsm.records import CheckServiceNode, HealthCheck, Node, NodeService, to_wire
from meshfed.server.acl import filters
from meshfed.server.acl import rpc_filters as wire
from meshfed.server.acl.filters import _READS, keeps_everything
from meshfed.server.acl.resolver import Identity

RULES = {"service": 'service_prefix "" { policy = "read" }', "node": 'node_prefix "" { policy = "read" }',
         "intention": 'service_prefix "" { policy = "deny" intentions = "read" }'}
N1, WEB = to_wire(Node(node="n1", address="127.0.0.1")), to_wire(NodeService(id="web", service="web"))
CSN = {"Node": {"Node": "n1"}, "Service": {"Service": "web"}}
SAMPLES: dict[Any, Any] = {
    filters.catalog_services: {"web": ["t"]},
    filters.agent_services: {"web": {"Service": "web"}},
    filters.agent_checks: {"c1": {"ServiceName": "web", "Node": "n1"}, "c2": {"ServiceName": "", "Node": "n1"}},
    filters.catalog_nodes: [{"Node": "n1"}],
    filters.catalog_service_nodes: [{"Node": "n1", "ServiceName": "web"}],
    filters.health_service_nodes: [CSN],
    filters.mesh_gateways_by_datacenter: {"dc2": [CSN]},
    filters.intentions: [{"SourceName": "api", "DestinationName": "web"}],
    filters.agent_members: [{"Name": "n1"}],
    filters.health_checks: [{"Node": "n1", "ServiceName": "web"}, {"Node": "n1", "ServiceName": ""}],
    filters.catalog_node_services: {"Node": {"Node": "n1"}, "Services": {"web": {"Service": "web"}}},
    wire.list_nodes: [N1],
    wire.node_services: {"node": N1, "services": [WEB]},
    wire.node_service_pairs: [[N1, WEB]],
    wire.check_service_nodes: [to_wire(CheckServiceNode(node=Node(node="n1", address="a"),
                                                        service=NodeService(id="web", service="web")))],
    wire.checks: [to_wire(HealthCheck(node="n1", check_id="serfHealth", name="s")),
                  to_wire(HealthCheck(node="n1", check_id="c", name="c", service_id="web", service_name="web"))],
    wire.intention: {"SourceName": "api", "DestinationName": "web"},
}


def identity_reading(*resources: str) -> Identity:
    policies = [parse_rules(RULES[resource]) for resource in resources]
    return Identity("t", Authorizer.from_rules(policies, DefaultPolicy.DENY))


def test_every_marked_filter_has_a_sample() -> None:
    assert set(_READS) == set(SAMPLES)


@pytest.mark.parametrize("keep", list(SAMPLES), ids=lambda keep: f"{keep.__module__.rsplit('.', 1)[-1]}.{keep.__name__}")
def test_a_token_that_reads_the_marked_resources_loses_no_row(keep: Any) -> None:
    identity = identity_reading(*_READS[keep])
    assert keeps_everything(identity, keep)
    kept, removed = keep(identity, SAMPLES[keep])
    assert not removed and kept == SAMPLES[keep]
    for missing in _READS[keep]:
        others = [resource for resource in _READS[keep] if resource != missing]
        assert not keeps_everything(identity_reading(*others), keep), missing


def test_unmarked_filters_run_except_for_management() -> None:
    gateway = identity_reading("service", "node")
    assert not keeps_everything(gateway, filters.config_entries)
    assert keeps_everything(Identity("m", Authorizer.for_management()), filters.config_entries)
