"""Consul's intention API, served as views over `service-intentions` config entries.

Since Consul 1.9 an intention is not a record of its own: the store holds one `service-intentions`
entry per destination, and each of its `Sources` *is* one intention (reference/connect-data.md §A.1).
Keeping that model means one table, one replication path (config entries, §A.8) and no second
source of truth that could drift. This module is the translation layer, in both directions, as pure
functions over entry dicts (no store, no clock: the caller passes times and ids in):

- reads: `intention_views` turns entries into the Intention JSON of §A.2, sorted as §A.4 says;
  `match` and `check` answer §A.6 from the same views; `find_by_id`/`find_exact` pick one.
- writes: each API call becomes "the new entry for destination D" (or None: delete D's entry),
  which the caller proposes as an ordinary config-entry write. Two write styles coexist:
  *by name* (`/exact`, a plain entry edit, clears legacy fields like any config-entry write) and
  *by ID* (the deprecated API: sources carry `LegacyID`, `LegacyMeta` and timestamps). The ID API
  may only touch an entry whose every source is legacy (the "mixing rule", §A.1).

Names: entries are keyed by lower-cased destination, so destinations compare case-insensitively;
source names are identities inside an entry and compare exactly, as Consul compares them.
CE only: the namespace is always `default` and partitions other than `default` are refused.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshfed.fsm.config_entries import (
    DEFAULT_SOURCE_TYPE,
    DESCRIPTION_MAX_LENGTH,
    INTENTION_ACTIONS,
    KIND_SERVICE_INTENTIONS,
    META_KEY_MAX_LENGTH,
    META_MAX_PAIRS,
    META_VALUE_MAX_LENGTH,
    WILDCARD,
    ConfigEntryError,
    normalize,
    precedence,
    validate,
)

DEFAULT_NAMESPACE = "default"
DEFAULT_PARTITION = "default"
BY_SOURCE = "source"
BY_DESTINATION = "destination"
PEER_PREFIX = "peer:"

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
# Precedence and ordering (§A.4)


def sort_key(intention: Mapping[str, Any]) -> tuple[Any, ...]:
    """Order of every intention listing: precedence descending, then the names ascending.

    The tie-break puts a local source (empty peer) before a peer source, which sorts before a
    sameness-group source, so the most specific local rule is evaluated first.
    """
    return (
        -int(intention.get("Precedence", 0)),
        intention.get("SourceSamenessGroup", ""),
        intention.get("SourcePeer", ""),
        intention.get("SourcePartition", ""),
        intention.get("SourceNS", ""),
        intention.get("SourceName", ""),
        intention.get("DestinationPartition", ""),
        intention.get("DestinationNS", ""),
        intention.get("DestinationName", ""),
    )


# ---------------------------------------------------------------------------------------------
# Views (§A.2)


def intention_hash(view: Mapping[str, Any]) -> str:
    """Content hash of a legacy intention: base64 of BLAKE2b-256.

    Pre-1.9 replication diffed intentions by this hash, so it covers what a legacy write can change
    (ID, Description, both NS+name, SourceType, Action, Precedence, Meta). Every field is
    length-prefixed so that moving characters between adjacent fields changes the digest.
    """
    digest = hashlib.blake2b(digest_size=32)

    def feed(text: str) -> None:
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for name in ("ID", "Description", "SourceNS", "SourceName", "DestinationNS", "DestinationName",
                 "SourceType", "Action"):
        feed(str(view.get(name, "")))
    digest.update(int(view.get("Precedence", 0)).to_bytes(8, "little", signed=True))
    meta = view.get("Meta") or {}
    for key in sorted(meta):
        feed(key)
        feed(str(meta[key]))
    return base64.b64encode(digest.digest()).decode()


def _is_intentions_entry(entry: Mapping[str, Any]) -> bool:
    return entry.get("Kind", KIND_SERVICE_INTENTIONS) == KIND_SERVICE_INTENTIONS


def _view(entry: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """One intention as the HTTP API shows it, keys in Consul's field order."""
    legacy_id = source.get("LegacyID") or ""
    view: dict[str, Any] = {}
    if legacy_id:
        view["ID"] = legacy_id
    if source.get("Description"):
        view["Description"] = source["Description"]
    view["SourceNS"] = DEFAULT_NAMESPACE
    view["SourceName"] = source.get("Name", "")
    view["DestinationNS"] = DEFAULT_NAMESPACE
    view["DestinationName"] = entry.get("Name", "")
    if source.get("Peer"):
        view["SourcePeer"] = source["Peer"]
    view["SourceType"] = source.get("Type") or DEFAULT_SOURCE_TYPE
    if source.get("Action"):
        view["Action"] = source["Action"]
    if source.get("Permissions"):
        view["Permissions"] = copy.deepcopy(source["Permissions"])
    # Legacy intentions carry their own meta; new-style ones show the entry's.
    meta = source.get("LegacyMeta") if legacy_id else entry.get("Meta")
    if meta:
        view["Meta"] = dict(meta)
    # Read-only and always recomputed: a stored or client-sent value is never trusted.
    view["Precedence"] = precedence(view["SourceName"], view["DestinationName"])
    if legacy_id:
        if source.get("LegacyCreateTime"):
            view["CreatedAt"] = source["LegacyCreateTime"]
        if source.get("LegacyUpdateTime"):
            view["UpdatedAt"] = source["LegacyUpdateTime"]
        view["Hash"] = intention_hash(view)
    view["CreateIndex"] = entry.get("CreateIndex", 0)
    view["ModifyIndex"] = entry.get("ModifyIndex", 0)
    return view


