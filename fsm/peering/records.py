"""Peering records: one row per peering, its secrets, and what a peer exported to us.

Secrets live in their own table so no read of `peerings` can leak one into an HTTP answer
(reference connect-data.md §D.3: they are never part of the peering's JSON). Stream timestamps
(LastHeartbeat, ...) are not state: they would cost a Raft write per heartbeat; the server keeps
them in memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from meshfed.fsm.records import CheckServiceNode, csn_from_wire

STATE_PENDING = "PENDING"
STATE_ESTABLISHING = "ESTABLISHING"
STATE_ACTIVE = "ACTIVE"
STATE_FAILING = "FAILING"
STATE_DELETING = "DELETING"
STATE_TERMINATED = "TERMINATED"
PEERING_STATES = ("UNDEFINED", STATE_PENDING, STATE_ESTABLISHING, STATE_ACTIVE, STATE_FAILING,
                  STATE_DELETING, STATE_TERMINATED)


@dataclass(frozen=True)
class Peering:
    id: str
    name: str
    state: str = ""  # "" on a write = keep the stored state (PENDING for a new row)
    peer_id: str = ""
    peer_ca_pems: tuple[str, ...] = ()
    peer_server_name: str = ""
    peer_server_addresses: tuple[str, ...] = ()
    manual_server_addresses: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    remote_datacenter: str = ""
    deleted_at: str = ""
    created_at: str = ""  # RFC 3339, chosen by the proposer (apply reads no clock)
    imported_services: tuple[str, ...] = ()
    exported_services: tuple[str, ...] = ()
    create_index: int = 0
    modify_index: int = 0

    @property
    def is_dialer(self) -> bool:
        """Consul's ShouldDial: the side that ran Establish knows the peer's servers."""
        return bool(self.peer_server_addresses or self.manual_server_addresses)


@dataclass(frozen=True)
class PeeringSecrets:
    """The acceptor's establishment secret (single use) and stream secret; the dialer keeps only
    the stream secret it was given."""

    peering_id: str
    establishment: str = ""
    stream: str = ""


@dataclass(frozen=True)
class ImportedService:
    """The instances of one service a peer exports to us, as the peer reported them."""

    peer_name: str
    service: str
    nodes: tuple[CheckServiceNode, ...] = ()
    modify_index: int = 0


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value or ())


def peering_from_wire(data: dict[str, Any]) -> Peering:
    names = {f.name for f in dataclasses.fields(Peering)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for key in ("peer_ca_pems", "peer_server_addresses", "manual_server_addresses",
                "imported_services", "exported_services"):
        if key in kwargs:
            kwargs[key] = _tuple(kwargs[key])
    if kwargs.get("meta") is None:
        kwargs.pop("meta", None)
    return Peering(**kwargs)


def secrets_from_wire(data: dict[str, Any]) -> PeeringSecrets:
    return PeeringSecrets(data["peering_id"], data.get("establishment") or "", data.get("stream") or "")


def imported_from_wire(data: dict[str, Any]) -> ImportedService:
    return ImportedService(
        data["peer_name"], data["service"], tuple(csn_from_wire(n) for n in data.get("nodes") or ()),
        data.get("modify_index") or 0,
    )
