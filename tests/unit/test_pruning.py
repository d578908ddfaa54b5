"""Pruning decisions (DESIGN §8): stale records of other DCs go; our own never does."""

from __future__ import annotations

from meshfed.fsm.records import FederationState
from meshfed.server.leader.pruning import expired_states, parse_rfc3339, prune_interval

NOW = parse_rfc3339("2026-11-21T12:00:00.000000Z") or 0.0


def test_expired_states() -> None:
    states = [
        FederationState("dc1", updated_at="2026-11-01T00:00:00Z"),  # own: kept however old
        FederationState("dc2", updated_at="2026-11-21T11:59:00.5Z"),
        FederationState("dc3", updated_at="2026-11-18T11:00:00Z"),
        FederationState("dc4", updated_at=""),  # unknown age: kept
        FederationState("dc5", updated_at="garbage"),
    ]
    assert expired_states(states, "DC1", NOW, ttl=72 * 3600) == ["dc3"]
    assert expired_states(states, "dc1", NOW, ttl=30) == ["dc2", "dc3"]


def test_prune_interval_bounds() -> None:
    assert prune_interval(72 * 3600) == 3600
    assert prune_interval(3) == 1
    assert prune_interval(600) == 60
