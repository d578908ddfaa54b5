"""The endpoint ports and the implementations behind them: the twins that unit tests drive and the
production classes must both fit, or a green unit test would say nothing about the server."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from meshfed.server.endpoints.ports import (
    LeaderContact,
    LeaderLookup,
    LeaderView,
    Proposer,
    Queries,
    ReadBarrier,
    RequestRouter,
)
from meshfed.server.raft import RaftNode
from meshfed.server.requests.blocking import QueryRunner
from meshfed.server.requests.router import Router
from tests.twins.raft import RaftTwin
from tests.twins.router import RouterTwin
from tests.twins.server import server_twin


def test_the_twins_implement_the_ports() -> None:
    twin = server_twin("dc1")
    proposer: Proposer = twin.raft
    leader_view: LeaderView = twin.raft
    router: RequestRouter = twin.router
    queries: Queries = twin.queries
    assert isinstance(proposer, Proposer) and isinstance(leader_view, LeaderView)
    assert isinstance(router, RequestRouter) and isinstance(queries, Queries)


def _methods(protocol: type) -> list[str]:
    return [name for name, member in vars(protocol).items() if inspect.isfunction(member) and not name.startswith("_")]


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any]]:
    """Names and kinds, not annotations: a renamed or re-ordered parameter breaks callers that pass it
    by keyword; annotations are the type checker's job."""
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("protocol", "implementations"),
    [
        (Proposer, (RaftNode, RaftTwin)),
        # Each protocol row checks the members it declares itself; the leader views build on one
        # another, so every layer has its row.
        (LeaderContact, (RaftNode, RaftTwin)),
        (LeaderLookup, (RaftNode, RaftTwin)),
        (LeaderView, (RaftNode, RaftTwin)),
        (ReadBarrier, (RaftNode, RaftTwin)),
        (RequestRouter, (Router, RouterTwin)),
        (Queries, (QueryRunner,)),
    ],
)
def test_production_classes_and_twins_have_the_ports_signatures(protocol: type, implementations: tuple[type, ...]) -> None:
    for name in _methods(protocol):
        wanted = _parameters(getattr(protocol, name))
        for implementation in implementations:
            member = getattr(implementation, name)
            assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(getattr(protocol, name)), (
                f"{implementation.__name__}.{name}: sync/async differs from {protocol.__name__}")
            assert _parameters(member) == wanted, f"{implementation.__name__}.{name} drifted from {protocol.__name__}"

