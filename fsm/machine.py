"""The replicated state machine: applies committed log entries to the state store.

Contract with the Raft adapter (server/raft.py), which calls in on PySyncObj's tick thread:
1. `apply(index, payload)` once per committed entry, in log order. `payload` is a batch of
   commands (group commit); every command in it gets `index` as its create/modify index, and its
   own `Result`. Apply never raises (reference/pysyncobj.md §1.3: a raising apply wedges the node).
2. `snapshot_data()` / `restore_data()` for log compaction; the data includes the table indexes,
   the dedupe window, `last_index`, the index offset and a half-uploaded backup restore, so a
   restored replica continues exactly like the original.
Readers on the event loop call `state`'s read methods at any time; they see whole entries only.

Per entry:
- `index <= last_index`: a replay (the journal can re-deliver entries a restored snapshot already
  holds). Nothing is applied; every command gets `Result(ok=True, value=None)`. The original
  results were delivered when the entry was first applied, and a replay has no waiting caller.
- undecodable payload: one `internal` result; `last_index` still moves (the entry was consumed).
- otherwise each command, in order: a request id seen in the dedupe window returns the remembered
  result (a client retrying after an unknown outcome, pysyncobj.md §6); else it is validated and
  applied atomically: handlers decide everything first and mutate only once nothing can fail,
  so a rejected command changes nothing.
After the entry, subscribers get `(changed tables, index)` once, outside every lock.

Indexes: `last_index` is the Raft index (what replay detection compares); records and tables get
the *store index* `raft index + index_offset`. The offset is 0 until a backup is restored
(fsm/restore.py): the backup's records keep their indexes, which may be far above this cluster's
Raft index (a fresh DC restoring a busy one's backup), so the restore raises the offset until the
restore's own store index is above both the backup's and everything served before; writes then
continue above it, X-Consul-Index never goes backwards, and every blocking query wakes. Raft's own
index cannot jump as Consul's does on restore (PySyncObj has no such operation), hence the offset.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from meshfed.fsm.acl.apply import ACL_HANDLERS, ACLRejected
from meshfed.fsm.commands import Command, validate
from meshfed.fsm.handlers import HANDLERS, Rejected
from meshfed.fsm.log_entries import decode_batch
from meshfed.fsm.machine_data import parse_machine_data
from meshfed.fsm.peering.apply import PEERING_HANDLERS, PeeringRejected
from meshfed.fsm.restore import (
    RestoreRejected,
    RestoreStaging,
    SnapshotRestoreChunk,
    SnapshotRestoreCommit,
)
from meshfed.fsm.results import (
    CODE_INTERNAL,
    CODE_INVALID,
    Result,
    failure,
    success,
)
from meshfed.fsm.snapshot import SnapshotError
from meshfed.fsm.snapshot_format import STAGING_KEY, decode_backup, state_index
from meshfed.fsm.state import TABLES, StateStore
from meshfed.fsm.store_writer import StoreWriter
from meshfed.fsm.type_checks import CommandError

# How many request ids apply remembers. A client retries within seconds; at thousands of writes
# a second this still covers the retry window, and it bounds the snapshot's size.
DEDUPE_WINDOW = 10_000

Subscriber = Callable[[frozenset[str], int], None]


class StateMachine:
    """Deterministic apply of log entries to a `StateStore`; see the module docstring."""

    def __init__(self, state: StateStore | None = None) -> None:
        self.state = state if state is not None else StateStore()
        self._last_index = 0
        self._index_offset = 0
        self._staging = RestoreStaging()
        self._dedupe: OrderedDict[str, Result] = OrderedDict()
        self._subscribers: list[Subscriber] = []
        # Serialises apply, snapshot and restore, should the adapter ever call them from two threads.
        self._apply_lock = threading.Lock()
        self.subscriber_errors = 0  # callbacks that raised; exported as a metric by the server

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def index_offset(self) -> int:
        return self._index_offset

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(changed_tables, index)` after each entry that changed something.

        It runs on the apply thread: hand work to the event loop (`call_soon_threadsafe`) and
        return. An exception from it is counted in `subscriber_errors` and otherwise ignored.
        """
        self._subscribers.append(callback)

    # ---- apply ----------------------------------------------------------------------------------

    def apply(self, index: int, payload: bytes) -> list[Result]:
        try:
            results, changed = self._apply_entry(index, payload)
        except Exception as exc:  # a bug; never let it reach the tick thread
            return [failure(CODE_INTERNAL, f"apply of entry {index} failed: {type(exc).__name__}: {exc}")]
        if changed:
            self._notify(frozenset(changed), index + self._index_offset)
        return results

    def _apply_entry(self, index: int, payload: bytes) -> tuple[list[Result], set[str]]:
        with self._apply_lock:
            try:
                entries = decode_batch(payload)
            except CommandError as exc:
                self._last_index = max(self._last_index, index)
                return [failure(CODE_INTERNAL, f"undecodable log entry {index}: {exc}")], set()
            if index <= self._last_index:
                return [success() for _ in entries], set()
            results = []
            with self.state.writer() as writer:
                for request_id, command in entries:
                    remembered = self._dedupe.get(request_id) if request_id else None
                    if remembered is not None:
                        results.append(remembered)
                        continue
                    result = self._apply_command(writer, index, command)
                    if request_id:
                        self._remember(request_id, result)
                    results.append(result)
                changed = set(writer.changed)
            self._last_index = index
            return results, changed

    def _remember(self, request_id: str, result: Result) -> None:
        self._dedupe[request_id] = result
        while len(self._dedupe) > DEDUPE_WINDOW:
            self._dedupe.popitem(last=False)

    def _apply_command(self, writer: StoreWriter, raft_index: int, command: Command) -> Result:
        index = raft_index + self._index_offset  # per command: a restore earlier in the entry moves it
        try:
            validate(command, types_checked=True)  # decode_batch type-checked every command
            if isinstance(command, SnapshotRestoreChunk):
                return success(self._staging.stage(command))
            if isinstance(command, SnapshotRestoreCommit):
                if command.abort:
                    return success(self._staging.abort(command.restore_id))
                return success(self._apply_restore(writer, raft_index, command))
            handler = _HANDLERS[type(command)]
            return success(handler(writer, index, command))
        except CommandError as exc:
            return failure(CODE_INVALID, str(exc))
        except (Rejected, ACLRejected, PeeringRejected) as exc:
            return failure(exc.code, str(exc))
        except RestoreRejected as exc:
            return failure(CODE_INVALID, f"snapshot restore refused: {exc}")
        except Exception as exc:  # handlers mutate last, so a bug here has changed nothing
            return failure(CODE_INTERNAL, f"{type(command).__name__} failed: {type(exc).__name__}: {exc}")

    def _apply_restore(self, writer: StoreWriter, raft_index: int, command: SnapshotRestoreCommit) -> int:
        """Replace the whole state with the assembled backup; returns the restore's store index.
        Decides everything first: a bad backup raises and leaves the state untouched."""
        blob = self._staging.take(command)
        try:
            machine = decode_backup(blob).machine
            _, dedupe, _, _ = parse_machine_data(machine)
        except (SnapshotError, ValueError) as exc:
            raise RestoreRejected(str(exc)) from exc
        restored_at = max(raft_index + self._index_offset, state_index(machine) + 1)
        try:
            writer.replace_all(machine["tables"], restored_at)
        except ValueError as exc:
            raise RestoreRejected(str(exc)) from exc
        self._index_offset = restored_at - raft_index
        self._dedupe = dedupe
        return restored_at

    def _notify(self, changed: frozenset[str], index: int) -> None:
        for callback in list(self._subscribers):
            try:
                callback(changed, index)
            except Exception:
                self.subscriber_errors += 1

    # ---- snapshot -------------------------------------------------------------------------------

    def snapshot_data(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here, as plain msgpack-able data."""
        return self.snapshot_capture()()

    def snapshot_capture(self) -> Callable[[], dict[str, Any]]:
        """`snapshot_data()` in two steps (see `StateStore.capture`): the state is fixed now, under
        the apply lock, and converted by the returned function later, on any thread, while apply
        goes on. The Raft adapter writes its snapshots this way, and so does a backup."""
        with self._apply_lock:
            last_index, offset = self._last_index, self._index_offset
            tables = self.state.capture()
            dedupe = list(self._dedupe.items())  # Results are frozen
            staged = self._staging.export()

        def render() -> dict[str, Any]:
            data = {
                "last_index": last_index,
                "index_offset": offset,
                "tables": tables(),
                "dedupe": [[rid, result.to_wire()] for rid, result in dedupe],
            }
            if staged is not None:
                data[STAGING_KEY] = staged
            return data

        return render

    def restore_data(self, data: dict[str, Any]) -> None:
        """Replace all state with `snapshot_data()` output. On malformed data raises SnapshotError
        and keeps the current state; on success notifies subscribers with every table."""
        with self._apply_lock:
            try:
                last_index, dedupe, offset, staging = parse_machine_data(data)
                self.state.load(data["tables"])
            except Exception as exc:
                raise SnapshotError(f"cannot restore snapshot data: {exc}") from exc
            self._last_index = last_index
            self._dedupe = dedupe
            self._index_offset = offset
            self._staging = staging
        self._notify(frozenset(TABLES), last_index + offset)


# One dispatch table: the core tables' handlers and those of the ACL and peering tables.
_HANDLERS: dict[type, Callable[[StoreWriter, int, Any], Any]] = {**HANDLERS, **ACL_HANDLERS, **PEERING_HANDLERS}
