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


@dataclass(frozen=True)
class PeeringTrustBundle:
    """What a peer told us about its mesh (peering.md §1.1 PeeringTrustBundle, plus what our
    proxies and gateway need to reach it): its Connect CA roots and trust domain (a caller whose
    leaf chains to these roots and names this trust domain is imported through `peer_name`), the
    name the peer gives this peering (the middle of the SNI our proxies dial:
    `<svc>.default.default.<remote_peer_name>.external.<trust_domain>`), its datacenter and its
    mesh gateways' WAN addresses."""

    peer_name: str  # our local name of the peering
    trust_domain: str = ""
    root_pems: tuple[str, ...] = ()
    remote_peer_name: str = ""
    datacenter: str = ""
    gateway_addresses: tuple[str, ...] = ()
    modify_index: int = 0

    def same_content(self, other: PeeringTrustBundle | None) -> bool:
        return other is not None and dataclasses.replace(self, modify_index=0) == dataclasses.replace(
            other, modify_index=0)


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


def bundle_from_wire(data: dict[str, Any]) -> PeeringTrustBundle:
    return PeeringTrustBundle(
        data["peer_name"], data.get("trust_domain") or "", _tuple(data.get("root_pems")),
        data.get("remote_peer_name") or "", data.get("datacenter") or "", _tuple(data.get("gateway_addresses")),
        data.get("modify_index") or 0,
    )
