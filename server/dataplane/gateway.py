"""`meshfed gateway`: the SNI-routing mesh gateway process (DESIGN §1, §7).

Lifecycle, like the server's: register in the local catalog (kind `mesh-gateway`, meta
`consul-wan-federation = "1"` with `-expose-servers`, LAN and WAN tagged addresses, a TTL check),
start the splice listener and a small admin HTTP endpoint (/metrics, /v1/gateway/routes), then
run four loops until SIGTERM:
- heartbeat: pass the TTL check every TTL/3; re-register when the servers forgot us;
- local servers: blocking query on `/v1/catalog/service/consul` (servers publish themselves there);
- remote gateways: blocking query on `/v1/internal/federation-states/mesh-gateways`: the full
  list once, then meshfed's `?changes-since=<last index>` deltas merged into the table (a full
  re-read on a resync marker or any error; `MESHFED_GATEWAY_DELTA=0`: full reads only);
- trust domain: blocking query on `/v1/connect/ca/roots`, so service SNIs can be recognised;
- peers: blocking query on `/v1/internal/peering/trust-bundles`: a peered SNI of a peer's trust
  domain goes to that peer's gateways, one of ours to the exported service's sidecars.
Service traffic (reference/mesh-dataplane.md §7): a service SNI of another DC goes to that DC's
gateways; one of our own DC goes to a healthy sidecar of the service, looked up per connection
(cached a second). The gateway never decrypts it: intentions are enforced by the sidecar.
The route loops rotate over the `-http-addr` servers when one fails, and keep the last known
table meanwhile (a gateway keeps routing while its servers restart). SIGTERM: deregister, stop
accepting, drain open connections; a second SIGTERM exits at once.

ACLs (reference/acl.md §8 step 5, `gateway_acl.py`): every call carries the gateway's token. A
403 is logged as an error that quotes the server's text (it names the missing permission) and
the rules the token needs, then retried with a backoff up to 30 s; a route read whose rows were
filtered by ACLs is logged once, since an empty route table would look like a quiet datacenter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from meshfed.rpc.gateway_routes import Address, RoutingTable
from meshfed.rpc.splice import SpliceServer
from meshfed.server.dataplane.gateway_acl import denied_message, token_rules
from meshfed.server.dataplane.proxy_config import instance_address
from meshfed.server.dataplane.remote_gateways import (  # noqa: F401 (GATEWAY_CHANGES_LOGGED, remote_gateways: importable here)
    GATEWAY_CHANGES_LOGGED,
    describe_gateway_changes,
    is_delta,
    merge_gateway_delta,
    remote_gateways,
)
from meshfed.server.dataplane.server_api import RETRY_DELAY, DenialLog, Denied, ServerAPI, follow, start_admin

log = logging.getLogger("meshfed.gateway")

WANFED_META = {"consul-wan-federation": "1"}
LOCAL_SERVICE_CACHE = 1.0


@dataclass(frozen=True)
class GatewayConfig:
    datacenter: str
    node: str
    bind: Address  # LAN listener
    wan_address: Address  # what other DCs dial (advertised)
    http_addrs: tuple[str, ...]  # local servers' HTTP APIs, host:port
    admin_bind: Address | None = None
    expose_servers: bool = False
    service_id: str = "mesh-gateway"
    domain: str = "consul"
    ttl: float = 10.0
    token: str = ""

    @property
    def check_id(self) -> str:
        return f"service:{self.service_id}"


def registration(cfg: GatewayConfig) -> dict[str, Any]:
    lan_host, lan_port = cfg.bind
    wan_host, wan_port = cfg.wan_address
    return {
        "Datacenter": cfg.datacenter,
        "Node": cfg.node,
        "Address": lan_host,
        "TaggedAddresses": {"lan": lan_host, "wan": wan_host},
        "Service": {
            "Kind": "mesh-gateway",
            "ID": cfg.service_id,
            "Service": "mesh-gateway",
            "Address": lan_host,
            "Port": lan_port,
            "TaggedAddresses": {"lan": {"Address": lan_host, "Port": lan_port},
                                "wan": {"Address": wan_host, "Port": wan_port}},
            "Meta": dict(WANFED_META) if cfg.expose_servers else {},
        },
        "Check": {
            "CheckID": cfg.check_id,
            "Name": "mesh gateway heartbeat",
            "ServiceID": cfg.service_id,
            "TTL": f"{cfg.ttl:g}s",
            "Status": "passing",
        },
    }


def local_servers(catalog_service: Sequence[dict[str, Any]]) -> dict[str, Address]:
    """`/v1/catalog/service/consul` rows -> node -> RPC address."""
    servers = {}
    for row in catalog_service:
        host = row.get("ServiceAddress") or row.get("Address")
        port = row.get("ServicePort")
        if host and port:
            servers[str(row["Node"]).lower()] = (host, int(port))
    return servers


GATEWAY_DELTA_ENV = "MESHFED_GATEWAY_DELTA"
CHANGES_SINCE = "changes-since"


def gateway_delta_enabled() -> bool:
    """"0" makes the gateway read the whole gateway list on every change again, as before issue
    #13's delta; for benchmarks' same-run baselines. Read when the gateway starts."""
    return os.environ.get(GATEWAY_DELTA_ENV, "1") != "0"


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Counter("meshfed_gateway_connections", "Connections handled, by route and outcome",
                                   ["route", "outcome"], registry=r)
        self.routes = Gauge("meshfed_gateway_routes", "Known upstreams", ["kind"], registry=r)
        self.heartbeat_failures = Counter("meshfed_gateway_heartbeat_failures", "TTL heartbeats that failed", registry=r)
        self.route_refresh_failures = Counter("meshfed_gateway_route_refresh_failures",
                                              "Failed blocking queries for routes", ["source"], registry=r)
        self.active = Gauge("meshfed_gateway_active_connections", "Connections being spliced", registry=r)
        self.bytes = Counter("meshfed_gateway_bytes", "Bytes spliced, by route and direction",
                             ["route", "direction"], registry=r)
        self.acl_denials = Counter("meshfed_gateway_acl_denials", "Calls to the servers refused by ACLs (HTTP 403)",
                                   ["call"], registry=r)


