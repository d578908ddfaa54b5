"""Intention reads: service-intentions entries seen as Consul's Intention JSON (connect-data §A.2).

`intention_views` lists them sorted as §A.4 says; `match` and `check` answer §A.6 from the same
views; `find_by_id`/`find_exact` pick one. Destinations compare case-insensitively (entries are
keyed by lower-cased name); source names are identities inside an entry and compare exactly, as
Consul compares them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshfed.fsm.config_entries import (
    DEFAULT_SOURCE_TYPE,
    KIND_SERVICE_INTENTIONS,
    WILDCARD,
    ConfigEntryError,
    precedence,
)

DEFAULT_NAMESPACE = "default"
DEFAULT_PARTITION = "default"
BY_SOURCE = "source"
BY_DESTINATION = "destination"
PEER_PREFIX = "peer:"


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
    found = locate_by_id(entries, intention_id)
    return None if found is None else _view(found[0], found[0]["Sources"][found[1]])


def locate_by_id(
    entries: Iterable[Mapping[str, Any]], intention_id: str
) -> tuple[Mapping[str, Any], int] | None:
    """(entry, position of the source) holding the legacy intention with this ID, or None."""
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


def source_matches(source: Mapping[str, Any], name: str, peer: str = "") -> bool:
    """Whether an intention source covers a caller `name` imported through the peering `peer`
    ("" = a local caller). A peer's service of the same name is a different service: a source
    without `Peer` never matches a peer's caller, and one with `Peer` only that peer's callers
    (`Name = "*"` then covers all of them, reference peering.md §3)."""
    if (source.get("Peer") or "").lower() != peer.lower():
        return False
    return source.get("Name") in (name, WILDCARD)


def _match_source(entries: Sequence[Mapping[str, Any]], name: str, peer: str = "") -> list[dict[str, Any]]:
    return [
        _view(entry, source)
        for entry in entries
        for source in entry.get("Sources") or ()
        if source_matches(source, name, peer)
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


def default_allows(acl_enabled: bool, acl_default_policy: str) -> bool:
    """The action when no intention matches (reference/acl.md §6.4): ACLs off allow; with ACLs on,
    `acl.default_policy` decides (`deny` => Denied), whatever the caller's token.

    A datacenter that turns on default deny must not leave its mesh open by default: the one
    setting that closes the control plane closes the data plane too, as in Consul."""
    return not acl_enabled or acl_default_policy != "deny"


def check(
    entries: Iterable[Mapping[str, Any]],
    source: str,
    destination: str,
    default_allow: bool = True,
    *,
    source_type: str = DEFAULT_SOURCE_TYPE,
) -> bool:
    """Whether `source` may connect to `destination` (see `decide`, which also says why)."""
    return decide(entries, source, destination, default_allow, source_type=source_type)[0]


DEFAULT_REASON = "Default behavior configured by ACLs"


def describe(view: Mapping[str, Any]) -> str:
    """An intention as Consul's `Intention.String()` prints it in authorization reasons."""
    return (f"{view.get('SourceNS') or 'default'}/{view.get('SourceName')} => "
            f"{view.get('DestinationNS') or 'default'}/{view.get('DestinationName')} "
            f"(ID: {view.get('ID', '')}, Precedence: {view.get('Precedence', 0)})")


def decide(
    entries: Iterable[Mapping[str, Any]],
    source: str,
    destination: str,
    default_allow: bool = True,
    *,
    source_type: str = DEFAULT_SOURCE_TYPE,
    source_peer: str = "",
) -> tuple[bool, str]:
    """(allowed, reason) for a connection from `source` to `destination`.

    The first intention (in precedence order) whose source covers `source` and whose destination
    covers `destination` decides. An L7 intention denies: a connection-level check cannot evaluate
    per-request rules, so allowing would be wrong for some requests. No intention → `default_allow`
    (see `default_allows`: the server passes what its ACL configuration says). Reasons are Consul's.
    A caller imported through the peering `source_peer` matches only sources naming that peer,
    and no intention means deny for it whatever the default: another cluster's services get in
    only by an intention that names their peering.
    """
    _, source_name = parse_service_ref(source, allow_peer=False, field=BY_SOURCE)
    _, destination_name = parse_service_ref(destination, allow_peer=False, field=BY_DESTINATION)
    if source_type != DEFAULT_SOURCE_TYPE:
        raise ConfigEntryError("source-type", "unsupported SourceType")
    relevant = [entry for entry in entries if _is_intentions_entry(entry)]
    for view in sorted(_match_source(relevant, source_name, source_peer), key=sort_key):
        target = view["DestinationName"]
        if target == WILDCARD or _names_equal(target, destination_name):
            if view.get("Permissions"):
                return False, f"Matched L7 intention: {describe(view)}"
            return view.get("Action") == "allow", f"Matched L4 intention: {describe(view)}"
    if source_peer:
        return False, f"No intention admits {source_name} from peer {source_peer}"
    return default_allow, DEFAULT_REASON


def find_exact(entries: Iterable[Mapping[str, Any]], source: str, destination: str) -> dict[str, Any] | None:
    """GET `/exact`: the intention from `source` (which may be `peer:P/name`) to `destination`."""
    peer, source_name = parse_service_ref(source, allow_peer=True, field=BY_SOURCE)
    _, destination_name = parse_service_ref(destination, allow_peer=False, field=BY_DESTINATION)
    for entry in entries:
        if _is_intentions_entry(entry) and _names_equal(entry.get("Name", ""), destination_name):
            for source_entry in entry.get("Sources") or ():
                if source_identity(source_entry) == (peer, source_name):
                    return _view(entry, source_entry)
    return None




def source_identity(source: Mapping[str, Any]) -> tuple[str, str]:
    """(peer, name): what tells two sources of one entry apart."""
    return source.get("Peer") or "", source.get("Name", "")
