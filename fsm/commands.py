"""Commands that change the state, their shape validation and their log encoding.

A command travels: HTTP/RPC handler -> `with_defaults` -> `validate` (shape only, no state) ->
group commit -> `encode_batch` -> Raft log (forever) -> `decode_batch` on every replica -> apply.

Validation that needs the state (does the check's service exist?) happens in apply, on the same
state on every replica (DESIGN.md §4). Apply also re-runs `validate`, so an entry written by a
buggy or older proposer is rejected the same way everywhere instead of corrupting the store.

The wire form is msgpack of a list of `[type_tag, request_id, body]`. Type tags are stored in Raft
logs and snapshots forever: never rename one; a changed body shape gets a new tag (`.../2`) and
keeps the old decoder. Bodies are `records.to_wire` dicts (snake_case); unknown body keys are
ignored so a newer proposer does not break an older replica that still understands the rest.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from types import NoneType, UnionType
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

MAX_PORT = 65535
# msgpack can carry integers in [-2**63, 2**64 - 1]; anything else cannot reach the log.
_MIN_WIRE_INT = -(2**63)
_MAX_WIRE_INT = 2**64 - 1


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


class CommandError(ValueError):
    """A command with a bad shape; `field` uses the names Consul clients know (`Service.Port`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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

# snake_case attribute -> the JSON key Consul clients send, where simple capitalisation is wrong.
_CONSUL_NAMES = {"id": "ID", "check_id": "CheckID", "service_id": "ServiceID", "ttl": "TTL"}


def _consul_name(attribute: str) -> str:
    known = _CONSUL_NAMES.get(attribute)
    if known is not None:
        return known
    return "".join(part.capitalize() for part in attribute.split("_"))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# (record class, renames) -> [(attribute, type hint, Consul label)]; hints resolved once, since
# resolving them and building labels per value dominated the cost of apply.
_FIELDS: dict[tuple[type, tuple[tuple[str, str], ...]], list[tuple[str, Any, str]]] = {}


def _fields_of(cls: type, renames: tuple[tuple[str, str], ...]) -> list[tuple[str, Any, str]]:
    fields = _FIELDS.get((cls, renames))
    if fields is None:
        labels = dict(renames)
        fields = [
            (name, hint, labels.get(name) or _consul_name(name))
            for name, hint in typing.get_type_hints(cls).items()
        ]
        _FIELDS[(cls, renames)] = fields
    return fields


# hint -> (get_origin, get_args): those two were a quarter of a federation state's apply (issue #13:
# 4 ms per 4-gateway record, on every server); hints are few and hashable.
_HINT_SHAPES: dict[Any, tuple[Any, tuple[Any, ...]]] = {}


def type_error(path: str, expected: str, value: Any) -> CommandError:
    return CommandError(path, f"{path}: expected {expected}, got {type(value).__name__} {value!r:.60}")


# Hints whose check passes whenever the value's type is exactly the hinted type (float and the
# containers need more than that). Hints are the resolved ones of _fields_of.
_FAST_EXACT: dict[Any, type] = {str: str, bool: bool, int: int, bytes: bytes}


def check_type(value: Any, hint: Any, path: str, renames: tuple[tuple[str, str], ...] = ()) -> None:
    """Check `value` against a record's type hint, recursively.

    Decoded log entries can hold anything msgpack can express; the store relies on names being
    strings and ports being ints, so a wrong type must stop at the door, not half-way into apply.
    """
    if hint is Any:
        return
    if hint is str:
        if not isinstance(value, str):
            raise type_error(path, "a string", value)
        return
    if hint is bytes:
        if not isinstance(value, bytes):
            raise type_error(path, "bytes", value)
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise type_error(path, "a boolean", value)
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error(path, "an integer", value)
        if not _MIN_WIRE_INT <= value <= _MAX_WIRE_INT:
            raise CommandError(path, f"{path}: integer {value} does not fit in 64 bits")
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise type_error(path, "a number", value)
        if not math.isfinite(value):
            raise CommandError(path, f"{path}: must be a finite number, got {value!r}")
        return
    shape = _HINT_SHAPES.get(hint)
    if shape is None:
        shape = _HINT_SHAPES[hint] = (typing.get_origin(hint), typing.get_args(hint))
    origin, args = shape
    if origin in (UnionType, typing.Union):
        if value is None and NoneType in args:
            return
        concrete = [arg for arg in args if arg is not NoneType]
        if len(concrete) == 1:
            check_type(value, concrete[0], path, renames)
            return
        raise CommandError(path, f"{path}: unsupported union type {hint}")
    if origin is tuple:
        if not isinstance(value, tuple):
            raise type_error(path, "a list", value)
        for position, item in enumerate(value):
            check_type(item, args[0], f"{path}[{position}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise type_error(path, "an object", value)
        for key, item in value.items():
            if not isinstance(key, str):
                raise type_error(f"{path} key", "a string", key)
            check_type(item, args[1], f"{path}[{key}]")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise type_error(path, hint.__name__, value)
        for name, field_hint, label in _fields_of(hint, renames):
            item = getattr(value, name)
            # The common case first, without building the field's path (most of the cost when
            # every field is fine, and this runs for every command on every server).
            if _FAST_EXACT.get(field_hint) is type(item) and (field_hint is not int or _MIN_WIRE_INT <= item <= _MAX_WIRE_INT):
                continue
            check_type(item, field_hint, f"{path}.{label}" if path else label)
        return
    raise CommandError(path, f"{path}: unsupported type {hint}")  # a records.py change not handled here


def check_record_types(record: Any, cls: type, path: str = "") -> None:
    """Raise CommandError unless `record` is a `cls` whose fields (recursively) have their
    declared types; the snapshot loader uses it too, so a bad row never reaches a reader."""
    check_type(record, cls, path)


def _require(value: str, field: str, what: str) -> None:
    if not value:
        raise CommandError(field, f"{field}: missing {what}")


def _check_port(port: int, field: str) -> None:
    if not 0 <= port <= MAX_PORT:
        raise CommandError(field, f"{field}: port must be 0..{MAX_PORT}, got {port}")


def _validate_service(service: NodeService, prefix: str) -> None:
    _require(service.service, _join(prefix, "Service"), "service name")
    _require(service.id, _join(prefix, "ID"), "service ID (with_defaults fills it from the name)")
    _check_port(service.port, _join(prefix, "Port"))
    for name, tagged in service.tagged_addresses.items():
        _check_port(tagged.port, _join(prefix, f"TaggedAddresses[{name}].Port"))


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


def _validate_register(command: CatalogRegister) -> None:
    check_type(command.node, Node, "", renames=(("meta", "NodeMeta"),))
    if command.service is not None:
        check_type(command.service, NodeService, "Service")
    if not isinstance(command.checks, tuple):
        raise type_error("Checks", "a list", command.checks)
    for check in command.checks:
        check_type(check, HealthCheck, "Check")
    _require(command.node.node, "Node", "node name")
    _require(command.node.address, "Address", "node address")
    if command.service is not None:
        _validate_service(command.service, "Service")
    for check in command.checks:
        _validate_check(check, command.node.node)


def _validate_federation_state(state: FederationState, types_checked: bool = False) -> None:
    if not types_checked:
        check_type(state, FederationState, "")
    if not state.datacenter:
        raise CommandError("Datacenter", "missing datacenter on federation state")
    if state.primary_modify_index < 0:
        raise CommandError("PrimaryModifyIndex", "PrimaryModifyIndex: must not be negative")
    for position, gateway in enumerate(state.mesh_gateways):
        prefix = f"MeshGateways[{position}]"
        _require(gateway.node.node, f"{prefix}.Node.Node", "gateway node name")
        _validate_service(gateway.service, f"{prefix}.Service")


def _validate_flat(value: Any, cls: type, required: Sequence[str]) -> None:
    check_type(value, cls, "")
    for name in required:
        _require(getattr(value, name), _consul_name(name), name.replace("_", " "))


def validate(command: Command, *, types_checked: bool = False) -> None:
    """Check a command's shape before it is proposed; raises CommandError naming the field.

    `types_checked`: the command comes from `decode_batch`, which has type-checked it already; a
    federation state's second walk was a third of its apply (issue #13: a 1,000-DC resync applies
    1,000 of them on every server), so that kind skips it. Other kinds keep their checks."""
    if isinstance(command, CatalogRegister):
        _validate_register(command)
    elif isinstance(command, CatalogDeregister):
        _validate_flat(command, CatalogDeregister, ("node",))
    elif isinstance(command, CheckUpdate):
        _validate_flat(command, CheckUpdate, ("node", "check_id"))
        if command.status not in CHECK_STATUSES:
            raise CommandError(
                "Status", f"Status: got {command.status!r}; want one of {', '.join(CHECK_STATUSES)}"
            )
    elif isinstance(command, FederationStateUpsert):
        _validate_federation_state(command.state, types_checked)
    elif isinstance(command, FederationStateDelete):
        _validate_flat(command, FederationStateDelete, ())
        if not command.datacenter:
            raise CommandError("Datacenter", "missing datacenter on federation state")
    elif isinstance(command, ServerRegister):
        _validate_flat(command.server, ServerInfo, ("node", "datacenter"))
    elif isinstance(command, ConfigEntrySet):
        check_type(command, ConfigEntrySet, "")
        _require(command.entry.kind, "Kind", "kind")
        _require(command.entry.name, "Name", "name")
    elif isinstance(command, ConfigEntryDelete):
        _validate_flat(command, ConfigEntryDelete, ("kind", "name"))
    elif isinstance(command, CAStateSet):
        check_type(command, CAStateSet, "")
        if sum(1 for root in command.state.roots if root.get("Active")) != 1 and command.state.roots:
            raise CommandError("Roots", "there must be exactly one active CA")
    elif isinstance(command, AutopilotConfigSet):
        check_type(command, AutopilotConfigSet, "")
        config = command.config
        for name, value in (("LastContactThreshold", config.last_contact_threshold),
                            ("MaxTrailingLogs", config.max_trailing_logs), ("MinQuorum", config.min_quorum),
                            ("ServerStabilizationTime", config.server_stabilization_time)):
            if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise CommandError(name, "must be a non-negative number")
    elif isinstance(command, Noop):
        return
    elif isinstance(command, RESTORE_COMMANDS):
        check_type(command, type(command), "")
        if (problem := restore_shape_problem(command)) is not None:
            raise CommandError(*problem)
    elif isinstance(command, ACL_COMMANDS):
        check_type(command, type(command), "")
        if (problem := acl_shape_problem(command)) is not None:
            raise CommandError(*problem)
    elif isinstance(command, PEERING_COMMANDS):
        check_type(command, type(command), "")
        if (problem := peering_shape_problem(command)) is not None:
            raise CommandError(*problem)
    else:
        raise CommandError("", f"unknown command type {type(command).__name__}")
