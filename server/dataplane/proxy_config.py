"""What a Connect proxy does, decided from its registration or flags (reference/mesh-dataplane.md
§4.1, §6). Pure: no sockets, so each rule is a table-driven unit test.

- `from_registration`: a `connect-proxy` service as `/v1/agent/service/<id>` or the catalog returns
  it (Consul's JSON), the source of truth for `-sidecar-for`;
- `from_flags`: the ad-hoc form (`-service web -upstream socat:8181[:dc1] -listen ... -service-addr ...`);
- `first_hop`: where an upstream connection goes first, by the effective mesh-gateway mode;
- `instance_address`: which address of an instance or gateway to dial (LAN or WAN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshfed.fsm.consul_formats.field_lookup import lookup

DEFAULT_BIND_ADDRESS = "0.0.0.0"  # noqa: S104 (Consul's default for the public listener)
DEFAULT_LOCAL_BIND = "127.0.0.1"
DEFAULT_LOCAL_SERVICE = "127.0.0.1"

HOP_DIRECT = "direct"  # the destination's own sidecars
HOP_LOCAL_GATEWAY = "local-gateway"  # a mesh gateway of our DC (LAN), which forwards to theirs
HOP_REMOTE_GATEWAY = "remote-gateway"  # a mesh gateway of the destination DC (WAN)


class ProxyConfigError(ValueError):
    """The registration or flags cannot describe a proxy; the message names the field."""


@dataclass(frozen=True)
class Upstream:
    destination: str
    local_bind_port: int
    datacenter: str = ""  # "" = the proxy's own
    local_bind_address: str = DEFAULT_LOCAL_BIND
    mode: str = ""  # MeshGateway.Mode set on the upstream itself
    peer: str = ""  # DestinationPeer: a service imported through this (local) peering name


@dataclass(frozen=True)
class ProxyConfig:
    service: str  # the identity the proxy acts as (its destination service)
    public_address: str = DEFAULT_BIND_ADDRESS
    public_port: int = 0  # 0: no inbound listener (an upstream-only proxy)
    local_service_address: str = DEFAULT_LOCAL_SERVICE
    local_service_port: int = 0
    upstreams: tuple[Upstream, ...] = ()
    mode: str = ""  # MeshGateway.Mode of the proxy registration


def _port(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ProxyConfigError(f"{field}: {value!r} is not a port (1-65535)")
    return value


def _mode(block: Any) -> str:
    mode = lookup(block, "Mode") if isinstance(block, Mapping) else None
    return mode.lower() if isinstance(mode, str) else ""


def from_registration(service: Mapping[str, Any]) -> ProxyConfig:
    if lookup(service, "Kind") != "connect-proxy":
        raise ProxyConfigError(f"Kind: {lookup(service, 'Kind')!r} is not a connect-proxy registration")
    proxy = lookup(service, "Proxy") or {}
    destination = lookup(proxy, "DestinationServiceName")
    if not isinstance(destination, str) or not destination:
        raise ProxyConfigError("Proxy.DestinationServiceName: missing")
    config = lookup(proxy, "Config") or {}
    upstreams = []
    for n, raw in enumerate(lookup(proxy, "Upstreams") or ()):
        name = lookup(raw, "DestinationName")
        if not isinstance(name, str) or not name:
            raise ProxyConfigError(f"Proxy.Upstreams[{n}].DestinationName: missing")
        peer = str(lookup(raw, "DestinationPeer") or "")
        datacenter = str(lookup(raw, "Datacenter") or "")
        if peer and datacenter:
            raise ProxyConfigError(f"Proxy.Upstreams[{n}]: Datacenter and DestinationPeer are mutually exclusive")
        upstreams.append(Upstream(
            destination=name,
            local_bind_port=_port(lookup(raw, "LocalBindPort"), f"Proxy.Upstreams[{n}].LocalBindPort"),
            datacenter=datacenter,
            local_bind_address=str(lookup(raw, "LocalBindAddress") or DEFAULT_LOCAL_BIND),
            mode=_mode(lookup(raw, "MeshGateway")),
            peer=peer,
        ))
    local_port = lookup(proxy, "LocalServicePort")
    return ProxyConfig(
        service=destination,
        public_address=str(lookup(config, "bind_address") or DEFAULT_BIND_ADDRESS),
        public_port=_port(lookup(service, "Port"), "Port"),
        local_service_address=str(lookup(proxy, "LocalServiceAddress") or DEFAULT_LOCAL_SERVICE),
        local_service_port=_port(local_port, "Proxy.LocalServicePort") if local_port else 0,
        upstreams=tuple(upstreams),
        mode=_mode(lookup(proxy, "MeshGateway")),
    )


def parse_upstream_flag(text: str) -> Upstream:
    """`name:port` or `name:port:datacenter` (the datacenter part is meshfed's addition)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
        raise ProxyConfigError(f"-upstream {text!r}: expected <service>:<local port>[:<datacenter>]")
    return Upstream(destination=parts[0], local_bind_port=_port(int(parts[1]), f"-upstream {text}"),
                    datacenter=parts[2] if len(parts) == 3 else "")


def split_address(text: str, flag: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ProxyConfigError(f"{flag} {text!r}: expected host:port")
    return host.strip("[]"), _port(int(port), flag)


def from_flags(service: str, upstreams: Sequence[str], listen: str = "", service_addr: str = "") -> ProxyConfig:
    if not service:
        raise ProxyConfigError("-service: missing (or use -sidecar-for)")
    public = split_address(listen, "-listen") if listen else (DEFAULT_BIND_ADDRESS, 0)
    local = split_address(service_addr, "-service-addr") if service_addr else (DEFAULT_LOCAL_SERVICE, 0)
    if public[1] and not local[1]:
        raise ProxyConfigError("-service-addr: required with -listen (where inbound connections go)")
    return ProxyConfig(service=service, public_address=public[0], public_port=public[1],
                       local_service_address=local[0], local_service_port=local[1],
                       upstreams=tuple(parse_upstream_flag(u) for u in upstreams))


def first_hop(local_dc: str, upstream_dc: str, mode: str) -> str:
    """Same-DC upstreams ignore the mode; across DCs, `local`/`remote` pick a gateway, anything
    else ("none", "default", unset) goes straight to the destination's sidecars, as Consul does."""
    if not upstream_dc or upstream_dc.lower() == local_dc.lower():
        return HOP_DIRECT
    return {"local": HOP_LOCAL_GATEWAY, "remote": HOP_REMOTE_GATEWAY}.get(mode.lower(), HOP_DIRECT)


def peered_first_hop(upstream_mode: str, proxy_mode: str) -> str:
    """A peered upstream always goes through mesh gateways (peering.md §4): the peer's own
    gateways with mode `remote`, else our local gateway, which forwards by SNI to the peer's."""
    mode = (upstream_mode or proxy_mode).lower()
    return HOP_REMOTE_GATEWAY if mode == "remote" else HOP_LOCAL_GATEWAY


def instance_address(csn: Mapping[str, Any], wan: bool) -> tuple[str, int] | None:
    """The address to dial for one `/v1/health/...` row: the service's `wan` tagged address when
    dialing across DCs, then its `lan` one, then its address, then its node's."""
    service = lookup(csn, "Service") or {}
    node = lookup(csn, "Node") or {}
    tagged = lookup(service, "TaggedAddresses") or {}
    for name in (("wan", "lan") if wan else ("lan",)):
        entry = lookup(tagged, name) if isinstance(tagged, Mapping) else None
        if isinstance(entry, Mapping) and lookup(entry, "Address") and lookup(entry, "Port"):
            return str(lookup(entry, "Address")), int(lookup(entry, "Port"))
    port = lookup(service, "Port")
    host = lookup(service, "Address") or lookup(node, "Address")
    if not host or not isinstance(port, int) or not port:
        return None
    return str(host), port
