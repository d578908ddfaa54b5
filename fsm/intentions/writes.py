"""Intention writes: each API call becomes "the new entry for destination D" (or None: delete it).

The caller proposes the result as an ordinary config-entry write with CAS. Two write styles
coexist (connect-data §A.1, §A.3, §A.5): *by name* (`/exact`, a plain entry edit, which clears
legacy fields like any config-entry write) and *by ID* (the deprecated API: sources carry
`LegacyID`, `LegacyMeta` and timestamps). The ID API may only touch an entry whose every source is
legacy (the "mixing rule"). Times and ids come from the caller: no clock here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshfed.fsm.config_entries import (
    DEFAULT_SOURCE_TYPE,
    DESCRIPTION_MAX_LENGTH,
    INTENTION_ACTIONS,
    KIND_SERVICE_INTENTIONS,
    WILDCARD,
    ConfigEntryError,
    normalize,
    validate,
)
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.consul_formats.meta import meta_problems
from meshfed.fsm.intentions.reads import (
    BY_DESTINATION,
    BY_SOURCE,
    DEFAULT_NAMESPACE,
    DEFAULT_PARTITION,
    locate_by_id,
    parse_service_ref,
    source_identity,
)

# Legacy fields a by-name write clears; LegacyMeta is kept so that validation refuses to drop it.
_LEGACY_ID_AND_TIMES = ("LegacyID", "LegacyCreateTime", "LegacyUpdateTime")


class IntentionErrors(ConfigEntryError):
    """Several field errors found in one request.

    Consul collects the legacy field checks (§A.3) into one multi-error so that a client fixes its
    request in one round trip; `errors` keeps each one with its field.
    """

    def __init__(self, errors: Sequence[ConfigEntryError]) -> None:
        self.errors = tuple(errors)
        super().__init__(errors[0].field, "; ".join(str(error) for error in errors))

    def __str__(self) -> str:
        return "; ".join(str(error) for error in self.errors)


def _raise_collected(errors: list[ConfigEntryError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise IntentionErrors(errors)



# ---------------------------------------------------------------------------------------------
# Writes: shared helpers


def _body_string(body: Mapping[str, Any], name: str) -> str:
    value = lookup(body, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigEntryError(name, f"must be a string, got {type(value).__name__}")
    return value


def _body_meta(body: Mapping[str, Any]) -> dict[str, str]:
    value = lookup(body, "Meta")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise ConfigEntryError("Meta", "must be an object of string values")
    return dict(value)


def _request_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ConfigEntryError("", "request body must be a JSON object")
    return body


def _editable(entry: Mapping[str, Any] | None, destination: str) -> dict[str, Any]:
    """A private deep copy of the stored entry (or a fresh one) that a write may change freely."""
    if entry is None:
        return {"Kind": KIND_SERVICE_INTENTIONS, "Name": destination, "Sources": []}
    edited = copy.deepcopy(dict(entry))
    edited["Sources"] = list(edited.get("Sources") or ())
    return edited


def _written(entry: dict[str, Any], *, legacy: bool) -> dict[str, Any]:
    """The entry as it will be stored: canonical (precedence recomputed, sources stable-sorted,
    store keys dropped) and valid under the rules of its write style (§A.9)."""
    canonical = normalize(entry)
    validate(canonical, legacy_write=legacy)
    return canonical


def _remaining(entry: dict[str, Any]) -> dict[str, Any] | None:
    """After a source was removed: the canonical entry, or None when it has no source left."""
    return normalize(entry) if entry["Sources"] else None




# ---------------------------------------------------------------------------------------------
# Writes by name (`/exact`, §A.5)


def upsert_exact(
    existing: Mapping[str, Any] | None, source: str, destination: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """PUT `/exact`: the destination's entry with the source added or replaced.

    Source and destination come from the URL; a body `ID` is discarded. This is an ordinary
    (non-legacy) config-entry write, so, as in Consul, every other source of the entry loses its
    legacy ID and timestamps, and a legacy source with its own Meta makes the write fail (that Meta
    has no place in a new-style entry and would otherwise be lost without a word).
    """
    body = _request_object(body)
    _, source_name = parse_service_ref(source, allow_peer=False, field=BY_SOURCE)
    _, destination_name = parse_service_ref(destination, allow_peer=False, field=BY_DESTINATION)

    meta = _body_meta(body)
    if meta and (existing is None or meta != (existing.get("Meta") or {})):
        raise ConfigEntryError("Meta", "must not be specified")

    new_source: dict[str, Any] = {"Name": source_name, "Type": _body_string(body, "SourceType")}
    for name in ("Action", "Description"):
        new_source[name] = _body_string(body, name)
    permissions = lookup(body, "Permissions")
    if permissions is not None:
        new_source["Permissions"] = copy.deepcopy(permissions)

    entry = _editable(existing, destination_name)
    sources = entry["Sources"]
    identity = ("", source_name)
    position = next((i for i, src in enumerate(sources) if source_identity(src) == identity), len(sources))
    sources[position:position + 1] = [new_source]
    for other in sources:
        for key in _LEGACY_ID_AND_TIMES:
            other.pop(key, None)
    return _written(entry, legacy=False)


def delete_exact(existing: Mapping[str, Any] | None, source: str) -> dict[str, Any] | None:
    """DELETE `/exact`: the entry without the named source; None when nothing would be left.

    Idempotent: an unknown source leaves the entry as it is (returned canonical), and with no entry
    at all the answer is None, which deletes nothing. The remaining sources are not touched, so a
    delete never converts legacy intentions.
    """
    _, source_name = parse_service_ref(source, allow_peer=False, field=BY_SOURCE)
    if existing is None:
        return None
    entry = _editable(existing, "")
    entry["Sources"] = [src for src in entry["Sources"] if source_identity(src) != ("", source_name)]
    return _remaining(entry)


# ---------------------------------------------------------------------------------------------
# Writes by ID (the deprecated legacy API, §A.3)


def _check_mixing_rule(entry: Mapping[str, Any] | None) -> None:
    if entry is None:
        return
    if any(not source.get("LegacyID") for source in entry.get("Sources") or ()):
        raise ConfigEntryError(
            "",
            f'cannot use legacy intention API to edit intentions with a destination of "{entry.get("Name", "")}" '
            "after editing them via a service-intentions config entry",
        )


_LEGACY_STRING_FIELDS = (
    "SourceNS", "SourceName", "DestinationNS", "DestinationName", "SourcePartition", "DestinationPartition",
    "SourcePeer", "SourceSamenessGroup", "SourceType", "Action", "Description",
)


def _legacy_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The validated fields of a legacy Intention body (§A.3), namespaces and type defaulted.

    The field checks are collected and raised together, as Consul's multi-error does; the CE
    namespace and partition refusals come after them so that every wildcard rule stays reachable.
    """
    request: dict[str, Any] = {name: _body_string(body, name) for name in _LEGACY_STRING_FIELDS}
    request["Meta"] = _body_meta(body)
    request["SourceNS"] = request["SourceNS"] or DEFAULT_NAMESPACE
    request["DestinationNS"] = request["DestinationNS"] or DEFAULT_NAMESPACE
    request["SourceType"] = request["SourceType"] or DEFAULT_SOURCE_TYPE

    if request["SourcePeer"]:
        raise ConfigEntryError("SourcePeer", "not supported on this endpoint. Use config entries instead")
    if request["SourceSamenessGroup"]:
        raise ConfigEntryError("SourceSamenessGroup", "sameness groups are a consul enterprise feature")

    errors: list[ConfigEntryError] = []
    for name in ("SourceNS", "SourceName", "DestinationNS", "DestinationName"):
        if not request[name]:
            errors.append(ConfigEntryError(name, "must be set"))
        elif WILDCARD in request[name] and request[name] != WILDCARD:
            errors.append(ConfigEntryError(name, "wildcard character '*' cannot be used with partial values"))
    for namespace, name in (("SourceNS", "SourceName"), ("DestinationNS", "DestinationName")):
        if request[namespace] == WILDCARD and request[name] != WILDCARD:
            errors.append(ConfigEntryError(name, "exact value cannot follow wildcard namespace"))
    if len(request["Description"]) > DESCRIPTION_MAX_LENGTH:
        errors.append(ConfigEntryError("Description", f"exceeds maximum length {DESCRIPTION_MAX_LENGTH}"))
    errors += [ConfigEntryError("Meta", problem) for problem in meta_problems(request["Meta"], sorted_keys=True)]
    if request["Action"] not in INTENTION_ACTIONS:
        errors.append(ConfigEntryError("Action", "must be set to 'allow' or 'deny'"))
    if lookup(body, "Permissions"):
        errors.append(ConfigEntryError("Permissions", "must not be set when using the legacy APIs"))
    if request["SourceType"] != DEFAULT_SOURCE_TYPE:
        errors.append(ConfigEntryError("SourceType", f"must be set to '{DEFAULT_SOURCE_TYPE}'"))
    _raise_collected(errors)

    for field, label in (("SourcePartition", "source"), ("DestinationPartition", "destination")):
        if request[field] not in ("", DEFAULT_PARTITION):
            raise ConfigEntryError(field, f"Cannot specify a {label} partition with this endpoint")
    for field in ("SourceNS", "DestinationNS"):
        if request[field].lower() != DEFAULT_NAMESPACE:
            raise ConfigEntryError(
                field, f"Invalid {field}({request[field]}): Namespaces is a Consul Enterprise feature"
            )
    return request


