"""The server's RPC endpoints as the agent builds them (server/endpoints/wiring.py), on the twins:
the gRPC server gets every group's methods, and no group's method hides another's (the merge of
the groups' handler tables would keep only the last one, silently)."""

from __future__ import annotations

from dataclasses import fields

from meshfed.server.config import Config
from meshfed.server.endpoints.wiring import build_endpoints
from tests.twins.server import server_twin


def test_every_group_s_methods_are_served_and_none_is_shadowed() -> None:
    twin = server_twin("dc1")
    endpoints = build_endpoints(Config(node_name="s1"), state=twin.state, raft=twin.raft,
                                router=twin.router, queries=twin.queries,
                                observe_federation_state=lambda method, seconds: None)
    groups = {f.name: getattr(endpoints, f.name).handlers() for f in fields(endpoints)}
    assert all(groups.values()), [name for name, methods in groups.items() if not methods]
    merged = endpoints.handlers()
    assert len(merged) == sum(len(methods) for methods in groups.values())
    for name, methods in groups.items():
        assert all(merged[method] == handler for method, handler in methods.items()), name
    assert {"Catalog/Register", "ACL/TokenRead", "Operator/RaftRemovePeer"} <= set(merged)


def test_every_rpc_method_declares_its_permission_in_exactly_one_table() -> None:
    """With ACLs on, the RPC port refuses a method that declares nothing (rpc_permissions.py). A
    method missing from the tables is therefore refused to everyone, and one in two tables would
    be checked by whichever the authorizer reads first: both are caught here, for every method the
    agent serves (the endpoint groups, peering, and the federation self-check)."""
    from meshfed.server.acl.rpc_filters import RPC_READ_FILTERS
    from meshfed.server.acl.rpc_permissions import RPC_EXEMPT, RPC_METHODS
    from meshfed.server.peering.wiring import build_peering
    from meshfed.server.wan.federation_check import FederationCheck

    twin = server_twin("dc1")
    cfg = Config(node_name="s1")
    endpoints = build_endpoints(cfg, state=twin.state, raft=twin.raft, router=twin.router, queries=twin.queries,
                                observe_federation_state=lambda method, seconds: None)
    peering = build_peering(cfg, state=twin.state, raft=twin.raft, router=twin.router, leader_streams=twin.router,
                            queries=twin.queries, watches=twin.watches)
    check = FederationCheck(cfg, state=twin.state, locator=None, router=twin.router,  # type: ignore[arg-type]
                            is_leader=lambda: True, replication=None)  # type: ignore[arg-type]
    served = {*endpoints.handlers(), *peering.handlers(), *check.handlers()}
    tables = {"needs": set(RPC_METHODS), "filters": set(RPC_READ_FILTERS), "exempt": set(RPC_EXEMPT)}
    undeclared = sorted(m for m in served if not any(m in names for names in tables.values()))
    assert undeclared == []
    twice = sorted(m for m in served if sum(m in names for names in tables.values()) > 1)
    assert twice == []
    unknown = sorted(set().union(*tables.values()) - served)
    assert unknown == []  # a declaration for a method nobody serves is stale
