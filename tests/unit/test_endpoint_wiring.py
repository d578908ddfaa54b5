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
