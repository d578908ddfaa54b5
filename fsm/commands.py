"""Commands that change the state, their shape validation and their log encoding.

A command travels: HTTP/RPC handler -> `with_defaults` -> `validate` (shape only, no state) ->
group commit -> `encode_batch` -> Raft log (forever) -> `decode_batch` on every replica -> apply.

Validation that needs the state (does the check's service exist?) happens in apply, on the same
state on every replica (DESIGN.md §4). Apply also re-runs `validate`'s rules (`decode_batch` has
checked the types), so an entry written by a buggy or older proposer is rejected the same way
everywhere instead of corrupting the store.

The wire form is msgpack of a list of `[type_tag, request_id, body]`. Type tags are stored in Raft
logs and snapshots forever: never rename one; a changed body shape gets a new tag (`.../2`) and
keeps the old decoder. Bodies are `records.to_wire` dicts (snake_case); unknown body keys are
ignored so a newer proposer does not break an older replica that still understands the rest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.acl.commands import ACL_COMMANDS, ACLCommand, acl_shape_problem
from meshfed.fsm.peering.commands import PEERING_COMMANDS, PeeringCommand, peering_shape_problem
from meshfed.fsm.records import (
    CHECK_STATUSES,
    AutopilotConfig,
    CAState,
    ConfigEntry,
    FederationState,
    HealthCheck,
    Node,
    NodeService,
    ServerInfo,
)
from meshfed.fsm.restore import (
    RESTORE_COMMANDS,
    SnapshotRestoreChunk,
    SnapshotRestoreCommit,
    restore_shape_problem,
)
from meshfed.fsm.type_checks import (
    CommandError,
    check_type,
    consul_name,
    field_path,
    type_error,
)

MAX_PORT = 65535
# msgpack can carry integers in [-2**63, 2**64 - 1]; anything else cannot reach the log.


@dataclass(frozen=True)
class CatalogRegister:
    node: Node
    service: NodeService | None = None
    checks: tuple[HealthCheck, ...] = ()


@dataclass(frozen=True)
class CatalogDeregister:
    node: str
    service_id: str = ""
    check_id: str = ""


@dataclass(frozen=True)
class CheckUpdate:
    """A TTL check pass/warn/fail; `at` is unix time chosen by the proposer (apply reads no clock)."""

    node: str
    check_id: str
    status: str
    output: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class FederationStateUpsert:
    state: FederationState


@dataclass(frozen=True)
class FederationStateBatchUpsert:
    """Many federation states in one command: a secondary's full resync (issue #13) writes 1,000
    DCs in a few log entries instead of ~60, each of which woke every watcher of the table and
    cost a Raft round trip. Each state is applied as `FederationStateUpsert` would apply it."""

    states: tuple[FederationState, ...]


@dataclass(frozen=True)
class FederationStateDelete:
    datacenter: str


@dataclass(frozen=True)
class ServerRegister:
    server: ServerInfo


@dataclass(frozen=True)
class ConfigEntrySet:
    """Upsert; with `cas` (Consul's ?cas=N): 0 = create only, else the stored ModifyIndex must be N."""

    entry: ConfigEntry
    cas: int | None = None


@dataclass(frozen=True)
class ConfigEntryDelete:
    kind: str
    name: str
    cas: int | None = None


@dataclass(frozen=True)
class CAStateSet:
    """Replace the CA state in one step (roots + config, reference connect-data §C.2 step 4);
    `cas` is the stored state's ModifyIndex the proposer read (0 = none stored yet)."""

    state: CAState
    cas: int | None = None


@dataclass(frozen=True)
class AutopilotConfigSet:
    """Replace the autopilot configuration; `cas` is the ModifyIndex the proposer read."""

    config: AutopilotConfig
    cas: int | None = None


@dataclass(frozen=True)
class Noop:
    """Barrier for consistent reads: applying it proves every earlier entry is applied."""


Command = (
    CatalogRegister
    | CatalogDeregister
    | CheckUpdate
    | FederationStateUpsert
    | FederationStateBatchUpsert
    | FederationStateDelete
    | ServerRegister
    | ConfigEntrySet
    | ConfigEntryDelete
    | CAStateSet
    | AutopilotConfigSet
    | Noop
    | SnapshotRestoreChunk
    | SnapshotRestoreCommit
    | ACLCommand
    | PeeringCommand
)


# ---- defaults -----------------------------------------------------------------------------------


def with_defaults(command: Command) -> Command:
    """Fill the fields Consul's register endpoint defaults, before `validate`.

    The HTTP/RPC layer calls this; apply does not (it rejects what `validate` rejects), so the log
    holds exactly what was applied. Defaults: `Service.ID` := `Service.Service`; a check's `Node`
    := the registered node's name.
    """
    if not isinstance(command, CatalogRegister):
        return command
    service = command.service
    if service is not None and not service.id:
        service = dataclasses.replace(service, id=service.service)
    checks = tuple(
        check if check.node else dataclasses.replace(check, node=command.node.node)
        for check in command.checks
    )
    return CatalogRegister(node=command.node, service=service, checks=checks)


# ---- validation ---------------------------------------------------------------------------------

def _require(value: str, field: str, what: str) -> None:
    if not value:
        raise CommandError(field, f"{field}: missing {what}")


def _check_port(port: int, field: str) -> None:
    if not 0 <= port <= MAX_PORT:
        raise CommandError(field, f"{field}: port must be 0..{MAX_PORT}, got {port}")


def _validate_service(service: NodeService, prefix: str) -> None:
    _require(service.service, field_path(prefix, "Service"), "service name")
    _require(service.id, field_path(prefix, "ID"), "service ID (with_defaults fills it from the name)")
    _check_port(service.port, field_path(prefix, "Port"))
    for name, tagged in service.tagged_addresses.items():
        _check_port(tagged.port, field_path(prefix, f"TaggedAddresses[{name}].Port"))


def _validate_check(check: HealthCheck, node_name: str) -> None:
    _require(check.check_id, "Check.CheckID", "check ID")
    if check.status and check.status not in CHECK_STATUSES:
        raise CommandError(
            "Check.Status",
            f"Check.Status: check {check.check_id!r} has status {check.status!r}; "
            f"want one of {', '.join(CHECK_STATUSES)} or empty",
        )
    if check.node.lower() != node_name.lower():
        raise CommandError(
            "Check.Node",
            f"Check.Node: check {check.check_id!r} is for node {check.node!r}, "
            f"but the command registers node {node_name!r}",
        )


def _register_types(command: CatalogRegister) -> None:
    check_type(command.node, Node, "", renames=(("meta", "NodeMeta"),))
    if command.service is not None:
        check_type(command.service, NodeService, "Service")
    if not isinstance(command.checks, tuple):
        raise type_error("Checks", "a list", command.checks)
    for check in command.checks:
        check_type(check, HealthCheck, "Check")


def _register_rules(command: CatalogRegister) -> None:
    _require(command.node.node, "Node", "node name")
    _require(command.node.address, "Address", "node address")
    if command.service is not None:
        _validate_service(command.service, "Service")
    for check in command.checks:
        _validate_check(check, command.node.node)


def _federation_state_rules(state: FederationState) -> None:
    if not state.datacenter:
        raise CommandError("Datacenter", "missing datacenter on federation state")
    if state.primary_modify_index < 0:
        raise CommandError("PrimaryModifyIndex", "PrimaryModifyIndex: must not be negative")
    for position, gateway in enumerate(state.mesh_gateways):
        prefix = f"MeshGateways[{position}]"
        _require(gateway.node.node, f"{prefix}.Node.Node", "gateway node name")
        _validate_service(gateway.service, f"{prefix}.Service")


def _federation_batch_rules(command: FederationStateBatchUpsert) -> None:
    if not command.states:
        raise CommandError("States", "States: must hold at least one federation state")
    for position, state in enumerate(command.states):
        try:
            _federation_state_rules(state)
        except CommandError as exc:
            where = f"States[{position}]"
            raise CommandError(f"{where}.{exc.field}" if exc.field else where, f"{where}: {exc}") from None


def _require_all(value: Any, required: Sequence[str]) -> None:
    for name in required:
        _require(getattr(value, name), consul_name(name), name.replace("_", " "))


def _check_types(command: Command) -> None:
    """The type pass of `validate`, with the field labels a proposer's client knows (`NodeMeta`,
    `Service.Port`). Anything not a dataclass is left to the rules pass, which names it unknown."""
    if isinstance(command, CatalogRegister):
        _register_types(command)
    elif isinstance(command, FederationStateUpsert):
        check_type(command.state, FederationState, "")
    elif isinstance(command, ServerRegister):
        check_type(command.server, ServerInfo, "")
    elif dataclasses.is_dataclass(command) and not isinstance(command, type):
        check_type(command, type(command), "")


def validate(command: Command, *, types_checked: bool = False) -> None:
    """Check a command's shape before it is proposed; raises CommandError naming the field.

    Two passes: field types, then the rules that need more than a type (names present, ports in
    range, one active CA). `types_checked`: the command comes from `decode_batch`, which has
    type-checked it already, so apply runs the rules only. The second walk of the types was half
    of a registration's apply (issue #13: ~50 us of ~110 us per command, on every server)."""
    if not types_checked:
        _check_types(command)
    if isinstance(command, CatalogRegister):
        _register_rules(command)
    elif isinstance(command, CatalogDeregister):
        _require_all(command, ("node",))
    elif isinstance(command, CheckUpdate):
        _require_all(command, ("node", "check_id"))
        if command.status not in CHECK_STATUSES:
            raise CommandError(
                "Status", f"Status: got {command.status!r}; want one of {', '.join(CHECK_STATUSES)}"
            )
    elif isinstance(command, FederationStateUpsert):
        _federation_state_rules(command.state)
    elif isinstance(command, FederationStateBatchUpsert):
        _federation_batch_rules(command)
    elif isinstance(command, FederationStateDelete):
        if not command.datacenter:
            raise CommandError("Datacenter", "missing datacenter on federation state")
    elif isinstance(command, ServerRegister):
        _require_all(command.server, ("node", "datacenter"))
    elif isinstance(command, ConfigEntrySet):
        _require(command.entry.kind, "Kind", "kind")
        _require(command.entry.name, "Name", "name")
    elif isinstance(command, ConfigEntryDelete):
        _require_all(command, ("kind", "name"))
    elif isinstance(command, CAStateSet):
        if sum(1 for root in command.state.roots if root.get("Active")) != 1 and command.state.roots:
            raise CommandError("Roots", "there must be exactly one active CA")
    elif isinstance(command, AutopilotConfigSet):
        config = command.config
        for name, value in (("LastContactThreshold", config.last_contact_threshold),
                            ("MaxTrailingLogs", config.max_trailing_logs), ("MinQuorum", config.min_quorum),
                            ("ServerStabilizationTime", config.server_stabilization_time)):
            if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise CommandError(name, "must be a non-negative number")
    elif isinstance(command, Noop):
        return
    elif isinstance(command, RESTORE_COMMANDS):
        if (problem := restore_shape_problem(command)) is not None:
            raise CommandError(*problem)
    elif isinstance(command, ACL_COMMANDS):
        if (problem := acl_shape_problem(command)) is not None:
            raise CommandError(*problem)
    elif isinstance(command, PEERING_COMMANDS):
        if (problem := peering_shape_problem(command)) is not None:
            raise CommandError(*problem)
    else:
        raise CommandError("", f"unknown command type {type(command).__name__}")
