"""Where the Connect proxy sends one new connection to an upstream (reference/mesh-dataplane.md §4,
peering.md §4): the first hop (the destination's sidecars, a local gateway, a gateway of the
destination DC, or for a peered upstream our gateway or the peer's), the healthy addresses of that
hop, and the SNI and identity to demand there.

The answers come from the servers' HTTP API and are reused briefly: a burst of connections costs
one catalog read, while a mode change or a sidecar turning unhealthy still reaches new connections
within a second. The proxy's relay (server/dataplane/proxy.py) dials what this returns and judges
nothing here; this module only reads and decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

from meshfed.rpc.spiffe import service_sni, service_uri
from meshfed.server.dataplane.peer_trust import PeerTrust
from meshfed.server.dataplane.proxy_config import (
    HOP_DIRECT,
    HOP_LOCAL_GATEWAY,
    HOP_REMOTE_GATEWAY,
    ProxyConfig,
    Upstream,
    first_hop,
    instance_address,
    peered_first_hop,
)

MODE_CACHE_SECONDS = 1.0  # a proxy-defaults mode change reaches new connections within this
RESOLVE_CACHE_SECONDS = 1.0

Addresses = list[tuple[str, int]]


class Requests(Protocol):
    """The one call of `server_api.ServerAPI` used here, so tests can answer with canned bodies."""

    async def request(self, method: str, path: str, *, json: Any = None,
                      timeout: float = 10.0) -> tuple[int, dict[str, str], Any]: ...


class Whereabouts(Protocol):
    """What the proxy learned from its leaf and the trust bundles: its own datacenter and trust
    domain, and the peers'. Read at each call, because a rotated leaf or a new bundle changes them."""

    datacenter: str
    trust_domain: str
    peers: PeerTrust


class UpstreamRoutes:
    def __init__(self, cfg: ProxyConfig, api: Requests, where: Whereabouts, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.api = api
        self.where = where
        self._clock = clock
        self._modes: dict[Upstream, tuple[float, str]] = {}
        self._resolved: dict[Upstream, tuple[float, tuple[str, Addresses]]] = {}

    async def _mode(self, upstream: Upstream) -> str:
        cached = self._modes.get(upstream)
        if cached is not None and self._clock() - cached[0] < MODE_CACHE_SECONDS:
            return cached[1]
        query = (f"/v1/internal/mesh-gateway-mode?stale&service={quote(self.cfg.service)}"
                 f"&upstream={quote(upstream.destination)}&upstream-datacenter={quote(upstream.datacenter)}"
                 f"&instance-mode={quote(self.cfg.mode)}&upstream-mode={quote(upstream.mode)}")
        status, _, body = await self.api.request("GET", query)
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"mesh gateway mode: HTTP {status}: {body}")
        mode = str(body.get("Mode") or "")
        self._modes[upstream] = (self._clock(), mode)
        return mode

    async def candidates(self, upstream: Upstream) -> tuple[str, Addresses]:
        """(first hop kind, addresses to try) for one new connection to `upstream`, looked up at most
        once per RESOLVE_CACHE_SECONDS: a burst of connections costs one catalog read, and a sidecar
        or gateway that turned unhealthy stops being dialed within that time."""
        cached = self._resolved.get(upstream)
        if cached is not None and self._clock() - cached[0] < RESOLVE_CACHE_SECONDS:
            return cached[1]
        resolved = await self._resolve(upstream)
        self._resolved[upstream] = (self._clock(), resolved)
        return resolved

    def target(self, upstream: Upstream) -> tuple[str, str]:
        """(SNI to dial, SPIFFE ID the destination must present) for one upstream."""
        where = self.where
        if upstream.peer:
            return where.peers.target(upstream.peer, upstream.destination)
        target_dc = upstream.datacenter or where.datacenter
        return (service_sni(upstream.destination, target_dc, where.trust_domain),
                service_uri(where.trust_domain, target_dc, upstream.destination))

    async def _resolve(self, upstream: Upstream) -> tuple[str, Addresses]:
        where = self.where
        if upstream.peer:
            hop = peered_first_hop(upstream.mode, self.cfg.mode)
            if hop == HOP_REMOTE_GATEWAY:
                return hop, where.peers.gateways(upstream.peer)
            rows = await self._rows("/v1/health/service/mesh-gateway?passing&stale")
            return hop, [a for a in (instance_address(row, False) for row in rows) if a is not None]
        target_dc = upstream.datacenter or where.datacenter
        hop = first_hop(where.datacenter, target_dc, await self._mode(upstream))
        remote = target_dc.lower() != where.datacenter.lower()
        if hop == HOP_DIRECT:
            path = f"/v1/health/connect/{quote(upstream.destination)}?passing&stale" + (f"&dc={target_dc}" if remote else "")
            rows, wan = await self._rows(path), remote
        elif hop == HOP_LOCAL_GATEWAY:
            rows, wan = await self._rows("/v1/health/service/mesh-gateway?passing&stale"), False
        else:
            status, _, by_dc = await self.api.request("GET", "/v1/internal/federation-states/mesh-gateways?stale")
            if status != 200 or not isinstance(by_dc, dict):
                raise RuntimeError(f"federation states: HTTP {status}")
            rows = [g for g in by_dc.get(target_dc, []) if all(c.get("Status") == "passing" for c in g.get("Checks", []))]
            wan = True
        addresses = [a for a in (instance_address(row, wan) for row in rows) if a is not None]
        return hop, addresses

    async def _rows(self, path: str) -> list[dict[str, Any]]:
        status, _, rows = await self.api.request("GET", path)
        if status != 200 or not isinstance(rows, list):
            raise RuntimeError(f"GET {path}: HTTP {status}: {rows}")
        return rows
