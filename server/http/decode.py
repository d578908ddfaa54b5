"""Request bodies of Consul's catalog write endpoints, decoded into state-machine records.

Consul decodes JSON with Go's `encoding/json`, which matches struct fields case-insensitively, and
real clients depend on that: py-consul sends `node`, `address`, `service`, `serviceid`, `checkid`
(reference/operators.md §2.2). Consul also accepts a few snake_case spellings
(`tagged_addresses`, `enable_tag_override`, ...). So every *field name* here is looked up
case-insensitively, with explicit aliases, while the keys *inside* free-form maps (Meta, NodeMeta,
TaggedAddresses, Proxy, Connect, Definition) are user data and kept exactly as sent.

Decoding is also where request-shape validation happens (DESIGN.md §4: shape is checked before
proposing, state-dependent checks run inside apply). It mirrors what Consul's `Catalog.Register`
does before its Raft apply: default the service ID from its name, reject a check for another node,
default the check ID from its name and the status to critical, and tie a check to the service of
the same request. Every failure is a `DecodeError` naming the field in Consul's spelling
(`Service.Port`, `Checks[1].Status`) whatever spelling the client used, so a 400 tells the operator
exactly what to fix. Anything that is not a JSON value of the expected type is a `DecodeError`,
never a `TypeError`/`KeyError`, so handlers need exactly one except clause.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from meshfed.fsm.consul_formats.durations import parse_duration
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import (
    CHECK_STATUSES,
    KIND_MESH_GATEWAY,
    STATUS_CRITICAL,
    HealthCheck,
    Node,
    NodeService,
    ServiceAddress,
    Weights,
)

MAX_PORT = 65535
CHECK_TYPE_TTL = "ttl"

# Consul refuses to register a service on a wildcard address (`ipaddr.IsAny`): nobody can dial it.
_WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})

# Consul parses node IDs with go-uuid, which wants the canonical hyphenated form only.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Longest rendering of a rejected value inside an error message: enough to recognise it, short
# enough that a junk body cannot blow up a log line.
_MAX_SHOWN_VALUE = 60


class DecodeError(ValueError):
    """A request body that cannot become a record; `field` is Consul's path to the bad value.

    `field` is "" when the body itself is wrong (not a JSON object). `str()` carries Consul's
    "Request decode failed:" prefix so handlers can send it as the 400 body unchanged.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(field, reason)

    def __str__(self) -> str:
        if self.field:
            return f"Request decode failed: {self.field}: {self.reason}"
        return f"Request decode failed: {self.reason}"


# ---- generic field access ----------------------------------------------------------------------


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: Any) -> str:
    shown = repr(value)
    if len(shown) > _MAX_SHOWN_VALUE:
        shown = shown[: _MAX_SHOWN_VALUE - 3] + "..."
    return shown


def _object(value: Any, field: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DecodeError(field, f"expected object, got {_show(value)}")
    return value


def _string(body: Mapping[str, Any], prefix: str, name: str, *aliases: str) -> str:
    value = lookup(body, name, *aliases)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(_path(prefix, name), f"expected string, got {_show(value)}")
    return value


def _integer(value: Any, field: str, low: int, high: int | None) -> int:
    # bool is an int subclass in Python but a distinct JSON type; Go would reject `true` here.
    in_range = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )
    if not in_range:
        bounds = f"{low}-{high}" if high is not None else f">= {low}"
        raise DecodeError(field, f"expected integer {bounds}, got {_show(value)}")
    return value


def _port(body: Mapping[str, Any], prefix: str, name: str) -> int:
    value = lookup(body, name)
    return 0 if value is None else _integer(value, _path(prefix, name), 0, MAX_PORT)


def _boolean(body: Mapping[str, Any], prefix: str, name: str, *aliases: str) -> bool:
    value = lookup(body, name, *aliases)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DecodeError(_path(prefix, name), f"expected true or false, got {_show(value)}")
    return value


