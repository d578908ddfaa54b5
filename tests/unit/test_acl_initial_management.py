"""`acl.tokens.initial_management`: the primary leader's one-shot write, against a real state machine.

Pinned (reference/acl.md §2.4, §3.3): on a fresh store the token is written through the bootstrap
path, so an API bootstrap afterwards is refused with the reset index; a second run (restart, new
leader) writes nothing; after an API bootstrap the token is still created, as an ordinary token;
the token is a global management token with Consul's description.
"""

from __future__ import annotations

import asyncio
import datetime

import pytest

from meshfed.fsm import ACLBootstrap, ACLTokenSet
from meshfed.fsm.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshfed.fsm.acl.apply import bootstrap_refusal
from meshfed.fsm.acl.records import ACLLink, ACLToken
from meshfed.server.leader.acl_init import (
    INITIAL_MANAGEMENT_DESCRIPTION,
    Step,
    ensure_initial_management,
    next_step,
)
from tests.twins.raft import RaftTwin

SECRET = "6f3b5e1c-3c47-4d2a-9d8e-0b7b2a4f9a11"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def ensure(raft: RaftTwin) -> Step:
    return asyncio.run(ensure_initial_management(SECRET, raft.state, raft, now=lambda: T0))


@pytest.mark.parametrize("exists, bootstrapped, step", [
    (True, False, Step.NOTHING), (True, True, Step.NOTHING), (False, False, Step.BOOTSTRAP), (False, True, Step.SET),
])
def test_next_step(exists: bool, bootstrapped: bool, step: Step) -> None:
    assert next_step(exists, bootstrapped) is step


def test_fresh_store_bootstraps_with_the_configured_secret_once() -> None:
    raft = RaftTwin()
    assert ensure(raft) is Step.BOOTSTRAP
    token = raft.state.acl_token_by_secret(SECRET)[1]
    assert token is not None
    assert token.description == INITIAL_MANAGEMENT_DESCRIPTION and not token.local
    assert [link.id for link in token.policies] == [GLOBAL_MANAGEMENT_POLICY_ID]
    assert token.create_time == "2026-01-01T00:00:00.000000Z"
    state = raft.state.acl_bootstrap_state()[1]
    assert state == {"bootstrapped": True, "reset_index": token.create_index}

    # The API bootstrap is now refused with the reset index, as after `acl bootstrap`.
    other = ACLToken(accessor_id="a2222222-0000-4000-8000-000000000000", secret_id="s2",
                     policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),))
    refused = raft.apply_now(ACLBootstrap(other))
    assert not refused.ok and refused.error == bootstrap_refusal(token.create_index)

    # Idempotent: a restart or a new leader proposes nothing.
    proposals = len(raft.commands)
    assert ensure(raft) is Step.NOTHING and len(raft.commands) == proposals


def test_after_an_api_bootstrap_the_token_is_created_as_an_ordinary_token() -> None:
    raft = RaftTwin()
    api = ACLToken(accessor_id="a3333333-0000-4000-8000-000000000000", secret_id="s3",
                   policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),))
    assert raft.apply_now(ACLBootstrap(api)).ok
    reset_index = raft.state.acl_bootstrap_state()[1]["reset_index"]
    assert ensure(raft) is Step.SET
    assert isinstance(raft.commands[-1], ACLTokenSet)
    assert raft.state.acl_token_by_secret(SECRET)[1] is not None
    assert raft.state.acl_bootstrap_state()[1]["reset_index"] == reset_index  # the marker is untouched


def test_lost_bootstrap_race_falls_back_to_a_token_write() -> None:
    raft = RaftTwin()
    api = ACLToken(accessor_id="a4444444-0000-4000-8000-000000000000", secret_id="s4",
                   policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),))
    # An API bootstrap commits between our read of the state and our proposal.
    raft.before_apply = lambda: raft.apply_now(ACLBootstrap(api))
    assert ensure(raft) is Step.SET
    assert raft.state.acl_token_by_secret(SECRET)[1] is not None
    assert raft.state.acl_token_by_secret("s4")[1] is not None


def test_a_refused_write_raises_for_the_supervisor_to_retry() -> None:
    raft = RaftTwin()
    # The secret is already some token's AccessorID: the store refuses it (never silently).
    holder = ACLToken(accessor_id=SECRET, secret_id="s5")
    assert raft.apply_now(ACLTokenSet(holder)).ok
    with pytest.raises(RuntimeError, match="initial management token"):
        ensure(raft)