def _legacy_source(request: Mapping[str, Any], legacy_id: str, created_at: str, updated_at: str) -> dict[str, Any]:
    return {
        "Name": request["SourceName"], "Action": request["Action"], "Description": request["Description"],
        "Type": request["SourceType"], "LegacyID": legacy_id, "LegacyMeta": dict(request["Meta"]),
        "LegacyCreateTime": created_at, "LegacyUpdateTime": updated_at,
    }


def legacy_create(
    existing: Mapping[str, Any] | None, intention: Mapping[str, Any], new_id: str, now: str
) -> dict[str, Any]:
    """POST `/v1/connect/intentions`: the destination's entry with a new legacy source.

    `existing` is the entry of the intention's destination (None when there is none); `new_id` is
    a fresh UUID the caller checked is unused (`find_by_id`); `now` is the RFC 3339 UTC time that
    becomes both CreatedAt and UpdatedAt.
    """
    intention = _request_object(intention)
    if _body_string(intention, "ID"):
        raise ConfigEntryError("ID", "must be empty when creating a new intention")
    request = _legacy_request(intention)
    _check_mixing_rule(existing)
    entry = _editable(existing, request["DestinationName"])
    entry["Sources"].append(_legacy_source(request, new_id, now, now))
    return _written(entry, legacy=True)


