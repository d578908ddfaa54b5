"""PySyncObj with meshfed's hooks: the consumer that carries the one replicated method, and the
SyncObj subclass whose overrides of private methods (pinned to pysyncobj 0.3.x) add the safety the
library lacks. `RaftNode` (node.py) is the only user; nothing else imports PySyncObj.

The overrides, each with its reason at the method:
- `_SyncObj__loadDumpFile`: keep the journal tail after a snapshot (server/raft/storage.py), move
  the commit index to an installed leader snapshot, and answer proposals the snapshot covers;
- `_SyncObj__onMessageReceived`: Raft's log-matching rules on AppendEntries the library gets wrong
  (server/raft/log_matching.py), and the contact times behind KnownLeader and peer health;
- `_SyncObj__sendNextNodeIdx`: never acknowledge more than the leader sent;
- `_onTick`, `_checkCommandsToApply` and `meshfed_before_send` (called by
  server/raft/transport.py): durable acknowledgements. In "always" sync mode the journal is synced
  at the start of every tick (before the leader counts itself toward a commit), right after the
  leader appends new proposals (so its sync overlaps the followers' round trip) and before a
  follower's append acknowledgement leaves (server/raft/durability.py);
- `_SyncObj__doChangeCluster` / `_addNodeToCluster`: dynamic membership. Every change the library
  applies is written to the members file (server/raft/membership.py), and a join request over the
  utility protocol is refused unless this node leads and the quorum-safety rule allows it;
- `_onTick` / `meshfed_keepalive`: fresh follower links. The library closes a link on send when
  nothing was read from it for `connectionTimeout` and drops the message; followers never talk to
  each other, so the first RequestVote after a leader died was always lost and a second election
  round elected the leader (failover ~0.7 s p50 instead of ~0.35 s). Non-leaders send a small
  keepalive to every other server; the receiver drops it before the library sees it;
- `_SyncObj__setCurrentTerm`: counts the elections this server stands in (and logs each with
  its term), which the library's state callback misses when a candidate stands again;
- `_SyncObj__setState`: a leader that steps down restarts its election timer, as Raft's followers
  do. The library kept the deadline from before it led, long past, so the deposed leader stood in
  the next term at its next tick: it ended the election of the candidate that deposed it (a
  leadership transfer's target) and, holding the longest log, won leadership back;
- `_SyncObj__getEntries`: bounded frames. An AppendEntries message carries at most one batch of
  entries, so an entry that does not fit is sent alone, in chunks (server/raft/transport.py
  derives the frame cap from that).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from pysyncobj import SyncObj, SyncObjConsumer, replicated
from pysyncobj.config import FAIL_REASON
from pysyncobj.journal import FileJournal
from pysyncobj.monotonic import monotonic as library_clock
from pysyncobj.syncobj import _RAFT_STATE

from meshfed.fsm import CommandError, Result, StateMachine, decode_batch
from meshfed.server.raft import storage as raft_storage
from meshfed.server.raft.durability import SYNC_ALWAYS, JournalGuard, is_append_ack
from meshfed.server.raft.log_matching import plan_append, plan_unanchored
from meshfed.server.raft.membership import save_members
from meshfed.server.raft.trace import TRACE

log = logging.getLogger(__name__)

# The keepalive a non-leader sends to every other server (see the module docstring), and how many
# go out per connection timeout: three, so one late tick never lets a link go stale.
KEEPALIVE = "meshfed_keepalive"
KEEPALIVES_PER_CONNECTION_TIMEOUT = 3


class FsmConsumer(SyncObjConsumer):
    """Carries the one replicated method. Built before the SyncObj (reference §1.1)."""

    def __init__(self, machine: StateMachine, on_applied: Callable[[int, int], None]) -> None:
        self._machine = machine
        self._on_applied = on_applied
        super().__init__()

    @replicated
    def apply_batch(self, payload: bytes) -> list[Result]:
        index = self._syncObj.raftLastApplied + 1
        if TRACE is not None:
            sync = self._syncObj
            TRACE.record("apply", index=index, term=sync._term_at(index), rids=_request_ids(payload),
                         commit=sync.raftCommitIndex, current_term=sync.raftCurrentTerm, leader=sync._isLeader())
        try:
            results = self._machine.apply(index, payload)
        except BaseException as exc:  # the machine promises not to raise; a raise here wedges Raft
            log.exception("state machine raised while applying index %d", index)
            return [Result(ok=False, error=f"internal error: {exc}", code="internal")]
        self._on_applied(index, len(results))
        return results


def _request_ids(payload: bytes) -> list[str]:
    """The request ids of a log payload, for the write trace only."""
    try:
        return [rid for rid, _ in decode_batch(payload)]
    except CommandError:
        return []


def bounded_batch(entries: list[Any], max_bytes: int) -> list[Any]:
    """The entries one AppendEntries message carries: as many as fit in `max_bytes`, at least one.

    The library stops *after* the entry that crosses the budget, so one message could carry a
    batch plus an entry of any size in a single frame. We stop before it: a big entry then goes
    out alone, which the library sends in chunks of `max_bytes` (a bounded frame size).
    """
    total = 0
    for position, entry in enumerate(entries):
        total += len(entry[0])
        if total >= max_bytes:
            return entries[: max(1, position)]
    return entries


class GuardedSyncObj(SyncObj):
    """PySyncObj with our dump-loading step, log-matching guards, leader-contact tracking, journal
    syncs before a commit counts this node, and bounded AppendEntries batches (private hooks, pinned)."""

    def __init__(self, *args: Any, journal_path: str | None, sync_mode: str = SYNC_ALWAYS, **kwargs: Any) -> None:
        self.meshfed_journal_path = journal_path
        self.meshfed_last_leader_contact = 0.0
        self.meshfed_peer_contact: dict[str, float] = {}  # peer id -> monotonic time of its last message
        self.meshfed_fatal = ""  # set when this node must not go on (e.g. an unreadable snapshot)
        self.meshfed_ack_cap: int | None = None  # set while one AppendEntries is handled
        self.meshfed_rewritten_appends = 0
        self.meshfed_sync_mode = sync_mode
        self.meshfed_guard = JournalGuard(None, sync_mode)  # replaced once the journal exists
        self.meshfed_raft_dir: str | None = None  # where the members file lives (None: in memory only)
        # Asked on the tick thread before a join request is accepted: why to refuse, or None.
        self.meshfed_check_add: Callable[[str], str | None] = lambda address: None
        self.meshfed_removed = False  # a committed-or-pending entry removed this node
        # MESHFED_RAFT_KEEPALIVE=0 turns them off: only so bench_failover can measure without them.
        self.meshfed_elections_started = 0  # terms in which this server voted for itself
        self.meshfed_deadline_at_tick = 0.0  # the election deadline as the current tick began
        self.meshfed_next_keepalive = 0.0 if os.environ.get("MESHFED_RAFT_KEEPALIVE", "1") != "0" else math.inf
        super().__init__(*args, **kwargs)
        journal = self._SyncObj__raftLog
        self.meshfed_guard = JournalGuard(journal if isinstance(journal, FileJournal) else None, sync_mode)

    def meshfed_sync(self) -> None:
        """Sync every journal entry this node holds (no-op when nothing was appended since)."""
        journal = self._SyncObj__raftLog
        self.meshfed_guard.sync(journal[len(journal) - 1][1] if len(journal) else 0)

    def meshfed_before_send(self, message: dict[str, Any]) -> None:
        """Transport hook: a follower's append acknowledgement leaves only once its entries are synced."""
        if self.meshfed_sync_mode == SYNC_ALWAYS and is_append_ack(message):
            self.meshfed_sync()
            self.meshfed_guard.trace("append_ack", int(message["next_node_idx"]) - 1)

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 (library names)
        if self.meshfed_sync_mode == SYNC_ALWAYS:
            self.meshfed_sync()  # before the leader's commit step counts this node's own log
        self.meshfed_deadline_at_tick = self._SyncObj__raftElectionDeadline
        super()._onTick(timeToWait)
        self.meshfed_keepalive(time.monotonic())

    def _SyncObj__setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803 (library names)
        """Count the elections this server stands in: a new term in which it votes for itself. The
        library's state callback misses a candidate standing again after a split vote."""
        me = self._SyncObj__selfNode
        if me is not None and votedForNodeId == me.id and term > self.raftCurrentTerm:
            self.meshfed_elections_started += 1
            # How late past its timeout and with how many peers reachable: two candidates in one
            # term that both stood long after their timeouts were held back by something shared.
            connected, peers = len(self._SyncObj__connectedNodes), len(self._SyncObj__otherNodes)
            if self.meshfed_deadline_at_tick == 0:  # TimeoutNow zeroes the deadline
                log.info("raft: standing for election in term %d (the leader handed leadership over; %d of %d "
                         "peers connected)", term, connected, peers)
            else:
                late = library_clock() - self.meshfed_deadline_at_tick  # its deadlines use its clock
                log.info("raft: standing for election in term %d (%.0f ms past the election timeout, %d of %d "
                         "peers connected)", term, late * 1000, connected, peers)
        SyncObj._SyncObj__setCurrentTerm(self, term, votedForNodeId)

    def _SyncObj__setState(self, newState: int) -> None:  # noqa: N802, N803 (library names)
        if self._isLeader() and newState != _RAFT_STATE.LEADER:
            self._SyncObj__raftElectionDeadline = library_clock() + self._SyncObj__generateRaftTimeout()
        SyncObj._SyncObj__setState(self, newState)

    def meshfed_keepalive(self, now: float) -> None:
        """Keep every link of a non-leader fresh (module docstring); a leader's heartbeats and its
        followers' acknowledgements already do that for the links a leader has."""
        if now < self.meshfed_next_keepalive or self._isLeader():
            return
        self.meshfed_next_keepalive = now + self._SyncObj__conf.connectionTimeout / KEEPALIVES_PER_CONNECTION_TIMEOUT
        transport = self._SyncObj__transport
        for node in self._SyncObj__otherNodes:
            transport.send(node, {"type": KEEPALIVE})

    def _checkCommandsToApply(self) -> None:  # noqa: N802 (library name)
        """The leader appends new proposals here, sends them, then waits in poll for the acks.
        Syncing right after the append overlaps the leader's sync with the followers' round trip
        (their own syncs included); otherwise it ran at the next tick's start, after the acks had
        arrived, adding one sync to every commit. The tick-start sync stays: it is what guarantees
        the leader counts itself only for synced entries (a no-op here when nothing is new)."""
        super()._checkCommandsToApply()
        if self.meshfed_sync_mode == SYNC_ALWAYS:
            self.meshfed_sync()

    def _SyncObj__getEntries(  # noqa: N802, N803 (library names)
        self, fromIDx: int | None, count: int | None = None, maxSizeBytes: int | None = None
    ) -> list[Any]:
        entries = SyncObj._SyncObj__getEntries(self, fromIDx, count)
        return bounded_batch(entries, maxSizeBytes) if maxSizeBytes else entries

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802 (library name)
        try:
            _, last, prev, cluster = self._SyncObj__serializer.deserialize()
            last, prev = raft_storage.as_entry(last), raft_storage.as_entry(prev)
            journal = self._SyncObj__raftLog
            current = [raft_storage.as_entry(journal[i]) for i in range(len(journal))]
            wanted = raft_storage.reconcile_journal(current, last, prev, clearJournal)
            if TRACE is not None:
                TRACE.record("load_snapshot", last=last[1:], from_leader=clearJournal, commit=self._SyncObj__raftCommitIndex,
                             applied=self._SyncObj__raftLastApplied, journal=[current[0][1], current[-1][1]] if current else [],
                             kept=len(wanted) - 2)
            if current != wanted:
                kept = len(wanted) - 2
                log.info("raft: snapshot at index %d loaded; keeping %d journal entries after it", last[1], kept)
                if isinstance(journal, FileJournal) and self.meshfed_journal_path:
                    raft_storage.rewrite_journal(journal, self.meshfed_journal_path, wanted)
                else:
                    journal.clear()
                    for entry in wanted:
                        journal.add(*entry)
            self._SyncObj__raftLastApplied = last[1]
            if clearJournal and self._SyncObj__raftCommitIndex < last[1]:
                # A snapshot from the leader holds only committed entries. Its chunks did not move
                # the commit index (plan_unanchored), so it moves here, to where the state now is.
                self._SyncObj__raftCommitIndex = last[1]
                journal.setRaftCommitIndex(last[1])
            self._fail_callbacks_covered_by_snapshot(last[1])
            if clearJournal:
                self._meshfed_install_cluster(list(cluster), last[1])
            last_index = journal[len(journal) - 1][1]
            if self._SyncObj__raftCommitIndex > last_index:
                self._SyncObj__raftCommitIndex = last_index
                journal.setRaftCommitIndex(last_index)
            self._SyncObj__onSetCodeVersion(0)
        except Exception as exc:
            # Starting from the journal alone would serve a state missing everything before the
            # snapshot, silently. Refuse instead; the operator can move the file away and let the
            # node resync from the leader.
            self.meshfed_fatal = f"cannot load the Raft snapshot: {exc}"
            raise

    def meshfed_members(self) -> list[str]:
        return sorted([str(self.selfNode.id), *(str(n.id) for n in self.otherNodes)])

    def _meshfed_save_members(self) -> None:
        if self.meshfed_raft_dir:
            try:
                save_members(self.meshfed_raft_dir, self.meshfed_members())
            except OSError:
                log.exception("raft: could not write the members file; a restart would use the old membership")

    def _SyncObj__doChangeCluster(self, request: Any, reverse: bool = False) -> bool:  # noqa: N802
        changed = bool(SyncObj._SyncObj__doChangeCluster(self, request, reverse))
        if len(request) >= 2 and str(request[1]) == str(self.selfNode.id) and request[0] == "rem":
            # PySyncObj never drops its own node; note it so the server can say it was removed.
            self.meshfed_removed = not reverse
        if changed:
            log.info("raft: membership %s %s%s; members now %s", request[0], request[1], " (rolled back)" if reverse else "",
                     ",".join(self.meshfed_members()))
            self._meshfed_save_members()
        return changed

    def _addNodeToCluster(self, args: Any, callback: Any) -> None:  # noqa: N802 (library name)
        """A join request over the utility protocol (server/raft/membership.py join_cluster)."""
        address = str(args[0])
        if not self._isLeader():
            callback(None, FAIL_REASON.NOT_LEADER)
            return
        if address in self.meshfed_members():
            callback(None, FAIL_REASON.SUCCESS)  # a rejoin after a lost answer: already a member
            return
        refusal = self.meshfed_check_add(address)
        if refusal:
            log.warning("raft: join of %s refused: %s", address, refusal)
            callback(None, FAIL_REASON.REQUEST_DENIED)
            return
        log.info("raft: adding %s to the cluster", address)
        self.addNodeToCluster(address, callback)

    def _removeNodeFromCluster(self, args: Any, callback: Any) -> None:  # noqa: N802 (library name)
        """The utility protocol's `remove` would skip the quorum-safety check and the ACLs of
        `operator raft remove-peer`; removals go through the HTTP/RPC path only."""
        log.warning("raft: refused a removal of %s over the Raft port; use meshfed operator raft remove-peer", args)
        callback(None, FAIL_REASON.REQUEST_DENIED)

    def _meshfed_install_cluster(self, cluster: list[str], last_index: int) -> None:
        """After a snapshot from the leader: its member list, then the membership entries the kept
        journal tail holds after it (the library would take the snapshot's list alone)."""
        if not cluster:
            return
        me = str(self.selfNode.id)
        self._SyncObj__updateClusterConfiguration([m for m in cluster if m != me])
        journal = self._SyncObj__raftLog
        for i in range(len(journal)):
            command, index = journal[i][0], journal[i][1]
            if index > last_index:
                request = self._SyncObj__parseChangeClusterRequest(command)
                if request is not None:
                    SyncObj._SyncObj__doChangeCluster(self, request)
        self._meshfed_save_members()

    def _fail_callbacks_covered_by_snapshot(self, last_applied: int) -> None:
        """An installed snapshot jumps over log indexes whose commit callbacks the library then
        never calls (a proposal made here as leader, overwritten while it was cut off): its callers
        would wait for ever and its group-commit slot stay taken. Whether the command is in the
        snapshot is unknown, so callers hear exactly that and retry with the same request id."""
        waiting = self._SyncObj__commandsWaitingCommit
        for index in [i for i in waiting if i <= last_applied]:
            for _term, callback in waiting.pop(index):
                callback(None, FAIL_REASON.UNKNOWN_OUTCOME)

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:  # noqa: N802
        if message.get("type") == KEEPALIVE:
            return  # read, so the link is fresh: that was its whole purpose
        now = time.monotonic()
        if message.get("type") == "append_entries":
            self.meshfed_last_leader_contact = now
            if "prevLogIdx" in message and message.get("term", -1) >= self.raftCurrentTerm:
                plan = plan_append(message, self._term_at, self._SyncObj__getCurrentLogIndex())
                if plan.message is not message:
                    self.meshfed_rewritten_appends += 1
                message, self.meshfed_ack_cap = plan.message, plan.ack_cap
            elif "prevLogIdx" not in message and message.get("term", -1) >= self.raftCurrentTerm:
                message = plan_unanchored(message, self._SyncObj__raftCommitIndex).message
        self.meshfed_peer_contact[str(getattr(node, "id", node))] = now
        commit_before = self._SyncObj__raftCommitIndex
        try:
            SyncObj._SyncObj__onMessageReceived(self, node, message)
        finally:
            self.meshfed_ack_cap = None
        if TRACE is not None and self._SyncObj__raftCommitIndex != commit_before and not self._isLeader():
            TRACE.record("follower_commit", before=commit_before, after=self._SyncObj__raftCommitIndex,
                         msg_term=message.get("term"), prev=message.get("prevLogIdx"),
                         entries=len(message.get("entries") or []), snapshot_chunk="serialized" in message,
                         leader_commit=message.get("commit_index"), last=self._SyncObj__getCurrentLogIndex(),
                         last_term=self._term_at(self._SyncObj__getCurrentLogIndex()), term=self.raftCurrentTerm)

    def _SyncObj__sendNextNodeIdx(  # noqa: N802 (library name)
        self, node: Any, reset: bool = False, nextNodeIdx: int | None = None, success: bool = False  # noqa: N803
    ) -> None:
        cap = self.meshfed_ack_cap
        if cap is not None and success:
            nextNodeIdx = min(cap, self._SyncObj__getCurrentLogIndex() + 1 if nextNodeIdx is None else nextNodeIdx)
        SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nextNodeIdx, success)

    def _term_at(self, index: int) -> int | None:
        journal = self._SyncObj__raftLog
        position = index - journal[0][1]
        if 0 <= position < len(journal):
            return int(journal[position][2])
        return None
