"""What one cluster tells a peer about its mesh, and what it keeps of the peer's answer
(reference peering.md §1.1 PeeringTrustBundle, §4 data plane).

Each exchange carries, in both directions, the sender's Connect CA roots and trust domain (so the
other side's sidecars can verify callers and destinations from this cluster), its datacenter,
the name it gives the peering (the importer's proxies put it in the SNI they dial) and its mesh
gateways' WAN addresses (where that traffic enters). Each side sends its half on the peering
stream when the stream opens and again whenever it changes (session.py), as Consul's peerstream
sends the trust bundle.
"""

from __future__ import annotations

from typing import Any

from meshfed.fsm.peering.records import Peering, PeeringTrustBundle
from meshfed.fsm.records import CheckServiceNode
from meshfed.fsm.state import StateStore
from meshfed.server.ca.identity import trust_domain

MESH_GATEWAY = "mesh-gateway"


def local_mesh(state: StateStore, datacenter: str, peer_name: str) -> dict[str, Any] | None:
    """This cluster's half of an exchange with the peering named `peer_name` here; None before
    the Connect CA has roots (nothing to trust yet: the peer keeps what it had)."""
    _, ca = state.ca_state()
    roots = [str(r["RootCert"]) for r in (ca.roots if ca is not None else ()) if r.get("RootCert")]
    if ca is None or not roots:
        return None
    return {
        "TrustDomain": trust_domain(ca.cluster_id),
        "RootPEMs": roots,
        "PeerName": peer_name,
        "Datacenter": datacenter,
        "MeshGateways": gateway_addresses(state),
    }


def peer_through_mesh_gateways(state: StateStore) -> bool:
    """The `mesh` entry's `Peering.PeerThroughMeshGateways` (peering.md §4): peers reach this
    cluster's servers through its mesh gateways, never directly."""
    _, entry = state.config_entry_get("mesh", "mesh")
    peering = (entry.body if entry is not None else {}).get("Peering") or {}
    return bool(isinstance(peering, dict) and peering.get("PeerThroughMeshGateways"))


def advertised_addresses(state: StateStore) -> tuple[str, ...]:
    """Where a peer dials this cluster: its mesh gateways' WAN addresses with
    PeerThroughMeshGateways, else its servers' gRPC addresses. What a token carries and what the
    acceptor sends on the stream when it changes (peering.md §1.3)."""
    if peer_through_mesh_gateways(state):
        return tuple(gateway_addresses(state))
    return tuple(s.rpc_address for s in state.servers()[1] if s.rpc_address)


def dial_addresses(state: StateStore, peering: Peering, *, datacenter: str = "") -> tuple[str, ...]:
    """Where our leader calls a peer we dial: with PeerThroughMeshGateways, our own gateways (LAN),
    which route the peer's server name to the peer's gateways, once the peer's trust bundle told
    them where those are; before that (the establishment exchange, the first round) and without
    the flag, the addresses from the token (the peer's gateways if the peer has the flag).

    A peer whose datacenter has our name (`datacenter`, two independent `dc1`s are common) is the
    exception: our gateway routes that server name to our own servers, never to a peer, so the
    leader dials the token's addresses directly (the peer's gateways when it has the flag)."""
    direct = peering.manual_server_addresses or peering.peer_server_addresses
    if not peer_through_mesh_gateways(state):
        return direct
    if datacenter and server_name_datacenter(peering.peer_server_name) == datacenter.lower():
        return direct
    bundle = state.peering_trust_bundle(peering.name)
    local = tuple(gateway_addresses(state, wan=False)) if bundle is not None and bundle.gateway_addresses else ()
    return local or direct


def server_name_datacenter(name: str) -> str:
    """The datacenter label of a server name `server.<dc>.<domain>` (lower case), else ""."""
    labels = name.lower().rstrip(".").split(".")
    return labels[1] if len(labels) >= 3 and labels[0] == "server" else ""


def healthy_gateways(state: StateStore) -> list[CheckServiceNode]:
    """The local mesh gateways whose checks pass."""
    _, rows = state.health_service_nodes(MESH_GATEWAY, passing_only=True)
    return [csn for csn in rows if csn.service.kind == MESH_GATEWAY]


def gateway_address(gateway: CheckServiceNode, wan: bool = True) -> tuple[str, int] | None:
    """Where a gateway is dialed: its WAN (what a peer dials) or LAN (what our own servers dial)
    tagged address, else its service or node address; None without one."""
    service = gateway.service
    tagged = service.tagged_addresses.get("wan" if wan else "lan")
    host, port = (tagged.address, tagged.port) if tagged is not None and tagged.address and tagged.port else (
        service.address or gateway.node.address, service.port)
    return (host, port) if host and port else None


def gateway_addresses(state: StateStore, wan: bool = True) -> list[str]:
    """`host:port` of every healthy local mesh gateway (see `gateway_address`)."""
    found = {f"{a[0]}:{a[1]}" for csn in healthy_gateways(state) if (a := gateway_address(csn, wan)) is not None}
    return sorted(found)


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field}: expected a list of strings")
    return tuple(value)


def peer_bundle(peer_name: str, wire: Any) -> PeeringTrustBundle | None:
    """The peer's half as the record we store for our peering `peer_name`; None when the peer
    sent none (its CA is not initialised yet); ValueError when it is malformed."""
    if wire is None:
        return None
    if not isinstance(wire, dict):
        raise ValueError("peer's mesh description: expected a map")
    domain, remote_name, datacenter = (wire.get(k) for k in ("TrustDomain", "PeerName", "Datacenter"))
    if not isinstance(domain, str) or not domain:
        raise ValueError("peer's mesh description: TrustDomain missing")
    roots = _strings(wire.get("RootPEMs"), "RootPEMs")
    if not roots:
        raise ValueError("peer's mesh description: RootPEMs empty")
    return PeeringTrustBundle(
        peer_name=peer_name, trust_domain=domain.lower(), root_pems=roots,
        remote_peer_name=remote_name if isinstance(remote_name, str) else "",
        datacenter=datacenter if isinstance(datacenter, str) else "",
        gateway_addresses=_strings(wire.get("MeshGateways") or [], "MeshGateways"),
    )
