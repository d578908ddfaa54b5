"""Which local services an `exported-services` entry offers to one peer (reference peering.md
§1.3). `exported_to` decides and is pure; the two readers below take its inputs from the state
store (the entry, the catalog) and the instances the stream sends.

A service in the mesh (one with a sidecar or Connect-native instances) also goes out as a
synthetic `<svc>-sidecar-proxy` set, one instance per healthy mesh gateway at its WAN address,
with `Connect.PeerMeta` naming the SNI and SPIFFE ID the peer's proxies dial and verify: what
the importing side serves on `/v1/health/connect/<svc>?peer=`, as Consul's exporter sends it.
Our own proxies resolve a peered upstream from the trust bundle and do not need it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshfed.fsm.config_entries.schema import KIND_EXPORTED_SERVICES
from meshfed.fsm.consul_formats.field_lookup import lookup
from meshfed.fsm.records import CONNECT_PROXY_KIND, CheckServiceNode, NodeService, to_wire
from meshfed.fsm.state import StateStore
from meshfed.rpc.spiffe import peered_service_sni, service_uri
from meshfed.server.ca.identity import trust_domain
from meshfed.server.peering.mesh import gateway_address, healthy_gateways

WILDCARD = "*"
EXPORTED_SERVICES_NAME = "default"


def exported_to(entry_body: Mapping[str, Any] | None, peer_name: str, local_services: Iterable[str]) -> list[str]:
    """Sorted names of the local services `entry_body` exports to `peer_name` (the acceptor's
    name for the peering); `Name = "*"` exports every local service."""
    if not entry_body:
        return []
    local = sorted(set(local_services))
    chosen: set[str] = set()
    for service in lookup(entry_body, "Services") or []:
        consumers = lookup(service, "Consumers") or []
        if not any((lookup(c, "Peer") or "").lower() == peer_name.lower() for c in consumers):
            continue
        name = lookup(service, "Name") or ""
        if name == WILDCARD:
            chosen.update(local)
        elif name:
            chosen.add(name)
    return sorted(chosen)


def exported_service_names(state: StateStore, peer_name: str) -> list[str]:
    """What the local `exported-services` entry offers to the peering named `peer_name` here."""
    _, entry = state.config_entry_get(KIND_EXPORTED_SERVICES, EXPORTED_SERVICES_NAME)
    _, services = state.catalog_services()
    return exported_to(entry.body if entry is not None else None, peer_name, services)


SIDECAR_SUFFIX = "-sidecar-proxy"
DEFAULT_PROTOCOL = "tcp"


def exported_instances(state: StateStore, peer_name: str, datacenter: str) -> dict[str, list[Any]]:
    """Every exported service's instances (healthy or not), as the stream sends them, plus the
    synthetic sidecar set of each exported service in the mesh (module docstring)."""
    exports: dict[str, list[Any]] = {}
    gateways = healthy_gateways(state)
    _, ca = state.ca_state()
    domain = trust_domain(ca.cluster_id) if ca is not None and ca.cluster_id else ""
    for name in exported_service_names(state, peer_name):
        exports[name] = [to_wire(csn) for csn in state.health_service_nodes(name)[1]]
        if gateways and domain and state.health_service_nodes(name, connect=True)[1]:
            exports[name + SIDECAR_SUFFIX] = [
                to_wire(csn) for csn in sidecar_set(name, gateways, peer_name, domain, datacenter)]
    return exports


def sidecar_set(service: str, gateways: list[CheckServiceNode], peer_name: str, domain: str,
                datacenter: str) -> list[CheckServiceNode]:
    """One connect-proxy instance for `service` per mesh gateway, at the gateway's WAN address."""
    peer_meta = {"SNI": [peered_service_sni(service, peer_name, domain)],
                 "SpiffeID": [service_uri(domain, datacenter, service)], "Protocol": DEFAULT_PROTOCOL}
    found = []
    for gateway in gateways:
        wan = gateway_address(gateway)
        if wan is None:
            continue
        address, port = wan
        proxy = NodeService(id=service + SIDECAR_SUFFIX, service=service + SIDECAR_SUFFIX, kind=CONNECT_PROXY_KIND,
                            address=address, port=port, proxy={"DestinationServiceName": service},
                            connect={"PeerMeta": peer_meta})
        found.append(CheckServiceNode(node=gateway.node, service=proxy, checks=gateway.checks))
    return found
