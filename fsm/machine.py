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
from dataclasses import replace
from typing import Any

from meshfed.fsm.acl.apply import ACL_HANDLERS, ACLRejected
from meshfed.fsm.commands import (
    AutopilotConfigSet,
    CAStateSet,
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    Command,
    CommandError,
    ConfigEntryDelete,
    ConfigEntrySet,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    ServerRegister,
    validate,
)
from meshfed.fsm.log_entries import decode_batch
from meshfed.fsm.machine_data import parse_machine_data
from meshfed.fsm.peering.apply import PEERING_HANDLERS, PeeringRejected
from meshfed.fsm.records import STATUS_CRITICAL, HealthCheck, NodeService
from meshfed.fsm.restore import (
    RestoreRejected,
    RestoreStaging,
    SnapshotRestoreChunk,
    SnapshotRestoreCommit,
)
from meshfed.fsm.results import (
    CODE_INTERNAL,
    CODE_INVALID,
    CODE_NOT_FOUND,
    Result,
    failure,
    success,
)
from meshfed.fsm.snapshot import SnapshotError
from meshfed.fsm.snapshot_format import STAGING_KEY, decode_backup, state_index
from meshfed.fsm.state import TABLES, StateStore, StoreWriter

# How many request ids apply remembers. A client retries within seconds; at thousands of writes
# a second this still covers the retry window, and it bounds the snapshot's size.
DEDUPE_WINDOW = 10_000

Subscriber = Callable[[frozenset[str], int], None]


