"""PySyncObj's SyncObj with our hooks on its private steps (names pinned to pysyncobj 0.3.17).

- dump loading keeps the journal tail (server/raft/storage.py, reference/pysyncobj.md §2.4);
- the time of the last AppendEntries received, for KnownLeader/LastContact;
- durable acknowledgements: in "always" sync mode the journal is synced at the start of every
  tick (before the leader counts itself toward a commit) and before a follower's append
  acknowledgement is sent (server/raft/durability.py);
- bounded frames: an AppendEntries message carries at most one batch of entries, so an entry
  that does not fit is sent alone, in chunks (server/raft/transport.py derives the frame cap
  from that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pysyncobj import SyncObj, SyncObjConsumer, replicated
from pysyncobj.journal import FileJournal

from meshfed.fsm import Result, StateMachine
from meshfed.server.raft import storage as raft_storage
from meshfed.server.raft.durability import SYNC_ALWAYS, JournalGuard, is_append_ack

log = logging.getLogger("meshfed.server.raft.node")

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


class FalseDivergenceFilter(logging.Filter):
    """PySyncObj logs CRITICAL "truncating already-applied log entries ... may have diverged"
    whenever a leader re-sends entries a follower already has: a false alarm under normal load
    (reference/pysyncobj.md §2.5) that would page someone. Count it and keep it at debug level."""

    MARKER = "truncating already-applied"
    suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.MARKER in record.getMessage():
            type(self).suppressed += 1
            log.debug("pysyncobj (false alarm, reference §2.5): %s", record.getMessage())
            return False
        return True


logging.getLogger("pysyncobj.syncobj").addFilter(FalseDivergenceFilter())


class FsmConsumer(SyncObjConsumer):
    """Carries the one replicated method. Built before the SyncObj (reference §1.1)."""

    def __init__(self, machine: StateMachine, on_applied: Callable[[int, int], None]) -> None:
        self._machine = machine
        self._on_applied = on_applied
        super().__init__()

    @replicated
    def apply_batch(self, payload: bytes) -> list[Result]:
        index = self._syncObj.raftLastApplied + 1
        try:
            results = self._machine.apply(index, payload)
        except BaseException as exc:  # the machine promises not to raise; a raise here wedges Raft
            log.exception("state machine raised while applying index %d", index)
            return [Result(ok=False, error=f"internal error: {exc}", code="internal")]
        self._on_applied(index, len(results))
        return results


class MeshfedSyncObj(SyncObj):
    """PySyncObj with our dump-loading step, leader-contact tracking, journal syncs before a
    commit counts this node, and bounded AppendEntries batches (private hooks, pinned)."""

    def __init__(self, *args: Any, journal_path: str | None, sync_mode: str = SYNC_ALWAYS, **kwargs: Any) -> None:
        self.meshfed_journal_path = journal_path
        self.meshfed_last_leader_contact = 0.0
        self.meshfed_peer_contact: dict[str, float] = {}  # peer id -> monotonic time of its last message
        self.meshfed_fatal = ""  # set when this node must not go on (e.g. an unreadable snapshot)
        self.meshfed_sync_mode = sync_mode
        self.meshfed_guard = JournalGuard(None, sync_mode)  # replaced once the journal exists
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
        super()._onTick(timeToWait)

    def _SyncObj__getEntries(  # noqa: N802, N803 (library names)
        self, fromIDx: int | None, count: int | None = None, maxSizeBytes: int | None = None
    ) -> list[Any]:
        entries = SyncObj._SyncObj__getEntries(self, fromIDx, count)
        return bounded_batch(entries, maxSizeBytes) if maxSizeBytes else entries

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802 (library name)
        try:
            _, last, prev, _cluster = self._SyncObj__serializer.deserialize()
            last, prev = raft_storage.as_entry(last), raft_storage.as_entry(prev)
            journal = self._SyncObj__raftLog
            current = [raft_storage.as_entry(journal[i]) for i in range(len(journal))]
            wanted = raft_storage.reconcile_journal(current, last, prev, clearJournal)
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

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:  # noqa: N802
        now = time.monotonic()
        if message.get("type") == "append_entries":
            self.meshfed_last_leader_contact = now
        self.meshfed_peer_contact[str(getattr(node, "id", node))] = now
        SyncObj._SyncObj__onMessageReceived(self, node, message)


