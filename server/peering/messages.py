"""The messages of the peering stream and the pure bookkeeping around them (reference peering.md
§1.1, §1.3, §1.4). No I/O: the session (session.py) sends and stores, this decides what.

After the dialer's first message (`open_message`: PeerID and StreamSecret, which authenticate
the stream), both sides send the same kinds, each a map with a `Type`:
  Mesh        {"Mesh": CA roots, trust domain, gateways (mesh.py) or None}   on open and on change
  Services    {"Services": {name: [CheckServiceNode wire]}}                  the full export set, on open
  Upsert      {"Service": name, "Nodes": [...]}                              one service changed
  Delete      {"Service": name}                                              one service no longer exported
  ServerAddresses {"Addresses": [host:port]}  acceptor only: where to dial it (mesh.advertised_addresses), on open and on change
  Heartbeat   {"Timeout": the sender's silence timeout}                      every heartbeat interval
  Terminated  {}                                                             the sender deleted the peering
Consul sends one resource per Response with ACK/NACKs; here the stream is ordered and a broken
message ends the stream (the dialer redials and the full set is sent again), so no ACKs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshfed.fsm.peering.records import ImportedService
from meshfed.fsm.records import csn_from_wire

STREAM_METHOD = "Peering/StreamResources"

MESH = "Mesh"
SERVICES = "Services"
UPSERT = "Upsert"
DELETE = "Delete"
SERVER_ADDRESSES = "ServerAddresses"
HEARTBEAT = "Heartbeat"
TERMINATED = "Terminated"
TYPES = (MESH, SERVICES, UPSERT, DELETE, SERVER_ADDRESSES, HEARTBEAT, TERMINATED)

Exports = dict[str, list[Any]]  # service name -> its instances as CheckServiceNode wire maps


def open_message(peer_id: str, stream_secret: str, datacenter: str, timeout: float) -> dict[str, Any]:
    """`HeartbeatTimeout`: the dialer's silence timeout, which the acceptor's heartbeats must beat."""
    return {"PeerID": peer_id, "StreamSecret": stream_secret, "HeartbeatTimeout": timeout,
            "Remote": {"Partition": "default", "Datacenter": datacenter}}


def message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"Type": kind, **fields}


def export_changes(before: Mapping[str, list[Any]] | None, after: Exports) -> list[dict[str, Any]]:
    """What to send so the peer's view of our exports goes from `before` (None: nothing sent
    yet on this stream) to `after`: the full set once, then one message per changed service."""
    if before is None:
        return [message(SERVICES, Services=after)]
    changes = [message(UPSERT, Service=name, Nodes=nodes) for name, nodes in sorted(after.items())
               if before.get(name) != nodes]
    changes += [message(DELETE, Service=name) for name in sorted(set(before) - set(after))]
    return changes


def kind_of(received: Any) -> str:
    """The message's Type; ValueError for anything that is not one of ours."""
    kind = received.get("Type") if isinstance(received, dict) else None
    if kind not in TYPES:
        raise ValueError(f"unexpected message type {kind!r}")
    return str(kind)


def server_addresses(received: dict[str, Any]) -> tuple[str, ...]:
    """A ServerAddresses message's list; ValueError unless it is a non-empty list of host:port."""
    addresses = received.get("Addresses")
    if not isinstance(addresses, list) or not addresses or not all(
            isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
        raise ValueError("ServerAddresses: Addresses must be a non-empty list of host:port")
    return tuple(addresses)


def _service_name(received: dict[str, Any]) -> str:
    name = received.get("Service")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{received['Type']}: Service must be a non-empty string")
    return name


def _nodes(name: str, nodes: Any) -> list[Any]:
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise ValueError(f"service {name}: Nodes must be a list of maps")
    return nodes


class ImportView:
    """What the peer exports to us, as its messages describe it. `None` until its full set came:
    an Upsert before that is a protocol error, not a partial import to store."""

    def __init__(self) -> None:
        self.services: Exports | None = None

    def apply(self, received: dict[str, Any]) -> bool:
        """Apply a Services/Upsert/Delete message; True when the view changed."""
        kind = received["Type"]
        if kind == SERVICES:
            services = received.get("Services")
            if not isinstance(services, dict) or not all(isinstance(k, str) for k in services):
                raise ValueError("Services: expected a map of service names")
            full = {name: _nodes(name, nodes) for name, nodes in services.items()}
            changed = full != self.services
            self.services = full
            return changed
        if self.services is None:
            raise ValueError(f"{kind} before the full Services set")
        name = _service_name(received)
        if kind == UPSERT:
            nodes = _nodes(name, received.get("Nodes"))
            changed = self.services.get(name) != nodes
            self.services[name] = nodes
            return changed
        return self.services.pop(name, None) is not None

    def records(self, peer_name: str) -> tuple[ImportedService, ...]:
        """The view as the records `PeeringImportSet` stores; ValueError when an instance does
        not decode."""
        try:
            return tuple(ImportedService(peer_name, name, tuple(csn_from_wire(n) for n in nodes))
                         for name, nodes in sorted((self.services or {}).items()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"undecodable service instance from the peer: {exc}") from None
