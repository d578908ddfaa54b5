"""Live membership operations of `RaftNode` (node.py), kept apart so that the node file holds the
node: the saved member list, joining, removing a member, transferring leadership. The rules they
apply are in membership.py; everything here runs on the event loop and reaches PySyncObj only
through its thread-safe command queue or the node's tick-thread call queue.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pysyncobj.config import FAIL_REASON

from meshfed.server.raft import membership
from meshfed.server.raft.types import MembershipError, PeerHealth, RaftError

if TYPE_CHECKING:
    from meshfed.server.raft.syncobj import GuardedSyncObj

log = logging.getLogger("meshfed.server.raft.node")

# Failure reasons after which the command certainly did not commit: retrying is always safe.
NOT_APPLIED = {
    FAIL_REASON.QUEUE_FULL: "raft queue full",
    FAIL_REASON.MISSING_LEADER: "no cluster leader",
    FAIL_REASON.DISCARDED: "entry discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "not the leader",
    FAIL_REASON.REQUEST_DENIED: "request denied",
}
MAYBE_APPLIED = {
    FAIL_REASON.UNKNOWN_OUTCOME: "outcome unknown: this server installed a snapshot from the new leader",
}

# Seconds new proposals wait per leadership-transfer attempt (the in-flight ones drain meanwhile,
# so the target can be caught up and stay so until its election); writes resume right after.
TRANSFER_HOLD = 0.5
TRANSFER_HOLD_LIMIT = 2.0  # never hold writes longer per call; later attempts run without holding
# Seconds to wait for the election TimeoutNow forces before asking again: several election timeouts.
TRANSFER_ELECTION_WAIT = 2.0


class MembershipOps:
    """Mixed into RaftNode, which provides the attributes and methods declared here."""

    self_address: str
    _sync: GuardedSyncObj
    _tick_calls: collections.deque[Callable[[], None]]
    _pending: list[Any]
    _flush_scheduled: bool
    _hold_until: float
    _loop: asyncio.AbstractEventLoop | None

    def is_leader(self) -> bool:
        raise NotImplementedError

    def leader(self) -> str | None:
        raise NotImplementedError

    def peer_health(self) -> dict[str, PeerHealth]:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    @staticmethod
    def saved_members(data_dir: str | None) -> list[str] | None:
        """The member list a server with this data dir last applied, or None (never changed)."""
        return membership.load_members(os.path.join(data_dir, "raft")) if data_dir else None

    @staticmethod
    def has_log(data_dir: str | None) -> bool:
        """Whether this data dir holds a Raft journal or snapshot: the server is restarting."""
        if not data_dir:
            return False
        raft_dir = os.path.join(data_dir, "raft")
        return any(os.path.exists(os.path.join(raft_dir, name)) for name in ("journal", "snapshot"))

    @staticmethod
    def join(self_address: str, seeds: Sequence[str], cluster_key: str, data_dir: str | None,
             timeout: float = 60.0) -> list[str]:
        """Blocking: have the leader add this server, before its Raft port starts talking.
        Returns the member list (also saved, so a restart does not join again)."""
        members = membership.join_cluster(self_address, seeds, cluster_key, time.monotonic() + timeout)
        if data_dir:
            raft_dir = os.path.join(data_dir, "raft")
            os.makedirs(raft_dir, exist_ok=True)
            membership.save_members(raft_dir, members)
        return members

    def members(self) -> list[str]:
        """Every voter's Raft address, this server included (the membership it has applied)."""
        return self._sync.meshfed_members()

    @property
    def peers(self) -> list[str]:
        return [m for m in self.members() if m != self.self_address]

    @property
    def removed(self) -> bool:
        """An entry removing this server reached it: it no longer belongs to the cluster."""
        return bool(self._sync.meshfed_removed)

    def _alive(self) -> dict[str, bool]:
        return {address: health.alive for address, health in self.peer_health().items()}

    def _addition_refusal(self, address: str) -> str | None:
        return membership.addition_refusal(self.members(), self._alive(), address)

    async def remove_server(self, address: str, timeout: float = 10.0) -> None:
        """On the leader: remove a voter, unless the live voters left would not be a majority."""
        if not self.is_leader():
            raise RaftError("not the leader", maybe_applied=False)
        if address == self.self_address:
            raise MembershipError("the leader cannot remove itself: transfer leadership first")
        refusal = membership.removal_refusal(self.members(), self._alive(), address)
        if refusal:
            raise MembershipError(refusal)
        log.info("raft: removing %s from the cluster", address)
        await self._membership_change(lambda done: self._sync.removeNodeFromCluster(address, callback=done), timeout)

    async def _membership_change(self, submit: Callable[[Callable[[Any, int], None]], None], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future: asyncio.Future[int] = loop.create_future()

            def done(_result: Any, error: int, future: asyncio.Future[int] = future) -> None:
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(int(error)))

            submit(done)
            try:
                error = await asyncio.wait_for(future, max(0.1, deadline - loop.time()))
            except TimeoutError:
                raise RaftError("timed out waiting for the membership change to commit", maybe_applied=True) from None
            if error == FAIL_REASON.SUCCESS:
                return
            if error != FAIL_REASON.REQUEST_DENIED or loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)  # one change at a time: the previous one is still committing
        if error == FAIL_REASON.REQUEST_DENIED:
            raise MembershipError("another membership change is still committing; retry")
        raise RaftError(NOT_APPLIED.get(error, f"membership change failed (reason {error})"),
                        maybe_applied=error not in NOT_APPLIED)

    async def transfer_leadership(self, target: str | None = None, timeout: float = 10.0) -> str:
        """On the leader: hand leadership to `target` (or the most caught-up peer); returns the
        new leader's address once it is known. The library refuses a target that is not fully
        caught up, so under write load the request is repeated until one succeeds."""
        if not self.is_leader():
            raise RaftError("not the leader", maybe_applied=False)
        if target == self.self_address:
            return target  # already there: a retried call whose first attempt moved leadership here
        if target is not None and target not in self.peers:
            raise MembershipError(f"{target} is not a Raft member other than the leader")
        if not self.peers:
            raise MembershipError("there is no other server to transfer leadership to")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sent_at: float | None = None
        hold_limit = time.monotonic() + TRANSFER_HOLD_LIMIT
        while loop.time() < deadline:
            if not self.is_leader():
                # Stepped down: our TimeoutNow's election (or another) is under way, and whoever
                # wins it is the answer; this node may also win it back, and then asks again.
                leader = self.leader()
                if leader and leader != self.self_address:
                    self._release_hold()
                    return leader
                sent_at = None
                await asyncio.sleep(0.05)
                continue
            if sent_at is None or loop.time() - sent_at > TRANSFER_ELECTION_WAIT:
                # First attempt, or the forced election did not happen (the target lost it).
                self._hold_until = min(time.monotonic() + TRANSFER_HOLD, hold_limit)
                if await self._send_timeout_now(target):
                    sent_at = loop.time()
                else:
                    sent_at = None
            await asyncio.sleep(0.05)
        self._release_hold()
        if not self.is_leader() and self.leader() not in (None, self.self_address):
            return str(self.leader())
        raise MembershipError(
            "leadership transfer did not complete: the target must be connected and fully caught up"
        )

    async def _send_timeout_now(self, target: str | None) -> bool:
        """One attempt, on the tick thread; False when the library refused it (target behind)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def done(_result: Any, error: int) -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(int(error)))

        def attempt() -> None:
            # Proposals flushed just before the hold are still in the library's queue: appended
            # after TimeoutNow went out, they would leave the target's log behind and its voters
            # would refuse it. Append them now, so the library's caught-up check counts them.
            self._sync._checkCommandsToApply()
            self._sync.transferLeadership(target, callback=done)

        self._tick_calls.append(attempt)
        try:
            return await asyncio.wait_for(future, 2.0) == FAIL_REASON.SUCCESS
        except TimeoutError:
            return False

    def _release_hold(self) -> None:
        self._hold_until = 0.0
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)
