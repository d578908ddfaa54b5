"""The ACL policies in deploy/acl against meshfed's rules language and its permission checks.

deploy/README.md tells operators to create these policies; a policy that does not parse fails at
that step, and one that parses but grants too little leaves a gateway unable to register, which
only shows as a 403 in its log. So each policy is parsed by the real parser and the gateway's own
requests (the registration body the gateway code builds) are checked with the real need
functions the HTTP layer uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.fsm.acl.authorizer import Authorizer, DefaultPolicy
from meshfed.fsm.acl.rules import Access, parse_rules
from meshfed.fsm.state import StateStore
from meshfed.server.acl.needs import Need, deregistration_of, registration_of, ttl_update_of
from meshfed.server.dataplane.gateway import GatewayConfig, registration
from meshfed.server.http.decode import decode_catalog_register

ACL = Path(__file__).resolve().parents[2] / "deploy" / "acl"
POLICIES = sorted(ACL.glob("*-policy.hcl"))
GATEWAY_POD = "mesh-gateway-5d8f9c7b6-x2x7q"  # a pod name of the mesh-gateway Deployment


def authorizer(name: str) -> Authorizer:
    return Authorizer.from_rules([parse_rules((ACL / f"{name}-policy.hcl").read_text())], DefaultPolicy.DENY)


def allowed(policy: Authorizer, needs: list[Need]) -> bool:
    return all(policy.allowed(need.resource, need.access, need.segment) for need in needs)


def test_the_policies_the_readme_creates_exist() -> None:
    assert [path.name for path in POLICIES] == [
        "mesh-gateway-policy.hcl", "prometheus-policy.hcl", "replication-policy.hcl"]


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_policy_parses(path: Path) -> None:
    assert parse_rules(path.read_text()).named or parse_rules(path.read_text()).unnamed


def _gateway_config() -> GatewayConfig:
    return GatewayConfig(datacenter="dc1", node=GATEWAY_POD, bind=("10.1.2.3", 8443), wan_address=("192.0.2.7", 30443),
                         http_addrs=("meshfed-http:8500",), expose_servers=True)


def test_the_gateway_token_may_register_renew_and_deregister_its_gateway() -> None:
    cfg = _gateway_config()
    state = StateStore()
    node, service, checks = decode_catalog_register(registration(cfg), cfg.datacenter)
    policy = authorizer("mesh-gateway")

    assert allowed(policy, registration_of(state, node, service, checks))
    assert allowed(policy, ttl_update_of(state, cfg.check_id, cfg.node))
    assert allowed(policy, deregistration_of(state, cfg.node, "", ""))


def test_the_gateway_token_reads_its_routes_and_nothing_more() -> None:
    policy = authorizer("mesh-gateway")
    # /v1/catalog/service/consul rows and other datacenters' gateway rows are filtered on these.
    assert allowed(policy, [Need("service", Access.READ, "consul"), Need("node", Access.READ, "meshfed-0"),
                            Need("service", Access.READ, "mesh-gateway")])
    assert not policy.allowed("node", Access.WRITE, "meshfed-0"), "a gateway must not rewrite a server's node"
    assert not policy.allowed("service", Access.WRITE, "web")
    assert not policy.allowed("acl", Access.READ)


def test_prometheus_token_may_read_metrics_only() -> None:
    policy = authorizer("prometheus")
    assert policy.allowed("agent", Access.READ, "meshfed-0")
    assert not policy.allowed("agent", Access.WRITE, "meshfed-0")
    assert not policy.allowed("node", Access.READ, "meshfed-0")


def test_replication_token_has_what_a_secondary_asks_the_primary_for() -> None:
    policy = authorizer("replication")
    assert policy.allowed("acl", Access.WRITE) and policy.allowed("operator", Access.WRITE)
    assert policy.allowed("service", Access.READ, "web")


def test_the_systemd_example_gateway_node_may_be_written_by_the_gateway_token() -> None:
    example = (ACL.parent / "systemd" / "gateway.env.example").read_text()
    args = next(line for line in example.splitlines() if line.startswith("MESHFED_GATEWAY_ARGS=")).split()
    node = args[args.index("-node") + 1]
    assert authorizer("mesh-gateway").allowed("node", Access.WRITE, node)
