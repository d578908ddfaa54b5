"""Commands in the Raft log: a batch of (request id, command) pairs as one msgpack entry.

Each command travels under a versioned tag (`cat.reg/1`), so a later release can read what an
earlier one wrote; decoding names the position and tag of anything it cannot read, and the state
machine turns that into a failed Result instead of raising (fsm/machine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from meshfed.fsm.acl.commands import ACL_DECODERS, ACL_TAGS
from meshfed.fsm.commands import (
    AutopilotConfigSet,
    CAStateSet,
    CatalogDeregister,
    CatalogRegister,
    CheckUpdate,
    Command,
    ConfigEntryDelete,
    ConfigEntrySet,
    FederationStateBatchUpsert,
    FederationStateDelete,
    FederationStateUpsert,
    Noop,
    ServerRegister,
)
from meshfed.fsm.peering.commands import PEERING_DECODERS, PEERING_TAGS
from meshfed.fsm.records import (
    autopilot_config_from_wire,
    ca_state_from_wire,
    check_from_wire,
    config_entry_from_wire,
    federation_state_from_wire,
    node_from_wire,
    server_info_from_wire,
    service_from_wire,
    to_wire,
)
from meshfed.fsm.restore import RESTORE_DECODERS, RESTORE_TAGS
from meshfed.fsm.type_checks import CommandError, check_type, type_error

# ---- log encoding -------------------------------------------------------------------------------

TAG_CATALOG_REGISTER = "cat.reg/1"
TAG_CATALOG_DEREGISTER = "cat.dereg/1"
TAG_CHECK_UPDATE = "chk.upd/1"
TAG_FEDERATION_STATE_UPSERT = "fed.set/1"
TAG_FEDERATION_STATE_DELETE = "fed.del/1"
TAG_FEDERATION_STATE_BATCH_UPSERT = "fed.batch/1"
TAG_SERVER_REGISTER = "srv.reg/1"
TAG_CONFIG_ENTRY_SET = "cfg.set/1"
TAG_CONFIG_ENTRY_DELETE = "cfg.del/1"
TAG_CA_STATE_SET = "ca.set/1"
TAG_AUTOPILOT_CONFIG_SET = "autopilot.set/1"
TAG_NOOP = "noop/1"

_TAG_OF: dict[type, str] = {
    CatalogRegister: TAG_CATALOG_REGISTER,
    CatalogDeregister: TAG_CATALOG_DEREGISTER,
    CheckUpdate: TAG_CHECK_UPDATE,
    FederationStateUpsert: TAG_FEDERATION_STATE_UPSERT,
    FederationStateDelete: TAG_FEDERATION_STATE_DELETE,
    FederationStateBatchUpsert: TAG_FEDERATION_STATE_BATCH_UPSERT,
    ServerRegister: TAG_SERVER_REGISTER,
    ConfigEntrySet: TAG_CONFIG_ENTRY_SET,
    ConfigEntryDelete: TAG_CONFIG_ENTRY_DELETE,
    CAStateSet: TAG_CA_STATE_SET,
    AutopilotConfigSet: TAG_AUTOPILOT_CONFIG_SET,
    Noop: TAG_NOOP,
    **RESTORE_TAGS,
    **ACL_TAGS,
    **PEERING_TAGS,
}


def encode_entry(request_id: str, command: Command) -> bytes:
    """One (request_id, command) pair as the msgpack item a batch holds. Raises CommandError.

    Proposers encode each command once, when it is proposed, and join the items of a batch with
    `join_entries`: sizing a batch then costs a sum, not a second encoding of all of it."""
    tag = _TAG_OF.get(type(command))
    if tag is None:
        raise CommandError("", f"cannot encode {type(command).__name__}: not a command")
    if not isinstance(request_id, str):
        raise type_error("request_id", "a string", request_id)
    try:
        return msgpack.packb([tag, request_id, to_wire(command)], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CommandError("", f"command is not encodable: {exc}") from exc


def join_entries(items: Sequence[bytes]) -> bytes:
    """Encoded items -> one log payload, byte for byte what msgpack packs for the list of them."""
    count = len(items)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 0x10000:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(items)


def encode_batch(entries: Sequence[tuple[str, Command]]) -> bytes:
    """(request_id, command) pairs -> one log payload. Raises CommandError for non-commands."""
    return join_entries([encode_entry(request_id, command) for request_id, command in entries])


def _body_get(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key, default)
    return default if value is None else value


def _register_from_wire(body: dict[str, Any]) -> CatalogRegister:
    service = body.get("service")
    return CatalogRegister(
        node=node_from_wire(body["node"]),
        service=service_from_wire(service) if service is not None else None,
        checks=tuple(check_from_wire(check) for check in _body_get(body, "checks", ())),
    )


def _check_update_from_wire(body: dict[str, Any]) -> CheckUpdate:
    at = body.get("at", 0.0)
    if isinstance(at, int) and not isinstance(at, bool):
        at = float(at)  # one canonical type, so replicas and snapshots compare equal
    return CheckUpdate(
        node=body["node"],
        check_id=body["check_id"],
        status=body["status"],
        output=_body_get(body, "output", ""),
        at=at,
    )


_DECODERS: dict[str, Callable[[dict[str, Any]], Command]] = {
    TAG_CATALOG_REGISTER: _register_from_wire,
    TAG_CATALOG_DEREGISTER: lambda body: CatalogDeregister(
        node=body["node"],
        service_id=_body_get(body, "service_id", ""),
        check_id=_body_get(body, "check_id", ""),
    ),
    TAG_CHECK_UPDATE: _check_update_from_wire,
    TAG_FEDERATION_STATE_UPSERT: lambda body: FederationStateUpsert(
        state=federation_state_from_wire(body["state"])
    ),
    TAG_FEDERATION_STATE_DELETE: lambda body: FederationStateDelete(datacenter=body["datacenter"]),
    TAG_FEDERATION_STATE_BATCH_UPSERT: lambda body: FederationStateBatchUpsert(
        states=tuple(federation_state_from_wire(state) for state in body["states"])
    ),
    TAG_SERVER_REGISTER: lambda body: ServerRegister(server=server_info_from_wire(body["server"])),
    TAG_CONFIG_ENTRY_SET: lambda body: ConfigEntrySet(
        entry=config_entry_from_wire(body["entry"]), cas=body.get("cas")
    ),
    TAG_CONFIG_ENTRY_DELETE: lambda body: ConfigEntryDelete(kind=body["kind"], name=body["name"], cas=body.get("cas")),
    TAG_CA_STATE_SET: lambda body: CAStateSet(state=ca_state_from_wire(body["state"]), cas=body.get("cas")),
    TAG_AUTOPILOT_CONFIG_SET: lambda body: AutopilotConfigSet(
        config=autopilot_config_from_wire(body["config"]), cas=body.get("cas")
    ),
    TAG_NOOP: lambda body: Noop(),
    **RESTORE_DECODERS,
    **ACL_DECODERS,
    **PEERING_DECODERS,
}


def known_tags() -> frozenset[str]:
    """Every command tag this build can apply. A server without a tag rejects the entry, and its
    copy of the state misses what the entry wrote: a leader asks its members for theirs before it
    proposes a command an older version may lack (server/leader/log_support.py)."""
    return frozenset(_DECODERS)


def _decode_entry(position: int, item: Any) -> tuple[str, Command]:
    where = f"entry {position}"
    if not isinstance(item, list) or len(item) != 3:
        raise CommandError(where, f"{where}: expected [type_tag, request_id, body], got {item!r:.80}")
    tag, request_id, body = item
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise CommandError(where, f"{where}: unknown command type tag {tag!r:.40}")
    if not isinstance(request_id, str):
        raise type_error(f"{where} request_id", "a string", request_id)
    if not isinstance(body, dict):
        raise type_error(f"{where} body", "an object", body)
    try:
        command = decoder(body)
    except CommandError:
        raise
    except Exception as exc:  # KeyError, TypeError, AttributeError, ... from arbitrary bodies
        raise CommandError(where, f"{where} ({tag}): malformed body: {type(exc).__name__}: {exc}") from exc
    # Types only: the semantic rules of `validate` are per-command results in apply, not a
    # reason to reject the whole batch.
    check_type(command, type(command), f"{where} ({tag})")
    return request_id, command


def decode_batch(payload: bytes) -> list[tuple[str, Command]]:
    """Log payload -> (request_id, command) pairs. Raises CommandError and nothing else."""
    try:
        items = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on junk
        raise CommandError("", f"payload is not msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(items, list):
        raise type_error("payload", "a list of commands", items)
    if not items:
        # Proposers never send an empty batch; one in the log is corruption, reported as such.
        raise CommandError("payload", "empty batch")
    return [_decode_entry(position, item) for position, item in enumerate(items)]