class Gateway:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.metrics = GatewayMetrics()
        self.table = RoutingTable(datacenter=cfg.datacenter, domain=cfg.domain)
        self.splice = SpliceServer(
            self._resolve, on_connection=self._on_connection,
            on_bytes=lambda route, direction, n: self.metrics.bytes.labels(route, direction).inc(n),
        )
        self._stop = asyncio.Event()
        self._lookups: ServerAPI | None = None
        self._services: dict[str, tuple[float, list[Address]]] = {}

    async def _resolve(self, sni: str | None) -> tuple[str, list[Address]] | None:
        route = self.table.resolve(sni)
        if route is not None:
            return route
        service = self.table.local_service(sni)
        return await self._local_service(service) if service else None

    async def _local_service(self, service: str) -> tuple[str, list[Address]] | None:
        """Healthy sidecars of one of our services (LAN), looked up per connection and cached for
        LOCAL_SERVICE_CACHE seconds: a sidecar that turns critical stops receiving new connections
        within that, without the gateway watching every service of the DC."""
        now = time.monotonic()
        cached = self._services.get(service)
        if cached is None or now - cached[0] > LOCAL_SERVICE_CACHE:
            if self._lookups is None:
                return None
            status, _, rows = await self._lookups.request("GET", f"/v1/health/connect/{quote(service)}?passing&stale")
            if status != 200 or not isinstance(rows, list):
                raise RuntimeError(f"looking up {service}: HTTP {status}")
            addresses = [a for a in (instance_address(row, wan=False) for row in rows) if a is not None]
            cached = self._services[service] = (now, addresses)
        return (f"service:{service}", list(cached[1])) if cached[1] else None

    def _set_trust_domain(self, roots: Any) -> None:
        domain = str((roots or {}).get("TrustDomain") or "").lower()
        if domain and domain != self.table.trust_domain:
            log.info("Connect trust domain %s: routing service names", domain)
            self.table = replace(self.table, trust_domain=domain)

    def _set_peers(self, bundles: Any) -> None:
        peers: dict[str, list[Address]] = {}
        servers: dict[str, list[Address]] = {}
        for bundle in bundles or ():
            addresses = []
            for text in bundle.get("MeshGateways") or ():
                host, _, port = str(text).rpartition(":")
                if host and port.isdigit():
                    addresses.append((host, int(port)))
            if bundle.get("TrustDomain") and addresses:
                peers[str(bundle["TrustDomain"]).lower()] = sorted(addresses)
            if bundle.get("PeerServerName") and addresses:
                servers[str(bundle["PeerServerName"]).lower()] = sorted(addresses)
        if peers != {k: list(v) for k, v in self.table.peer_gateways.items()}:
            log.info("peer gateways: %s", "; ".join(f"{td}={len(a)}" for td, a in sorted(peers.items())) or "-")
        self.table = replace(self.table, peer_gateways=peers, peer_servers=servers)
        self.metrics.routes.labels("peer").set(len(peers))

    def _denials(self, what: str) -> DenialLog:
        facts = (self.cfg.node, self.cfg.datacenter, bool(self.cfg.token))
        return DenialLog(what, lambda server_text: denied_message(facts, what, server_text))

    def _on_connection(self, route: str, outcome: str) -> None:
        self.metrics.connections.labels(route, outcome).inc()

    # ---- loops -------------------------------------------------------------------------------------

    async def _register(self, api: ServerAPI) -> None:
        status, _, body = await api.request("PUT", "/v1/catalog/register", json=registration(self.cfg))
        if status == 403:
            raise Denied(str(body or ""))
        if status != 200:
            raise RuntimeError(f"catalog register failed: HTTP {status} {body}")

    async def heartbeat(self, api: ServerAPI) -> None:
        registered = False
        denials = self._denials(f"registration and heartbeat of {self.cfg.node}/{self.cfg.service_id}")
        while True:
            try:
                if not registered:
                    await self._register(api)
                    registered = True
                    log.info("registered %s/%s in %s", self.cfg.node, self.cfg.service_id, self.cfg.datacenter)
                status, _, body = await api.request(
                    "PUT", f"/v1/agent/check/pass/{self.cfg.check_id}?node={self.cfg.node}")
                if status == 404:
                    registered = False  # the servers lost us (e.g. a fresh cluster): register again
                    continue
                if status == 403:
                    raise Denied(str(body or ""))
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                denials.succeeded()
            except Denied as exc:
                self.metrics.heartbeat_failures.inc()
                self.metrics.acl_denials.labels("register").inc()
                await asyncio.sleep(denials.refused(str(exc)))
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
                self.metrics.heartbeat_failures.inc()
                log.warning("heartbeat to the local servers failed: %s", exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            await asyncio.sleep(self.cfg.ttl / 3)

    async def _follow(self, api: ServerAPI, path: str, source: str, apply: Callable[[Any], bool | None],
                      changes_since: str = "") -> None:
        def on_failure() -> None:
            self.metrics.route_refresh_failures.labels(source).inc()

        await follow(api, f"{path}{'&' if '?' in path else '?'}stale", source, apply, on_failure=on_failure,
                     denials=self._denials(f"reading {source} ({path})"),
                     filtered_advice=f"routes may be missing; the token needs {token_rules(self.cfg.node, self.cfg.datacenter)}",
                     changes_since=changes_since)

    def _set_servers(self, rows: Any) -> None:
        servers = local_servers(rows or [])
        if servers != dict(self.table.local_servers):
            log.info("local servers: %s", ", ".join(f"{n}={h}:{p}" for n, (h, p) in sorted(servers.items())) or "-")
        self.table = replace(self.table, local_servers=servers)
        self.metrics.routes.labels("local_server").set(len(servers))

    def _set_gateways(self, body: Any) -> bool:
        """A full list replaces the table; a delta (`?changes-since=`) is merged into it. False (the
        follow loop then re-reads the full list at once) on a resync marker or a malformed delta:
        the table is kept until then."""
        known = self.table.remote_gateways
        if is_delta(body):
            try:
                gateways, touched = merge_gateway_delta(known, body, self.cfg.datacenter)
            except ValueError as exc:
                log.debug("remote gateways: %s; reading the full list", exc)
                return False
        else:
            gateways = remote_gateways(body or {}, self.cfg.datacenter)
            touched = known.keys() | gateways.keys()
        before = {dc: list(known[dc]) for dc in touched if dc in known}
        after = {dc: gateways[dc] for dc in touched if dc in gateways}
        if before != after:
            log.info("remote gateways (%d datacenters): %s", len(gateways), describe_gateway_changes(before, after))
        self.table = replace(self.table, remote_gateways=gateways)
        self.metrics.routes.labels("remote_datacenter").set(len(gateways))
        return True

    # ---- admin HTTP ----------------------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.active.set(self.splice.active_connections)
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _routes(self, request: web.Request) -> web.Response:
        return web.json_response({
            "Datacenter": self.cfg.datacenter,
            "LocalServers": {n: f"{h}:{p}" for n, (h, p) in sorted(self.table.local_servers.items())},
            "RemoteGateways": {dc: [f"{h}:{p}" for h, p in a] for dc, a in sorted(self.table.remote_gateways.items())},
            "TrustDomain": self.table.trust_domain,
            "ActiveConnections": self.splice.active_connections,
        })

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def run(self) -> int:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                self._stop.set()
            else:
                os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await self.splice.start(*cfg.bind)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", *cfg.bind, exc.strerror)
            return 1
        runner = None
        if cfg.admin_bind:
            runner = await start_admin(cfg.admin_bind, {"/metrics": self._metrics, "/v1/gateway/routes": self._routes})
        log.info("mesh gateway %s for %s listening on %s:%d (wan %s:%d)", cfg.node, cfg.datacenter, *cfg.bind, *cfg.wan_address)
        async with aiohttp.ClientSession() as session:
            self._lookups = ServerAPI(session, cfg.http_addrs, cfg.token)
            loops: list[Awaitable[None]] = [
                self._follow(ServerAPI(session, cfg.http_addrs, cfg.token), "/v1/connect/ca/roots",
                             "trust_domain", self._set_trust_domain),
                self.heartbeat(ServerAPI(session, cfg.http_addrs, cfg.token)),
                self._follow(ServerAPI(session, cfg.http_addrs, cfg.token),
                             "/v1/internal/peering/trust-bundles?service=mesh-gateway", "peers",
                             self._set_peers),
                self._follow(ServerAPI(session, cfg.http_addrs, cfg.token), "/v1/catalog/service/consul",
                             "local_servers", self._set_servers),
                self._follow(ServerAPI(session, cfg.http_addrs, cfg.token), "/v1/internal/federation-states/mesh-gateways",
                             "remote_gateways", self._set_gateways,
                             changes_since=CHANGES_SINCE if gateway_delta_enabled() else ""),
            ]
            tasks = [asyncio.create_task(coro) for coro in loops]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                status, _, body = await ServerAPI(session, cfg.http_addrs, cfg.token).request(
                    "PUT", "/v1/catalog/deregister", json={"Node": cfg.node}, timeout=5)
                if status == 403:
                    facts = (cfg.node, cfg.datacenter, bool(cfg.token))
                    log.error("%s (the TTL check will expire)",
                              denied_message(facts, f"deregistration of {cfg.node}", str(body or "")))
                else:
                    log.info("deregistered %s", cfg.node)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("deregistration failed (the TTL check will expire): %s", exc)
        await self.splice.close()
        if runner is not None:
            await runner.cleanup()
        return 0


def parse_address(text: str, flag: str, default_port: int | None = None) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"{flag}: expected host:port, got {text!r}")
        return text, default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"{flag}: bad port in {text!r}") from None
