"""Peering commands, their state-free checks and their log encoding.

`fsm/commands.py` folds these into its Command union, tags and `validate`, as it does the ACL
commands. State-dependent rules (unique names, dialing mode, single-use secrets) are in apply.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.peering.records import (
    PEERING_STATES,
    ImportedService,
    Peering,
    PeeringTrustBundle,
    bundle_from_wire,
    imported_from_wire,
    peering_from_wire,
)

# connect-data.md §D.1: a DNS label.
PEER_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
PEER_NAME_ERROR = (
    "is not a valid peer name: a valid peering name must consist of lower case alphanumeric "
    "characters or '-', and must start and end with an alphanumeric character"
)


@dataclass(frozen=True)
class PeeringWrite:
    """Upsert a peering; non-empty secrets replace the stored ones (a new establishment secret
    invalidates earlier tokens; the stream secret is kept unless given)."""

    peering: Peering
    establishment_secret: str = ""
    stream_secret: str = ""


@dataclass(frozen=True)
class PeeringExchangeSecret:
    """The acceptor's half of establishment: spend the establishment secret (once) for a stream
    secret and mark the peering ACTIVE."""

    peering_id: str
    establishment_secret: str
    stream_secret: str


@dataclass(frozen=True)
class PeeringDelete:
    """Remove a peering, its secrets and everything imported through it, in one entry."""

    name: str


@dataclass(frozen=True)
class PeeringImportSet:
    """Replace everything imported from `peer_name` (a replication round's result)."""

    peer_name: str
    services: tuple[ImportedService, ...] = ()


@dataclass(frozen=True)
class PeeringTrustBundleWrite:
    """Store what a peer said about its mesh (its CA roots, trust domain, gateways); replaces the
    previous bundle of that peering."""

    bundle: PeeringTrustBundle


PeeringCommand = PeeringWrite | PeeringExchangeSecret | PeeringDelete | PeeringImportSet | PeeringTrustBundleWrite
PEERING_COMMANDS: tuple[type, ...] = (PeeringWrite, PeeringExchangeSecret, PeeringDelete, PeeringImportSet,
                                      PeeringTrustBundleWrite)

Problem = tuple[str, str]


def peer_name_problem(name: str, field: str = "PeerName") -> Problem | None:
    if not PEER_NAME.match(name):
        return field, f"{name} {PEER_NAME_ERROR}"
    return None


def peering_shape_problem(command: Any) -> Problem | None:
    """The first state-free reason to refuse a peering command (types are checked by the caller)."""
    if isinstance(command, PeeringWrite):
        peering = command.peering
        if not peering.id:
            return "ID", "Missing Peering ID"
        if not peering.name:
            return "Name", "Missing Peering Name"
        if peering.state and peering.state not in PEERING_STATES:
            return "State", f"State: unknown peering state {peering.state!r}"
        if (peering.state == "DELETING") != bool(peering.deleted_at):
            return "DeletedAt", "DeletedAt must be set if and only if the state is DELETING"
        return peer_name_problem(peering.name, "Name")
    if isinstance(command, PeeringExchangeSecret):
        if not command.peering_id:
            return "PeerID", "PeerID: missing peering ID"
        if not command.stream_secret:
            return "StreamSecret", "StreamSecret: missing stream secret"
        return None
    if isinstance(command, PeeringDelete):
        return None if command.name else ("Name", "Must specify a name to delete.")
    if isinstance(command, PeeringImportSet):
        for imported in command.services:
            if imported.peer_name != command.peer_name:
                return "Services", f"Services: {imported.service!r} names peer {imported.peer_name!r}"
        return peer_name_problem(command.peer_name, "PeerName")
    if isinstance(command, PeeringTrustBundleWrite):
        bundle = command.bundle
        if not bundle.trust_domain:
            return "TrustDomain", "TrustDomain: missing trust domain"
        if not bundle.root_pems:
            return "RootPEMs", "RootPEMs: a trust bundle needs at least one root"
        return peer_name_problem(bundle.peer_name, "PeerName")
    return None


# ---- log encoding: tags are stored forever; never rename one ---------------------------------

PEERING_TAGS: dict[type, str] = {
    PeeringWrite: "peer.write/1",
    PeeringExchangeSecret: "peer.exchange/1",
    PeeringDelete: "peer.del/1",
    PeeringImportSet: "peer.import/1",
    PeeringTrustBundleWrite: "peer.bundle/1",
}

PEERING_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "peer.write/1": lambda body: PeeringWrite(
        peering_from_wire(body["peering"]), body.get("establishment_secret") or "", body.get("stream_secret") or ""
    ),
    "peer.exchange/1": lambda body: PeeringExchangeSecret(
        body["peering_id"], body["establishment_secret"], body["stream_secret"]
    ),
    "peer.del/1": lambda body: PeeringDelete(body["name"]),
    "peer.import/1": lambda body: PeeringImportSet(
        body["peer_name"], tuple(imported_from_wire(s) for s in body.get("services") or ())
    ),
    "peer.bundle/1": lambda body: PeeringTrustBundleWrite(bundle_from_wire(body["bundle"])),
}
