"""The Connect CA's roots: the replicated `CAState` record as its writers edit it, and Consul's
`/v1/connect/ca/roots` JSON.

A root record is a dict in Consul's `CARoot` JSON shape plus private fields that live in the
replicated store but must never leave a server: `SigningKey`/`SigningCert` (what signs in this DC:
the root in the primary, the DC's intermediate in a secondary) and `RotatedOutAt`. `public_view` is
an allow-list, so a private field added later cannot leak by default.

Per-root CreateIndex/ModifyIndex: the state machine indexes the record, not each root. A root
stored without `CreateIndex` was added by the write that produced the current record (every writer
fills in the missing ones from the record it read before proposing, `roots_for_write`), so the
served CreateIndex is the stored one or else the record's ModifyIndex; every root's ModifyIndex is
the record's, as Consul rewrites the whole set on each change.

Every writer (the endpoint's configuration PUT, the leader routines) proposes the whole record with
compare-and-set on the ModifyIndex it read, and re-reads when another write won.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from meshfed.fsm.records import CAState

# A write re-reads and re-proposes when another write won the compare-and-set race (e.g. the
# bootstrap of a new leader); more losses in a row than this mean a livelock.
MAX_CAS_ATTEMPTS = 5

# What /v1/connect/ca/roots serves, in Consul's order. Everything else in a record is private.
PUBLIC_ROOT_FIELDS = (
    "ID",
    "Name",
    "SerialNumber",
    "SigningKeyID",
    "ExternalTrustDomain",
    "NotBefore",
    "NotAfter",
    "RootCert",
    "IntermediateCerts",
    "Active",
    "PrivateKeyType",
    "PrivateKeyBits",
)
INDEX_FIELDS = ("CreateIndex", "ModifyIndex")
PRIVATE_ROOT_FIELDS = ("SigningKey", "SigningCert", "RotatedOutAt")


class CANotInitializedError(RuntimeError):
    """The roots were asked for before the CA has a cluster id (Consul answers this with a 500)."""

    def __init__(self) -> None:
        super().__init__("CA has not finished initializing")


Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """The writers' default clock; tests pass their own so certificate times are exact."""
    return datetime.datetime.now(datetime.UTC)


# --------------------------------------------------------------------------------------------------
# The stored record


def is_initialized(state: CAState | None) -> bool:
    return state is not None and bool(state.cluster_id)


def active_root(roots: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((root for root in roots if root.get("Active")), None)


def roots_for_write(state: CAState | None) -> list[dict[str, Any]]:
    """The stored roots, ready to be edited and proposed: each one carries its CreateIndex (see the
    module docstring), none carries a ModifyIndex (that is always the record's)."""
    if state is None:
        return []
    roots: list[dict[str, Any]] = []
    for root in state.roots:
        copy = dict(root)
        if not copy.get("CreateIndex"):
            copy["CreateIndex"] = state.modify_index
        copy.pop("ModifyIndex", None)
        roots.append(copy)
    return roots


def keep_create_indexes(before: Sequence[Mapping[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A root replaced in place (same ID, e.g. a secondary's renewed intermediate) keeps its
    CreateIndex, as Consul's roots do; `rotate` builds the replacement from the new record."""
    created = {root.get("ID"): root.get("CreateIndex") for root in before if root.get("CreateIndex")}
    for root in after:
        if not root.get("CreateIndex") and root.get("ID") in created:
            root["CreateIndex"] = created[root.get("ID")]
    return after


def served_roots(state: CAState) -> list[dict[str, Any]]:
    """The stored roots with per-root indexes; private fields are removed later by `public_view`."""
    roots = roots_for_write(state)
    for root in roots:
        root["ModifyIndex"] = state.modify_index
    return roots


def next_serial(roots: Iterable[Mapping[str, Any]]) -> int:
    """Consul's built-in provider numbers roots 1, 2, ...; gaps left by pruning are never reused."""
    serials = [root.get("SerialNumber") for root in roots]
    return max((s for s in serials if isinstance(s, int) and not isinstance(s, bool)), default=0) + 1


# --------------------------------------------------------------------------------------------------
# Consul's JSON


def public_view(root: Mapping[str, Any]) -> dict[str, Any]:
    """One root as /v1/connect/ca/roots serves it: an allow-list, so private fields never leak."""
    view = {field: root.get(field) for field in PUBLIC_ROOT_FIELDS}
    if view["IntermediateCerts"] is not None:
        view["IntermediateCerts"] = list(view["IntermediateCerts"])
    for field in INDEX_FIELDS:
        if field in root:
            view[field] = root[field]
    return view


def roots_response(
    roots: Sequence[Mapping[str, Any]], trust_domain: str, index_fields: bool = True
) -> dict[str, Any]:
    """The `IndexedCARoots` body; `index_fields=False` drops Create/ModifyIndex (e.g. for RPC diffs)."""
    if not trust_domain:
        raise CANotInitializedError()
    views = [public_view(root) for root in roots]
    if not index_fields:
        for view in views:
            for field in INDEX_FIELDS:
                view.pop(field, None)
    active_id = next((view["ID"] for view in views if view["Active"]), "")
    return {"ActiveRootID": active_id, "TrustDomain": trust_domain, "Roots": views}


def pem_chain(roots: Sequence[Mapping[str, Any]]) -> str:
    """The `?pem=true` body: each root followed by its intermediates, each PEM newline-terminated."""
    parts: list[str] = []
    for root in roots:
        for pem in [root.get("RootCert") or "", *(root.get("IntermediateCerts") or ())]:
            if pem:
                parts.append(pem if pem.endswith("\n") else pem + "\n")
    return "".join(parts)