def legacy_update(
    entries: Iterable[Mapping[str, Any]], intention_id: str, intention: Mapping[str, Any], now: str
) -> tuple[str, dict[str, Any]]:
    """PUT `/v1/connect/intentions/<id>`: `(destination, new entry)`.

    The destination may not change (that would move the intention into another entry); the source
    may. A body `ID` is ignored: the URL names the intention. CreatedAt is kept, UpdatedAt = `now`.
    """
    intention = _request_object(intention)
    found = locate_by_id(entries, intention_id)
    if found is None:
        raise ConfigEntryError("ID", f"Cannot modify non-existent intention: '{intention_id}'")
    existing, position = found
    request = _legacy_request(intention)
    if request["DestinationName"] != existing.get("Name"):
        raise ConfigEntryError(
            "DestinationName", "Cannot modify Destination partition/namespace/name for an intention once it exists."
        )
    _check_mixing_rule(existing)
    entry = _editable(existing, "")
    created_at = entry["Sources"][position].get("LegacyCreateTime") or now
    entry["Sources"][position] = _legacy_source(request, intention_id, created_at, now)
    return entry["Name"], _written(entry, legacy=True)


def legacy_delete(entries: Iterable[Mapping[str, Any]], intention_id: str) -> tuple[str, dict[str, Any] | None]:
    """DELETE `/v1/connect/intentions/<id>`: `(destination, new entry or None to delete it)`."""
    found = locate_by_id(entries, intention_id)
    if found is None:
        raise ConfigEntryError("ID", f"Cannot delete non-existent intention: '{intention_id}'")
    existing, position = found
    _check_mixing_rule(existing)
    entry = _editable(existing, "")
    del entry["Sources"][position]
    return entry["Name"], _remaining(entry)
