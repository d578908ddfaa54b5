"""The mesh gateway's routing table: SNI name -> upstream addresses (DESIGN §7). Pure.

`<node>.server.<own dc>.<domain>` -> that server's RPC address;
`server.<own dc>.<domain>` -> any local server;
`[<node>.]server.<other dc>.<domain>` -> a mesh gateway of that DC (which routes again);
`<svc>.<ns>.<other dc>.internal.<trust domain>` -> a mesh gateway of that DC (WAN), which routes
it to a sidecar there (reference/mesh-dataplane.md §7); for our own DC, `local_service` names the
service and the gateway resolves its healthy sidecars from the catalog.
A dialed peer's server name (from its trust bundle) -> that peer's gateways, unless it names our
own DC (peering through mesh gateways: our servers reach a peer's only this way).
`<svc>.<ns>.<partition>.<peer>.external.<td>` (peering.md §4, §7) -> when `td` is a peer's, that
peer's mesh gateways (from its trust bundle); when it is ours, `local_service` names the service
(a peer's proxy dialing something we export; the sidecar enforces the peer intentions).
Anything else is unknown: the gateway closes the connection and counts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from meshfed.rpc.spiffe import parse_peered_sni, parse_service_sni

Address = tuple[str, int]


@dataclass(frozen=True)
class ServerName:
    datacenter: str
    node: str  # "" for "any server"


def parse_server_name(sni: str | None, domain: str) -> ServerName | None:
    """Split a meshfed server SNI; None when it is not one (wrong domain, shape or labels)."""
    if not sni:
        return None
    suffix = "." + domain.strip(".").lower()
    name = sni.lower().rstrip(".")
    if not name.endswith(suffix):
        return None
    labels = name[: -len(suffix)].split(".")
    if len(labels) == 2 and labels[0] == "server" and labels[1]:
        return ServerName(datacenter=labels[1], node="")
    if len(labels) == 3 and labels[1] == "server" and labels[0] and labels[2]:
        return ServerName(datacenter=labels[2], node=labels[0])
    return None


@dataclass(frozen=True)
class RoutingTable:
    datacenter: str
    domain: str = "consul"
    local_servers: Mapping[str, Address] = field(default_factory=dict)  # lower-cased node -> RPC address
    remote_gateways: Mapping[str, Sequence[Address]] = field(default_factory=dict)  # lower-cased dc -> WAN addresses
    trust_domain: str = ""  # Connect's, from the CA roots; "" until known (service names are then unknown)
    peer_gateways: Mapping[str, Sequence[Address]] = field(default_factory=dict)  # peer's trust domain -> its gateways
    # A dialed peer's server name (lower-cased) -> its gateways: our servers' control-plane calls
    # to that peer when the mesh entry says PeerThroughMeshGateways (peering.md §4).
    peer_servers: Mapping[str, Sequence[Address]] = field(default_factory=dict)

    def local_service(self, sni: str | None) -> str | None:
        """The service a service SNI of our own DC names, for the gateway to resolve; else None."""
        peered = parse_peered_sni(sni) if sni else None
        if peered is not None:
            own = bool(self.trust_domain) and peered.trust_domain == self.trust_domain.lower()
            return peered.service if own else None
        service = parse_service_sni(sni, self.trust_domain) if sni and self.trust_domain else None
        if service is None or service.datacenter != self.datacenter.lower():
            return None
        return service.service

    def resolve(self, sni: str | None) -> tuple[str, list[Address]] | None:
        """(route label, candidate upstreams) or None for an unknown name (or a local service)."""
        parsed = parse_server_name(sni, self.domain)
        peer_server = (sni or "").lower().rstrip(".")
        if peer_server in self.peer_servers and (parsed is None or parsed.datacenter != self.datacenter.lower()):
            # Never for our own DC's name: our servers stay ours even if a peer's share the name.
            return (f"peer-server:{peer_server}", list(self.peer_servers[peer_server]))
        if parsed is None and sni and (peered := parse_peered_sni(sni)) is not None:
            gateways = list(self.peer_gateways.get(peered.trust_domain, ()))
            return (f"peer-remote:{peered.peer}", gateways) if gateways else None
        if parsed is None:
            service = parse_service_sni(sni, self.trust_domain) if sni and self.trust_domain else None
            if service is None or service.datacenter == self.datacenter.lower():
                return None
            gateways = list(self.remote_gateways.get(service.datacenter, ()))
            return (f"service-remote:{service.datacenter}", gateways) if gateways else None
        if parsed.datacenter == self.datacenter.lower():
            if parsed.node:
                address = self.local_servers.get(parsed.node)
                return (f"local:{parsed.node}", [address]) if address else None
            servers = sorted(set(self.local_servers.values()))
            return ("local:any", servers) if servers else None
        gateways = list(self.remote_gateways.get(parsed.datacenter, ()))
        return (f"remote:{parsed.datacenter}", gateways) if gateways else None