def _entry_views(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_view(entry, source) for source in entry.get("Sources") or ()]


def intention_views(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every intention held by `entries`, sorted for listing (§A.4)."""
    views = [view for entry in entries if _is_intentions_entry(entry) for view in _entry_views(entry)]
    return sorted(views, key=sort_key)


def find_by_id(entries: Iterable[Mapping[str, Any]], intention_id: str) -> dict[str, Any] | None:
    """The view of the legacy intention with this ID, or None."""
    found = _locate_by_id(entries, intention_id)
    return None if found is None else _view(found[0], found[0]["Sources"][found[1]])


def _locate_by_id(
    entries: Iterable[Mapping[str, Any]], intention_id: str
) -> tuple[Mapping[str, Any], int] | None:
    if not intention_id:
        return None
    for entry in entries:
        if not _is_intentions_entry(entry):
            continue
        for position, source in enumerate(entry.get("Sources") or ()):
            if source.get("LegacyID") == intention_id:
                return entry, position
    return None


# ---------------------------------------------------------------------------------------------
# Service references in query strings (§A.5)


def parse_service_ref(text: str, *, allow_peer: bool, field: str = "name") -> tuple[str, str]:
    """Split `name`, `ns/name`, `partition/ns/name`, `peer:P/name` or `peer:P/ns/name`.

    Args:
        text: the query-string value.
        allow_peer: only the source of GET `/exact` may name a peer.
        field: the query parameter, for the error ("source", "destination", "name").

    Returns:
        `(peer, name)`; peer is "" for a local service.

    Raises:
        ConfigEntryError: the forms or values Consul CE refuses, with its messages.
    """
    if not text:
        raise ConfigEntryError(field, f"required query parameter '{field}' not set")
    if text.startswith(PEER_PREFIX) and not allow_peer:
        raise ConfigEntryError(field, "cannot specify a peer here")
    parts = text.split("/")
    if len(parts) > 3:
        raise ConfigEntryError(field, "input can contain at most two '/'")
    peer = partition = ""
    namespace = DEFAULT_NAMESPACE
    if parts[0].startswith(PEER_PREFIX):
        if len(parts) == 1:
            raise ConfigEntryError(field, "need to specify the service name as well")
        peer = parts[0][len(PEER_PREFIX):]
        if not peer or WILDCARD in peer:
            raise ConfigEntryError(field, f"invalid peer name {peer!r}: it must be set and cannot contain '*'")
        namespace = parts[1] if len(parts) == 3 else namespace
    elif len(parts) == 3:
        partition, namespace = parts[0], parts[1]
    elif len(parts) == 2:
        namespace = parts[0]
    name = parts[-1]
    if partition not in ("", DEFAULT_PARTITION):
        raise ConfigEntryError(field, "Cannot use a partition with this endpoint")
    if namespace.lower() != DEFAULT_NAMESPACE:
        raise ConfigEntryError(field, f"Invalid {_namespace_label(field)}({namespace}): Namespaces is a Consul Enterprise feature")
    if not name:
        raise ConfigEntryError(field, "need to specify the service name as well")
    return peer, name


def _namespace_label(field: str) -> str:
    return {BY_SOURCE: "SourceNS", BY_DESTINATION: "DestinationNS"}.get(field, "Namespace")


# ---------------------------------------------------------------------------------------------
# Match and check (§A.6)


def _names_equal(left: str, right: str) -> bool:
    return left.lower() == right.lower()


def _match_destination(entries: Sequence[Mapping[str, Any]], name: str) -> list[dict[str, Any]]:
    # Every source of D's entry and of the `*` entry, peer sources included.
    return [
        view
        for entry in entries
        if _names_equal(entry.get("Name", ""), name) or entry.get("Name") == WILDCARD
        for view in _entry_views(entry)
    ]


def _match_source(entries: Sequence[Mapping[str, Any]], name: str) -> list[dict[str, Any]]:
    # Only local sources: a peer's service of the same name is a different service.
    return [
        _view(entry, source)
        for entry in entries
        for source in entry.get("Sources") or ()
        if not source.get("Peer") and source.get("Name") in (name, WILDCARD)
    ]


def match(
    entries: Iterable[Mapping[str, Any]], by: str, names: Sequence[str]
) -> dict[str, list[dict[str, Any]] | None]:
    """Intentions that apply to each name, keyed by the name exactly as the client sent it.

    A name without any match maps to None (Consul answers `null` for it, not `[]`).
    """
    if by not in (BY_SOURCE, BY_DESTINATION):
        raise ConfigEntryError("by", "'by' parameter must be one of 'source' or 'destination'")
    if not names:
        raise ConfigEntryError("name", "required query parameter 'name' not set")
    relevant = [entry for entry in entries if _is_intentions_entry(entry)]
    collect = _match_source if by == BY_SOURCE else _match_destination
    result: dict[str, list[dict[str, Any]] | None] = {}
    for text in names:
        _, name = parse_service_ref(text, allow_peer=False, field="name")
        views = sorted(collect(relevant, name), key=sort_key)
        result[text] = views or None
    return result


def check(
    entries: Iterable[Mapping[str, Any]],
    source: str,
    destination: str,
    default_allow: bool = True,
    *,
    source_type: str = DEFAULT_SOURCE_TYPE,
) -> bool:
    """Whether `source` may connect to `destination`.

    The first intention (in precedence order) whose source covers `source` and whose destination
    covers `destination` decides. An L7 intention denies: a connection-level check cannot evaluate
    per-request rules, so allowing would be wrong for some requests. No intention → `default_allow`
    (the caller's `default_intention_policy`, or the ACL default).
    """
    _, source_name = parse_service_ref(source, allow_peer=False, field=BY_SOURCE)
    _, destination_name = parse_service_ref(destination, allow_peer=False, field=BY_DESTINATION)
    if source_type != DEFAULT_SOURCE_TYPE:
        raise ConfigEntryError("source-type", "unsupported SourceType")
    relevant = [entry for entry in entries if _is_intentions_entry(entry)]
    for view in sorted(_match_source(relevant, source_name), key=sort_key):
        target = view["DestinationName"]
        if target == WILDCARD or _names_equal(target, destination_name):
            if view.get("Permissions"):
                return False
            return view.get("Action") == "allow"
    return default_allow


def find_exact(entries: Iterable[Mapping[str, Any]], source: str, destination: str) -> dict[str, Any] | None:
    """GET `/exact`: the intention from `source` (which may be `peer:P/name`) to `destination`."""
    peer, source_name = parse_service_ref(source, allow_peer=True, field=BY_SOURCE)
    _, destination_name = parse_service_ref(destination, allow_peer=False, field=BY_DESTINATION)
    for entry in entries:
        if _is_intentions_entry(entry) and _names_equal(entry.get("Name", ""), destination_name):
            for source_entry in entry.get("Sources") or ():
                if _source_identity(source_entry) == (peer, source_name):
                    return _view(entry, source_entry)
    return None


# ---------------------------------------------------------------------------------------------
# Writes: shared helpers


def _source_identity(source: Mapping[str, Any]) -> tuple[str, str]:
    return source.get("Peer") or "", source.get("Name", "")


def _body_value(body: Mapping[str, Any], name: str) -> Any:
    """A request field, matched case-insensitively as Go's JSON decoder does."""
    if name in body:
        return body[name]
    wanted = name.lower()
    for key, value in body.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value
    return None


def _body_string(body: Mapping[str, Any], name: str) -> str:
    value = _body_value(body, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigEntryError(name, f"must be a string, got {type(value).__name__}")
    return value


def _body_meta(body: Mapping[str, Any]) -> dict[str, str]:
    value = _body_value(body, "Meta")
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
    permissions = _body_value(body, "Permissions")
    if permissions is not None:
        new_source["Permissions"] = copy.deepcopy(permissions)

    entry = _editable(existing, destination_name)
    sources = entry["Sources"]
    identity = ("", source_name)
    position = next((i for i, src in enumerate(sources) if _source_identity(src) == identity), len(sources))
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
    entry["Sources"] = [src for src in entry["Sources"] if _source_identity(src) != ("", source_name)]
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
    errors += _meta_errors(request["Meta"])
    if request["Action"] not in INTENTION_ACTIONS:
        errors.append(ConfigEntryError("Action", "must be set to 'allow' or 'deny'"))
    if _body_value(body, "Permissions"):
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


def _meta_errors(meta: Mapping[str, str]) -> list[ConfigEntryError]:
    errors: list[ConfigEntryError] = []
    if len(meta) > META_MAX_PAIRS:
        errors.append(ConfigEntryError("Meta", f"exceeds maximum element count {META_MAX_PAIRS} (got {len(meta)})"))
    for key in sorted(meta):
        if len(key) > META_KEY_MAX_LENGTH:
            errors.append(ConfigEntryError("Meta", f'key "{key[:32]}..." exceeds maximum length {META_KEY_MAX_LENGTH}'))
        if len(meta[key]) > META_VALUE_MAX_LENGTH:
            errors.append(ConfigEntryError(
                "Meta", f'value for key "{key}" exceeds maximum length {META_VALUE_MAX_LENGTH}'
            ))
    return errors


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
    found = _locate_by_id(entries, intention_id)
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
    found = _locate_by_id(entries, intention_id)
    if found is None:
        raise ConfigEntryError("ID", f"Cannot delete non-existent intention: '{intention_id}'")
    existing, position = found
    _check_mixing_rule(existing)
    entry = _editable(existing, "")
    del entry["Sources"][position]
    return entry["Name"], _remaining(entry)
