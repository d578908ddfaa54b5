"""Raft membership: the quorum-safety rules a change must pass, the file that makes the current
membership survive restarts, and the join handshake a new server runs before its Raft port talks.

Why a members file: PySyncObj applies a membership entry when it is appended, keeps the result
only in memory, and on restart starts from the addresses it is constructed with (upstream #133:
the topology in the dump overrides them, and nodes disagree after restarts). The adapter writes
the member list every time the library changes it (append, rollback, snapshot install) and a
restarted server starts from that list, not from `retry_join`.

Why join before start: a node that dials the cluster before the leader added it is refused by
every member (its address is unknown to their transport), and with its own election timer running
it would bump terms (upstream #89). So the joiner asks the leader to add it first, through the
library's own utility protocol on the Raft port (encrypted with the cluster key), and only then
starts its Raft node with the member list the leader reported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Mapping
from typing import Any

MEMBERS_FILE = "members.json"


def quorum(voters: int) -> int:
    """Votes a decision needs among `voters` servers."""
    return voters // 2 + 1


def failure_tolerance(voters: int, healthy: int) -> int:
    """Servers that may still fail with the cluster keeping a majority (Consul's autopilot value)."""
    return max(0, healthy - quorum(voters))


def removal_refusal(members: Collection[str], alive: Mapping[str, bool], target: str) -> str | None:
    """Why removing `target` must be refused, or None when the cluster keeps a live majority.

    The rule: after the removal, the live voters must still be a majority of the voters left, or
    the cluster could not commit the next entry (nor, with PySyncObj, the removal itself)."""
    if target not in members:
        return f"{target} is not a Raft member"
    remaining = [m for m in members if m != target]
    if not remaining:
        return "refusing to remove the last server of the datacenter"
    live = sum(1 for m in remaining if alive.get(m, False))
    need = quorum(len(remaining))
    if live < need:
        return (f"refusing to remove {target}: {len(remaining)} voters would remain, only {live} of them alive, "
                f"and a majority needs {need}; bring servers back (or remove dead ones) first")
    return None


def addition_refusal(members: Collection[str], alive: Mapping[str, bool], new: str) -> str | None:
    """Why adding `new` must be refused, or None. The new server starts empty and counts toward
    the majority at once (PySyncObj has no non-voters), so the members alive now must already
    be a majority of the grown cluster; otherwise writes would stall until it caught up."""
    if new in members:
        return None  # already a member: a rejoin is a no-op
    live = sum(1 for m in members if alive.get(m, False))
    need = quorum(len(members) + 1)
    if live < need:
        return (f"refusing to add {new}: {len(members) + 1} voters would need {need} alive but only {live} are; "
                "remove dead servers first")
    return None


# ---- the members file -----------------------------------------------------------------------------


def load_members(raft_dir: str) -> list[str] | None:
    """The member list this server last saw, or None when it never saw a membership change."""
    path = os.path.join(raft_dir, MEMBERS_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ValueError(f"{path}: not a member list")
    return members


def save_members(raft_dir: str, members: Collection[str]) -> None:
    """Atomically replace the members file (write, fsync, rename, fsync the directory)."""
    path = os.path.join(raft_dir, MEMBERS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"members": sorted(members)}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(raft_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- joining a running cluster ------------------------------------------------------------------


class JoinError(Exception):
    """The join handshake failed; the message says why, for the operator."""


def members_from_status(status: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(leader address, every member address) from a PySyncObj `getStatus()` answer."""
    leader = status.get("leader")
    leader_id = None if leader is None else str(getattr(leader, "id", leader))
    prefix = "partner_node_status_server_"
    members = [str(getattr(status.get("self"), "id", status.get("self")))]
    members += [key[len(prefix):] for key in status if key.startswith(prefix)]
    return leader_id, sorted(set(members))


def join_cluster(self_address: str, seeds: Collection[str], cluster_key: str, deadline: float,
                 attempt_timeout: float = 3.0) -> list[str]:
    """Ask the leader (found through any seed) to add `self_address`; returns the member list to
    start with (self included). Retries until `deadline` (monotonic); raises JoinError."""
    from pysyncobj.utility import TcpUtility, UtilityException

    last_error = "no seed answered"
    while time.monotonic() < deadline:
        for seed in seeds:
            try:
                utility = TcpUtility(cluster_key, attempt_timeout)
                status = utility.executeCommand(seed, ["status"])
                if status is None:
                    raise JoinError("not reachable")
                if not isinstance(status, dict):
                    raise JoinError(f"{seed} answered {status!r}")
                leader, _ = members_from_status(status)
                if leader is None:
                    last_error = f"{seed} knows no leader yet"
                    continue
                answer = TcpUtility(cluster_key, attempt_timeout).executeCommand(leader, ["add", self_address])
                if not (isinstance(answer, str) and answer.startswith("SUCCESS")):
                    last_error = (f"the leader {leader} refused to add {self_address}: {answer} "
                                  "(its log says why: a majority must stay alive)")
                    continue
                leader_status = TcpUtility(cluster_key, attempt_timeout).executeCommand(leader, ["status"])
                if not isinstance(leader_status, dict):
                    raise JoinError(f"the leader {leader} did not report its members after adding us")
                _, members = members_from_status(leader_status)
                return sorted(set(members) | {self_address})
            except (UtilityException, OSError, JoinError) as exc:
                last_error = f"{seed}: {exc}"
        time.sleep(0.5)
    raise JoinError(f"could not join the cluster: {last_error}")
