"""Apply handlers of the core tables: catalog (nodes, services, checks), federation states,
servers, config entries and the Connect CA. ACL and peering commands have their own handler tables
(fsm/acl/apply.py, fsm/peering/apply.py); fsm/machine.py merges the three into one dispatch table.

Every handler keeps the machine's rule (fsm/machine.py): decide first, mutate last. A refusal is
a `Rejected` raised before anything changed, so a rejected command changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from meshfed.fsm.commands import (
    AutopilotConfigSet,
    CAStateSet,
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    ConfigEntryDelete,
    ConfigEntrySet,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    ServerRegister,
)
from meshfed.fsm.records import STATUS_CRITICAL, HealthCheck, NodeService
from meshfed.fsm.results import CODE_INVALID, CODE_NOT_FOUND
from meshfed.fsm.store_writer import StoreWriter


class Rejected(Exception):
    """A state-dependent rejection raised by a handler before it mutated anything."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def upserted(existing: Any, incoming: Any, index: int) -> Any:
    """The record to store for an upsert, or None when `existing` already says the same thing
    (Consul's IsSame: no write, no index bump, so blocking queries do not wake for nothing)."""
    if existing is None:
        return replace(incoming, create_index=index, modify_index=index)
    if existing.is_same(incoming):
        return None
    return replace(incoming, create_index=existing.create_index, modify_index=index)


def _apply_register(writer: StoreWriter, index: int, command: CatalogRegister) -> None:
    existing_node = writer.node(command.node.node)
    new_node = upserted(existing_node, command.node, index)
    node_name = (new_node or existing_node).node

    services = writer.services_of(node_name)
    new_service = None
    if command.service is not None:
        new_service = upserted(services.get(command.service.id), command.service, index)
        if new_service is not None:
            services[new_service.id] = new_service

    new_checks: dict[str, HealthCheck] = {}
    for check in command.checks:
        prepared = _prepared_check(check, node_name, services)
        stored = upserted(writer.check(node_name, check.check_id), prepared, index)
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
        raise Rejected(
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
        raise Rejected(CODE_NOT_FOUND, f"CheckID: no check {command.check_id!r} on node {command.node!r}")
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


def _apply_federation_state_batch_upsert(writer: StoreWriter, index: int, command: FederationStateBatchUpsert) -> int:
    """Each state as `_apply_federation_state_upsert` applies it, in order (a datacenter named
    twice ends with the later state), all at this entry's index; returns how many were written.
    Nothing here can fail half-way: `validate` has checked every state before the first write."""
    for state in command.states:
        _apply_federation_state_upsert(writer, index, FederationStateUpsert(state))
    return len(command.states)


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


HANDLERS: dict[type, Callable[[StoreWriter, int, Any], Any]] = {
    ConfigEntrySet: _apply_config_entry_set,
    ConfigEntryDelete: _apply_config_entry_delete,
    CAStateSet: _apply_ca_state_set,
    CatalogRegister: _apply_register,
    CatalogDeregister: _apply_deregister,
    CheckUpdate: _apply_check_update,
    FederationStateUpsert: _apply_federation_state_upsert,
    FederationStateBatchUpsert: _apply_federation_state_batch_upsert,
    FederationStateDelete: _apply_federation_state_delete,
    ServerRegister: _apply_server_register,
    AutopilotConfigSet: _apply_autopilot_config_set,
    Noop: _apply_noop,
}
