"""`meshfed connect proxy`: meshfed's own Connect sidecar (reference/mesh-dataplane.md §4, §6).

Consul's built-in proxy never routes through mesh gateways; this one does, by the effective
mesh-gateway mode of each upstream. It talks to servers only through their HTTP API.

Inbound (public listener): accept TCP, TLS handshake with this service's leaf, require a client
leaf that verifies against the roots, ask `/v1/agent/connect/authorize` with the client's SPIFFE
ID, then splice to the local service. A denial or any failure closes the connection, counted by
outcome; nothing reaches the application before the decision.

Outbound (one plain listener per upstream): pick the first hop (the destination's sidecars, a local
gateway, or a gateway of the destination DC; server/dataplane/upstreams.py), dial it with TLS and SNI
`<svc>.default.<dc>.internal.<trust domain>` (gateways route on that name without decrypting), and
accept only a server whose SPIFFE ID is that service in that DC.

Peered upstreams (`DestinationPeer`, reference peering.md §4, §7): always through mesh gateways
(our local one, or the peer's own with mode `remote`), SNI `<svc>.default.default.<the peer's
name for us>.external.<peer trust domain>`, and the destination must present that service's
identity in the peer's trust domain. The peers' trust bundles (a blocking watch on
`/v1/internal/peering/trust-bundles`) join our roots in both TLS contexts; an inbound caller
whose trust domain is a peer's must be signed by that peer's roots, and the server's authorize
then matches it against intention sources naming that peering.

Certificates: blocking watches on the leaf and the roots swap the TLS contexts used for *new*
handshakes; open connections keep theirs. Until both have arrived, connections are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from meshfed.fsm.consul_formats.timestamps import parse_rfc3339
from meshfed.rpc.spiffe import SpiffeError, parse_service_uri
from meshfed.rpc.splice import close_writer, splice
from meshfed.server.dataplane.connect_tls import ConnectContexts, build_contexts, peer_uri
from meshfed.server.dataplane.peer_trust import PeerTrust
from meshfed.server.dataplane.proxy_config import HOP_DIRECT, ProxyConfig, Upstream
from meshfed.server.dataplane.server_api import ServerAPI, follow, metrics_handler, start_admin
from meshfed.server.dataplane.upstreams import UpstreamRoutes

log = logging.getLogger("meshfed.proxy")

HANDSHAKE_TIMEOUT = 10.0
DIAL_TIMEOUT = 5.0
AUTHORIZE_CACHE_SECONDS = 0.5


class ProxyMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Counter("meshfed_proxy_connections", "Connections by direction, upstream and outcome",
                                   ["direction", "upstream", "outcome"], registry=r)
        self.bytes = Counter("meshfed_proxy_bytes", "Bytes carried, by upstream and direction",
                             ["upstream", "direction"], registry=r)
        self.authorizations = Counter("meshfed_proxy_authorizations", "Inbound authorization decisions",
                                      ["decision"], registry=r)
        self.leaf_expiry = Gauge("meshfed_proxy_leaf_expiry_timestamp_seconds",
                                 "When the current leaf certificate expires (Unix time)", registry=r)
        self.watch_failures = Counter("meshfed_proxy_watch_failures", "Failed certificate watches", ["what"], registry=r)


class ConnectProxy:
    def __init__(self, cfg: ProxyConfig, api: ServerAPI, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.api = api
        self.metrics = ProxyMetrics()
        self._rng = rng or random.Random()
        self._clock = clock
        self._roots: list[str] = []
        self.peers = PeerTrust()
        self._leaf: dict[str, Any] | None = None
        self.contexts: ConnectContexts | None = None
        self.trust_domain = ""
        self.datacenter = ""
        self._decisions: dict[str, tuple[float, tuple[bool, str]]] = {}
        # Where each new outbound connection goes; reads this proxy's datacenter, trust domain and peers.
        self.upstreams = UpstreamRoutes(cfg, api, self, clock=clock)
        self.servers: list[asyncio.AbstractServer] = []
        self.ready = asyncio.Event()
        self._listener = self._listener_context()

    # ---- certificates --------------------------------------------------------------------------

    def _set_roots(self, body: Any) -> None:
        roots = [r["RootCert"] for r in (body or {}).get("Roots") or () if r.get("RootCert")]
        if roots and roots != self._roots:
            self._roots = roots
            self.trust_domain = str(body.get("TrustDomain") or "")
            log.info("CA roots updated: %d root(s), trust domain %s", len(roots), self.trust_domain)
            self._rebuild()

    def _set_bundles(self, body: Any) -> None:
        if self.peers.update(body):
            log.info("peer trust bundles: %s", self.peers.describe())
            self._rebuild()

    def _set_leaf(self, body: Any) -> None:
        if not isinstance(body, dict) or not body.get("CertPEM"):
            return
        if self._leaf is not None and body.get("SerialNumber") == self._leaf.get("SerialNumber"):
            return
        try:
            self.datacenter = parse_service_uri(str(body.get("ServiceURI"))).datacenter
        except SpiffeError:
            log.error("leaf certificate with an unusable ServiceURI %r: ignored", body.get("ServiceURI"))
            return
        self._leaf = body
        log.info("leaf certificate for %s: serial %s, valid until %s", self.cfg.service,
                 body.get("SerialNumber"), body.get("ValidBefore"))
        self._rebuild()

    def _rebuild(self) -> None:
        if self._leaf is None or not self._roots:
            return
        try:
            self.contexts = build_contexts(self._leaf["CertPEM"], self._leaf["PrivateKeyPEM"], self.peers.roots(self._roots))
        except (ssl.SSLError, ValueError, OSError) as exc:
            log.error("cannot use the new certificate material (keeping the previous): %s", exc)
            return
        with contextlib.suppress(ValueError):
            self.metrics.leaf_expiry.set(parse_rfc3339(str(self._leaf.get("ValidBefore"))).timestamp())
        self.ready.set()

    async def watch_certificates(self) -> None:
        service = quote(self.cfg.service, safe="")
        await asyncio.gather(
            follow(self.api, "/v1/agent/connect/ca/roots", "CA roots", self._set_roots,
                   on_failure=lambda: self.metrics.watch_failures.labels("roots").inc()),
            follow(self.api, f"/v1/agent/connect/ca/leaf/{service}", "leaf certificate", self._set_leaf,
                   on_failure=lambda: self.metrics.watch_failures.labels("leaf").inc()),
            follow(self.api, f"/v1/internal/peering/trust-bundles?service={service}", "peer trust bundles",
                   self._set_bundles, on_failure=lambda: self.metrics.watch_failures.labels("peer_bundles").inc()),
        )

    # ---- inbound ---------------------------------------------------------------------------------

    def _server_context(self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
        """Every handshake picks the newest certificates here (called with the ClientHello): a
        rotated leaf applies to new connections while open ones keep theirs. Before the leaf and
        roots have arrived, the handshake is refused."""
        contexts = self.contexts
        if contexts is None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        ssl_object.context = contexts.server
        return None

    def _listener_context(self) -> ssl.SSLContext:
        # The context actually used comes from `_server_context`; this one only carries what
        # OpenSSL keeps from the first context of a connection: the demand for a client certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.sni_callback = self._server_context
        return context

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The public listener takes plain TCP and runs the server handshake here, not inside
        asyncio's listener: there a failed handshake (plain TCP, an unknown CA, no client
        certificate) vanished without a trace; here it is counted as `tls_failed`."""
        try:
            await writer.start_tls(self._listener, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            self.metrics.connections.labels("inbound", self.cfg.service, "tls_failed").inc()
            log.debug("inbound TLS handshake failed: %s", exc)
            writer.transport.abort()
            return
        await self._inbound(reader, writer)

    async def _inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called once the TLS handshake (with a verified client certificate) has completed."""
        outcome = "closed"
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            uri, serial = peer_uri(ssl_object)
            vouched, why = self.peers.vouched_for(uri, ssl_object)
            allowed, reason = await self._authorize(uri, serial) if vouched else (False, why)
            self.metrics.authorizations.labels("allow" if allowed else "deny").inc()
            if not allowed:
                outcome = "denied"
                log.info("inbound connection from %s denied: %s", uri or "?", reason)
                return
            try:
                app_reader, app_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.cfg.local_service_address, self.cfg.local_service_port), DIAL_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                outcome = "dial_failed"
                log.warning("local service %s:%d unreachable: %s", self.cfg.local_service_address,
                            self.cfg.local_service_port, exc)
                return
            outcome = "spliced"
            try:
                await splice(reader, writer, app_reader, app_writer, self._counter(self.cfg.service, "in"))
            finally:
                await close_writer(app_writer)
        except (OSError, ConnectionError) as exc:
            outcome = "reset"
            log.debug("inbound connection reset: %s", exc)
        finally:
            self.metrics.connections.labels("inbound", self.cfg.service, outcome).inc()
            await close_writer(writer)

    async def _authorize(self, uri: str, serial: str) -> tuple[bool, str]:
        """The server's decision for this client identity, reused for AUTHORIZE_CACHE_SECONDS (a
        burst of connections from one client costs one call; an intention change still reaches
        new connections within a second). Failures are not cached: they fail closed each time."""
        cached = self._decisions.get(uri)
        if cached is not None and self._clock() - cached[0] < AUTHORIZE_CACHE_SECONDS:
            return cached[1]
        decision, final = await self._ask_authorize(uri, serial)
        if final:
            self._decisions[uri] = (self._clock(), decision)
        return decision

    async def _ask_authorize(self, uri: str, serial: str) -> tuple[tuple[bool, str], bool]:
        body = {"Target": self.cfg.service, "ClientCertURI": uri, "ClientCertSerial": serial}
        try:
            status, _, answer = await self.api.request("POST", "/v1/agent/connect/authorize", json=body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return (False, f"authorize call failed: {exc}"), False  # fail closed
        if status != 200 or not isinstance(answer, dict):
            return (False, f"authorize answered HTTP {status}: {answer}"), False
        return (answer.get("Authorized") is True, str(answer.get("Reason", ""))), True

    # ---- outbound --------------------------------------------------------------------------------

    async def _outbound(self, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        outcome = "closed"
        label = upstream.destination
        try:
            contexts = self.contexts
            if contexts is None:
                outcome = "not_ready"
                return
            target_dc = upstream.datacenter or self.datacenter
            try:
                hop, addresses = await self.upstreams.candidates(upstream)
            except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
                outcome = "resolve_failed"
                log.warning("upstream %s: cannot resolve: %s", label, exc)
                return
            if not addresses:
                outcome = "no_instances"
                log.warning("upstream %s in %s: no healthy %s", label, target_dc,
                            "instances" if hop == HOP_DIRECT else "mesh gateways")
                return
            host, port = self._rng.choice(addresses)
            try:
                sni, expected = self.upstreams.target(upstream)
            except RuntimeError as exc:
                outcome = "resolve_failed"
                log.warning("upstream %s: %s", label, exc)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
                    host, port, ssl=contexts.client, server_hostname=sni, ssl_handshake_timeout=HANDSHAKE_TIMEOUT),
                    DIAL_TIMEOUT + HANDSHAKE_TIMEOUT)
            except ssl.SSLError as exc:
                outcome = "tls_failed"
                log.warning("upstream %s: TLS with %s:%d (%s) failed: %s", label, host, port, hop, exc)
                return
            except (OSError, TimeoutError) as exc:
                outcome = "dial_failed"
                log.warning("upstream %s: dialing %s:%d (%s) failed: %s", label, host, port, hop,
                            str(exc) or type(exc).__name__)
                return
            try:
                presented, _ = peer_uri(up_writer.get_extra_info("ssl_object"))
                if presented.lower() != expected.lower():
                    outcome = "wrong_identity"
                    log.warning("upstream %s: peer is %r, expected %s: closed", label, presented, expected)
                    return
                outcome = "spliced"
                await splice(reader, writer, up_reader, up_writer, self._counter(label, "out"))
            finally:
                await close_writer(up_writer)
        except (OSError, ConnectionError) as exc:
            outcome = "reset"
            log.debug("upstream %s: connection reset: %s", label, exc)
        finally:
            self.metrics.connections.labels("outbound", label, outcome).inc()
            await close_writer(writer)

    def _counter(self, label: str, side: str) -> Callable[[str, int], None]:
        def count(direction: str, n: int) -> None:
            self.metrics.bytes.labels(label, f"{side}:{direction}").inc(n)

        return count

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        if cfg.public_port:
            self.servers.append(await asyncio.start_server(self._handshake, cfg.public_address, cfg.public_port))
            log.info("public listener %s:%d for %s -> %s:%d", cfg.public_address, cfg.public_port, cfg.service,
                     cfg.local_service_address, cfg.local_service_port)
        for upstream in cfg.upstreams:
            def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, u: Upstream = upstream) -> Any:
                return self._outbound(u, r, w)

            self.servers.append(await asyncio.start_server(handler, upstream.local_bind_address, upstream.local_bind_port))
            log.info("upstream %s%s on %s:%d", upstream.destination,
                     f" in {upstream.datacenter}" if upstream.datacenter else "", upstream.local_bind_address,
                     upstream.local_bind_port)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


async def serve(cfg: ProxyConfig, http_addrs: tuple[str, ...], token: str,
                admin_bind: tuple[str, int] | None = None) -> int:
    """Run a proxy until SIGTERM/SIGINT (a second one exits at once); 1 when it cannot listen."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            stop.set()
        else:
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    async with aiohttp.ClientSession() as session:
        proxy = ConnectProxy(cfg, ServerAPI(session, http_addrs, token))
        try:
            await proxy.start()
        except OSError as exc:
            log.error("cannot listen: %s", exc.strerror or exc)
            await proxy.close()
            return 1
        runner = None
        if admin_bind:
            runner = await start_admin(admin_bind, {"/metrics": metrics_handler(proxy.metrics.registry)})
        watches = asyncio.create_task(proxy.watch_certificates())
        await stop.wait()
        watches.cancel()
        await asyncio.gather(watches, return_exceptions=True)
        await proxy.close()
        if runner is not None:
            await runner.cleanup()
    return 0