class _Rejected(Exception):
    """A state-dependent rejection raised by a handler before it mutated anything."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _upserted(existing: Any, incoming: Any, index: int) -> Any:
    """The record to store for an upsert, or None when `existing` already says the same thing
    (Consul's IsSame: no write, no index bump, so blocking queries do not wake for nothing)."""
    if existing is None:
        return replace(incoming, create_index=index, modify_index=index)
    if existing.is_same(incoming):
        return None
    return replace(incoming, create_index=existing.create_index, modify_index=index)


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
            validate(command)
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
        except (_Rejected, ACLRejected, PeeringRejected) as exc:
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
        with self._apply_lock:
            data = {
                "last_index": self._last_index,
                "index_offset": self._index_offset,
                "tables": self.state.export(),
                "dedupe": [[rid, result.to_wire()] for rid, result in self._dedupe.items()],
            }
            staged = self._staging.export()
            if staged is not None:
                data[STAGING_KEY] = staged
            return data

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


# ---- handlers: decide first, mutate last --------------------------------------------------------


def _apply_register(writer: StoreWriter, index: int, command: CatalogRegister) -> None:
    existing_node = writer.node(command.node.node)
    new_node = _upserted(existing_node, command.node, index)
    node_name = (new_node or existing_node).node

    services = writer.services_of(node_name)
    new_service = None
    if command.service is not None:
        new_service = _upserted(services.get(command.service.id), command.service, index)
        if new_service is not None:
            services[new_service.id] = new_service

    new_checks: dict[str, HealthCheck] = {}
    for check in command.checks:
        prepared = _prepared_check(check, node_name, services)
        stored = _upserted(writer.check(node_name, check.check_id), prepared, index)
        if stored is not None:
            new_checks[stored.check_id] = stored
    if new_service is not None:
        new_checks.update(_checks_following_service(writer, node_name, new_service, new_checks, index))

    if new_node is not None:
        writer.put_node(new_node, index)
    if new_service is not None:
        writer.put_service(node_name, new_service, index)
    for stored in new_checks.values():
        writer.put_check(stored, index)


def _prepared_check(check: HealthCheck, node_name: str, services: dict[str, NodeService]) -> HealthCheck:
    """The check as it will be stored: denormalised service name/tags, default status."""
    status = check.status or STATUS_CRITICAL
    if not check.service_id:
        return replace(check, node=node_name, status=status, service_name="", service_tags=())
    service = services.get(check.service_id)
    if service is None:
        raise _Rejected(
            CODE_INVALID,
            f"Check.ServiceID: check {check.check_id!r} names service {check.service_id!r}, "
            f"which is not registered on node {node_name!r}",
        )
    return replace(
        check,
        node=node_name,
        status=status,
        service_name=service.service,
        service_tags=service.tags,
    )


def _checks_following_service(
    writer: StoreWriter,
    node_name: str,
    service: NodeService,
    replaced: dict[str, HealthCheck],
    index: int,
) -> dict[str, HealthCheck]:
    """Existing checks of a re-registered service whose copied name/tags went stale."""
    updated = {}
    for check_id, check in writer.checks_of(node_name).items():
        if check.service_id != service.id or check_id in replaced:
            continue
        if check.service_name != service.service or check.service_tags != service.tags:
            updated[check_id] = replace(
                check, service_name=service.service, service_tags=service.tags, modify_index=index
            )
    return updated


def _apply_deregister(writer: StoreWriter, index: int, command: CatalogDeregister) -> None:
    if not command.service_id and not command.check_id:
        writer.delete_node(command.node, index)
        return
    if command.service_id:
        writer.delete_service(command.node, command.service_id, index)
    if command.check_id:
        writer.delete_check(command.node, command.check_id, index)


def _apply_check_update(writer: StoreWriter, index: int, command: CheckUpdate) -> None:
    existing = writer.check(command.node, command.check_id)
    if existing is None:
        raise _Rejected(CODE_NOT_FOUND, f"CheckID: no check {command.check_id!r} on node {command.node!r}")
    if existing.status == command.status and existing.output == command.output:
        writer.put_check_quietly(replace(existing, status_updated_at=command.at))
        return
    writer.put_check(
        replace(
            existing,
            status=command.status,
            output=command.output,
            status_updated_at=command.at,
            modify_index=index,
        ),
        index,
    )


def _apply_federation_state_upsert(writer: StoreWriter, index: int, command: FederationStateUpsert) -> bool:
    """reference/federation.md §2.2: whole-row replace, always bumps the table index."""
    state = command.state
    existing = writer.federation_state(state.datacenter)
    writer.put_federation_state(
        replace(
            state,
            create_index=existing.create_index if existing is not None else index,
            modify_index=index,
            primary_modify_index=state.primary_modify_index or index,
        ),
        index,
    )
    return True


def _apply_federation_state_delete(writer: StoreWriter, index: int, command: FederationStateDelete) -> None:
    """reference/federation.md §2.3: a missing row is a silent no-op without a bump."""
    writer.delete_federation_state(command.datacenter, index)


def _apply_server_register(writer: StoreWriter, index: int, command: ServerRegister) -> None:
    existing = writer.server(command.server.node)
    if existing is not None:
        unchanged = replace(
            command.server, create_index=existing.create_index, modify_index=existing.modify_index
        )
        if unchanged == existing:
            return
    created = existing.create_index if existing is not None else index
    writer.put_server(replace(command.server, create_index=created, modify_index=index), index)


def _apply_config_entry_set(writer: StoreWriter, index: int, command: ConfigEntrySet) -> bool:
    """connect-data §B.2 step 6: plain upsert keeps CreateIndex; CAS 0 = create only, else the
    stored ModifyIndex must equal `cas`. The reply is the boolean Consul's HTTP API returns."""
    entry = command.entry
    existing = writer.config_entry(entry.kind, entry.name)
    if command.cas is not None:
        if command.cas == 0 and existing is not None:
            return False
        if command.cas != 0 and (existing is None or existing.modify_index != command.cas):
            return False
    created = existing.create_index if existing is not None else index
    writer.put_config_entry(replace(entry, create_index=created, modify_index=index), index)
    return True


def _apply_config_entry_delete(writer: StoreWriter, index: int, command: ConfigEntryDelete) -> bool:
    """A missing entry is deleted already (true, no bump); with `cas` the ModifyIndex must match."""
    existing = writer.config_entry(command.kind, command.name)
    if existing is None:
        return True
    if command.cas is not None and existing.modify_index != command.cas:
        return False
    writer.delete_config_entry(command.kind, command.name, index)
    return True


def _apply_ca_state_set(writer: StoreWriter, index: int, command: CAStateSet) -> bool:
    existing = writer.ca()
    if command.cas is not None and (existing.modify_index if existing is not None else 0) != command.cas:
        return False
    created = existing.create_index if existing is not None else index
    writer.put_ca(replace(command.state, create_index=created, modify_index=index), index)
    return True


def _apply_autopilot_config_set(writer: StoreWriter, index: int, command: AutopilotConfigSet) -> bool:
    existing = writer.autopilot()
    if command.cas is not None and (existing.modify_index if existing is not None else 0) != command.cas:
        return False
    created = existing.create_index if existing is not None else index
    writer.put_autopilot(replace(command.config, create_index=created, modify_index=index), index)
    return True


def _apply_noop(writer: StoreWriter, index: int, command: Noop) -> int:
    return index


_HANDLERS: dict[type, Callable[[StoreWriter, int, Any], Any]] = {
    ConfigEntrySet: _apply_config_entry_set,
    ConfigEntryDelete: _apply_config_entry_delete,
    CAStateSet: _apply_ca_state_set,
    AutopilotConfigSet: _apply_autopilot_config_set,
    CatalogRegister: _apply_register,
    CatalogDeregister: _apply_deregister,
    CheckUpdate: _apply_check_update,
    FederationStateUpsert: _apply_federation_state_upsert,
    FederationStateDelete: _apply_federation_state_delete,
    ServerRegister: _apply_server_register,
    Noop: _apply_noop,
    **ACL_HANDLERS,
    **PEERING_HANDLERS,
}