def _string_list(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DecodeError(field, f"expected list of strings, got {_show(value)}")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise DecodeError(f"{field}[{position}]", f"expected string, got {_show(item)}")
    return tuple(value)


def _string_map(value: Any, field: str) -> dict[str, str]:
    mapping = _object(value, field)
    if mapping is None:
        return {}
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise DecodeError(f"{field}.{key}", f"expected string, got {_show(item)}")
    return {str(key): item for key, item in mapping.items()}


def _free_form(value: Any, field: str) -> dict[str, Any]:
    """A map whose contents are opaque config: type-checked at the top, copied, keys untouched.

    Deep-copied so a caller that keeps the parsed body cannot mutate what ends up in a frozen
    record (and from there in the replicated state).
    """
    mapping = _object(value, field)
    return {} if mapping is None else copy.deepcopy(dict(mapping))


def duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration string ("10s", "1m30s", "1.5h", "0"), or None if it is not one.

    Negative durations are refused: no timeout or TTL in the catalog means anything below zero.
    A leading "+" (which Go would take) is refused too, as it always has been for request bodies.
    """
    try:
        return parse_duration(text, allow_plus_sign=False)
    except ValueError:
        return None


def _duration(body: Mapping[str, Any], prefix: str, name: str) -> str:
    text = _string(body, prefix, name)
    if text and duration_seconds(text) is None:
        raise DecodeError(
            _path(prefix, name), f"expected a duration such as '10s' or '1m30s', got {_show(text)}"
        )
    return text


# ---- catalog register ----------------------------------------------------------------------------


def _service_tagged_addresses(value: Any, field: str) -> dict[str, ServiceAddress]:
    mapping = _object(value, field)
    if mapping is None:
        return {}
    tagged: dict[str, ServiceAddress] = {}
    for tag, entry in mapping.items():
        entry_field = f"{field}.{tag}"
        entry_body = _object(entry, entry_field)
        if entry_body is None:
            continue
        tagged[str(tag)] = ServiceAddress(
            address=_string(entry_body, entry_field, "Address"),
            port=_port(entry_body, entry_field, "Port"),
        )
    return tagged


def _weights(value: Any, field: str) -> Weights:
    """Consul's weights: absent means 1/1; Passing must be at least 1, Warning at least 0."""
    mapping = _object(value, field)
    if mapping is None:
        return Weights()
    passing = lookup(mapping, "Passing")
    warning = lookup(mapping, "Warning")
    return Weights(
        passing=1 if passing is None else _integer(passing, f"{field}.Passing", 1, None),
        warning=1 if warning is None else _integer(warning, f"{field}.Warning", 0, None),
    )


def _decode_service(value: Any, field: str) -> NodeService | None:
    body = _object(value, field)
    if body is None:
        return None
    name = _string(body, field, "Service")
    service_id = _string(body, field, "ID")
    if not name:
        reason = "missing service name (required with ID)" if service_id else "missing service name"
        raise DecodeError(f"{field}.Service", reason)
    address = _string(body, field, "Address")
    if address in _WILDCARD_ADDRESSES:
        raise DecodeError(
            f"{field}.Address", f"invalid service address {address!r}: a wildcard cannot be dialed"
        )
    kind = _string(body, field, "Kind")
    port = _port(body, field, "Port")
    if kind == KIND_MESH_GATEWAY and port == 0:
        raise DecodeError(f"{field}.Port", "a mesh gateway needs a non-zero port")
    return NodeService(
        id=service_id or name,
        service=name,
        kind=kind,
        tags=_string_list(lookup(body, "Tags"), f"{field}.Tags"),
        address=address,
        tagged_addresses=_service_tagged_addresses(
            lookup(body, "TaggedAddresses", "tagged_addresses"), f"{field}.TaggedAddresses"
        ),
        meta=_string_map(lookup(body, "Meta"), f"{field}.Meta"),
        port=port,
        weights=_weights(lookup(body, "Weights"), f"{field}.Weights"),
        enable_tag_override=_boolean(body, field, "EnableTagOverride", "enable_tag_override"),
        proxy=_free_form(lookup(body, "Proxy"), f"{field}.Proxy"),
        connect=_free_form(lookup(body, "Connect"), f"{field}.Connect"),
    )


def _decode_check(value: Any, field: str, node_name: str, service: NodeService | None) -> HealthCheck:
    body = _object(value, field)
    if body is None:
        raise DecodeError(field, "expected object, got None")
    check_node = _string(body, field, "Node") or node_name
    if check_node.casefold() != node_name.casefold():
        raise DecodeError(
            f"{field}.Node", f"node {check_node!r} doesn't match register request node {node_name!r}"
        )
    name = _string(body, field, "Name")
    check_id = _string(body, field, "CheckID", "check_id") or name
    if not check_id:
        raise DecodeError(f"{field}.CheckID", "missing check ID (or Name to default it from)")
    status = _string(body, field, "Status") or STATUS_CRITICAL
    if status not in CHECK_STATUSES:
        raise DecodeError(f"{field}.Status", f"expected one of {', '.join(CHECK_STATUSES)}, got {status!r}")

    service_id = _string(body, field, "ServiceID", "service_id")
    service_name = _string(body, field, "ServiceName", "service_name")
    service_tags = _string_list(lookup(body, "ServiceTags"), f"{field}.ServiceTags")
    if service is not None and service_id and service_id == service.id:
        # The check belongs to the service registered alongside it: Consul's state store copies
        # the service's name and tags onto the check, so a stale ServiceName cannot stick.
        service_name = service.service
        service_tags = service.tags

    check_type = _string(body, field, "Type")
    ttl = _string(body, field, "TTL")
    if ttl:
        seconds = duration_seconds(ttl)
        if seconds is None or seconds <= 0:
            raise DecodeError(f"{field}.TTL", f"expected a positive duration such as '30s', got {ttl!r}")
        check_type = CHECK_TYPE_TTL

    return HealthCheck(
        node=node_name,
        check_id=check_id,
        name=name,
        status=status,
        notes=_string(body, field, "Notes"),
        output=_string(body, field, "Output"),
        service_id=service_id,
        service_name=service_name,
        service_tags=service_tags,
        type=check_type,
        interval=_duration(body, field, "Interval"),
        timeout=_duration(body, field, "Timeout"),
        ttl=ttl,
        definition=_free_form(lookup(body, "Definition"), f"{field}.Definition"),
    )


def _request_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise DecodeError("", f"expected a JSON object, got {_show(body)}")
    return body


def decode_catalog_register(
    body: Any, default_datacenter: str
) -> tuple[Node, NodeService | None, tuple[HealthCheck, ...]]:
    """Decode a `PUT /v1/catalog/register` body (Consul's `structs.RegisterRequest`).

    Args:
        body: the parsed JSON body.
        default_datacenter: used when the body names no `Datacenter` (the agent's own DC).

    Returns:
        The node, the service (None when the body has none), and the checks: `Check` first, then
        `Checks` in order. Raft indexes are left at 0; apply sets them.

    Raises:
        DecodeError: naming the first field found wrong. `SkipNodeUpdate` and `WriteRequest` are
        accepted and ignored.
    """
    request = _request_object(body)
    node_name = _string(request, "", "Node")
    if not node_name:
        raise DecodeError("Node", "missing node name")
    address = _string(request, "", "Address")
    if not address:
        raise DecodeError("Address", "missing node address")
    node_id = _string(request, "", "ID")
    if node_id and _UUID.fullmatch(node_id) is None:
        raise DecodeError(
            "ID", f"expected a UUID such as '3fb9a696-8209-4eee-a1f7-48600deb9716', got {node_id!r}"
        )
    node = Node(
        node=node_name,
        address=address,
        id=node_id,
        datacenter=_string(request, "", "Datacenter") or default_datacenter,
        tagged_addresses=_string_map(
            lookup(request, "TaggedAddresses", "tagged_addresses"), "TaggedAddresses"
        ),
        meta=_string_map(lookup(request, "NodeMeta", "node_meta"), "NodeMeta"),
    )
    service = _decode_service(lookup(request, "Service"), "Service")

    checks: list[HealthCheck] = []
    single_check = lookup(request, "Check")
    if single_check is not None:
        checks.append(_decode_check(single_check, "Check", node_name, service))
    check_list = lookup(request, "Checks")
    if check_list is not None:
        if not isinstance(check_list, list):
            raise DecodeError("Checks", f"expected list of objects, got {_show(check_list)}")
        for position, item in enumerate(check_list):
            checks.append(_decode_check(item, f"Checks[{position}]", node_name, service))
    return node, service, tuple(checks)


def decode_catalog_deregister(body: Any, default_datacenter: str) -> tuple[str, str, str]:
    """Decode a `PUT /v1/catalog/deregister` body (Consul's `structs.DeregisterRequest`).

    Returns `(node, service_id, check_id)`; empty IDs mean "not given". Which of them wins when
    several are set is the state machine's decision, not the decoder's. `Datacenter` is only
    type-checked: routing takes the DC from `?dc` or `default_datacenter` in the handler.
    """
    del default_datacenter  # accepted for symmetry with decode_catalog_register
    request = _request_object(body)
    node_name = _string(request, "", "Node")
    if not node_name:
        raise DecodeError("Node", "missing node name")
    _string(request, "", "Datacenter")
    return (
        node_name,
        _string(request, "", "ServiceID", "service_id"),
        _string(request, "", "CheckID", "check_id"),
    )
