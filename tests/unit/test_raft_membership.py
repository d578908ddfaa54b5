"""The quorum-safety rules of live membership changes, failure tolerance, the members file, and
how an operator's name for a server maps to its Raft address."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.fsm.records import ServerInfo
from meshfed.server.endpoints.operator_raft import resolve_member
from meshfed.server.raft.membership import (
    addition_refusal,
    failure_tolerance,
    load_members,
    members_from_status,
    quorum,
    removal_refusal,
    save_members,
)
from meshfed.server.raft.types import MembershipError

A, B, C, D, E = (f"127.0.0.{i}:8301" for i in range(1, 6))


def test_quorum_and_failure_tolerance() -> None:
    assert [quorum(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]
    assert failure_tolerance(3, 3) == 1 and failure_tolerance(3, 2) == 0
    assert failure_tolerance(5, 5) == 2 and failure_tolerance(4, 4) == 1
    assert failure_tolerance(5, 2) == 0  # never negative


def test_removing_a_dead_server_keeps_the_live_majority() -> None:
    alive = {A: True, B: True, C: False}
    assert removal_refusal([A, B, C], alive, C) is None
    assert removal_refusal([A, B, C, D], {A: True, B: True, C: True, D: False}, D) is None


def test_removal_that_leaves_no_live_majority_is_refused_with_the_reason() -> None:
    # 5 servers, 2 dead: removing a LIVE one leaves 4 voters of which 2 alive, and 3 are needed.
    alive = {A: True, B: True, C: True, D: False, E: False}
    reason = removal_refusal([A, B, C, D, E], alive, C)
    assert reason is not None and "only 2 of them alive" in reason and "needs 3" in reason
    # Removing a dead one instead is fine: 4 voters, 3 alive.
    assert removal_refusal([A, B, C, D, E], alive, D) is None
    # 3 servers with one dead: removing a live one leaves 1 alive of 2.
    assert removal_refusal([A, B, C], {A: True, B: True, C: False}, B) is not None


def test_removal_of_unknown_or_last_server_is_refused() -> None:
    assert "not a Raft member" in (removal_refusal([A, B, C], {A: True}, D) or "")
    assert "last server" in (removal_refusal([A], {A: True}, A) or "")


def test_addition_needs_the_live_members_to_be_a_majority_of_the_grown_cluster() -> None:
    assert addition_refusal([A, B, C], {A: True, B: True, C: True}, D) is None
    reason = addition_refusal([A, B, C], {A: True, B: True, C: False}, D)
    assert reason is not None and "remove dead servers first" in reason
    # Replacing a dead server: remove it first (3 -> 2, both alive), then add (2 -> 3 needs 2).
    assert addition_refusal([A, B], {A: True, B: True}, D) is None
    assert addition_refusal([A, B, C], {}, C) is None  # a rejoin of a member is a no-op


def test_members_file_round_trip(tmp_path: Path) -> None:
    assert load_members(str(tmp_path)) is None
    save_members(str(tmp_path), [C, A, B])
    assert load_members(str(tmp_path)) == [A, B, C]
    (tmp_path / "members.json").write_text('{"members": 3}')
    with pytest.raises(ValueError, match="not a member list"):
        load_members(str(tmp_path))


def test_members_from_a_status_answer() -> None:
    class Node:
        def __init__(self, address: str) -> None:
            self.id = address

    status = {"self": Node(B), "leader": Node(A), "partner_node_status_server_" + A: 2,
              "partner_node_status_server_" + C: 0, "raft_term": 3}
    assert members_from_status(status) == (A, [A, B, C])
    assert members_from_status({"self": Node(B), "leader": None})[0] is None


def test_operator_names_map_to_raft_addresses() -> None:
    servers = [ServerInfo(node="s1", datacenter="dc1", raft_address=A, rpc_address="127.0.0.1:8300",
                          http_address="127.0.0.1:8500"),
               ServerInfo(node="s2", datacenter="dc1", raft_address=B, rpc_address="127.0.0.2:8300",
                          http_address="127.0.0.2:8500")]
    members = [A, B, C]
    assert resolve_member(members, servers, server_id="S2") == B
    assert resolve_member(members, servers, address="127.0.0.1:8300") == A
    assert resolve_member(members, servers, address=C) == C  # a member that never published a record
    with pytest.raises(MembershipError, match="id 'nope' was not found"):
        resolve_member(members, servers, server_id="nope")
    with pytest.raises(MembershipError, match="required"):
        resolve_member(members, servers)


def _row(node: str, *, leader: bool = False, alive: bool = True, contact: float | None = 0.05,
         index: int | None = 100) -> dict[str, object]:
    return {"node": node, "raft_address": f"{node}:8301", "leader": leader, "voter": True, "server": None,
            "alive": alive, "last_contact": contact, "last_index": index}


def test_autopilot_health_counts_failure_tolerance_from_healthy_voters() -> None:
    from meshfed.server.http.routes_operator import autopilot_health_of

    healthy = autopilot_health_of({"servers": [_row("a", leader=True, contact=0.0), _row("b"), _row("c")],
                                   "term": 4})
    assert healthy["Healthy"] and healthy["FailureTolerance"] == 1
    assert [s["Healthy"] for s in healthy["Servers"]] == [True, True, True]
    assert healthy["Servers"][0]["LastTerm"] == 4 and healthy["Servers"][1]["LastIndex"] == 100

    # A dead member, and one too far behind: tolerance 0 of 4 voters with 2 healthy.
    hurt = autopilot_health_of({"servers": [_row("a", leader=True, contact=0.0), _row("b"),
                                            _row("c", alive=False, contact=None, index=0),
                                            _row("d", index=100 - 251)]})
    assert not hurt["Healthy"] and hurt["FailureTolerance"] == 0
    assert [s["Healthy"] for s in hurt["Servers"]] == [True, True, False, False]
    assert hurt["Servers"][2]["SerfStatus"] == "failed" and hurt["Servers"][2]["LastContact"] == ""
