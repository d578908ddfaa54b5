"""The mesh gateway's data path: route each TCP connection on its TLS SNI and splice raw bytes.

The gateway never terminates TLS: the client's handshake, and therefore its verification of the
server name, goes end to end (DESIGN.md §7). Each accepted connection moves through:

    reading hello --ok--> resolving --route--> dialing --connected--> splicing --both EOF--> closed
         |  not TLS / timeout        | unknown SNI       | every candidate failed
         +---------------------------+-------------------+----------------------------------> closed

reports "opened" when the upstream accepts, and one final outcome through
`on_connection(route_label, outcome)`: "spliced", "unknown_sni",
"not_tls", "dial_failed" or "timeout" (connections that never got as far as a route are labelled
`UNROUTED`). Splicing is half-close aware: EOF from one side becomes `write_eof` on the other while
the opposite direction keeps flowing, so request/response protocols that shut down their write side
first still receive their answer.

`close()` follows the staged shutdown the server uses: stop accepting, let open connections finish
for up to `drain_timeout`, then cancel what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from meshfed.rpc.sni import MAX_CLIENT_HELLO, parse_client_hello_sni

log = logging.getLogger(__name__)

Route = tuple[str, int] | None
Resolver = Callable[[str | None], Awaitable[tuple[str, list[tuple[str, int]]] | None]]
ConnectionObserver = Callable[[str, str], None]
ByteObserver = Callable[[str, str, int], None]

# Route label for connections closed before a route was known (not TLS, timeout, unknown SNI).
UNROUTED = "unrouted"
OUTCOME_OPENED = "opened"  # reported when the upstream accepted; long-lived streams count at once
OUTCOME_SPLICED = "spliced"
OUTCOME_UNKNOWN_SNI = "unknown_sni"
OUTCOME_NOT_TLS = "not_tls"
OUTCOME_DIAL_FAILED = "dial_failed"
OUTCOME_TIMEOUT = "timeout"

DEFAULT_HELLO_TIMEOUT = 5.0
DEFAULT_DIAL_TIMEOUT = 5.0
DEFAULT_DRAIN_TIMEOUT = 5.0
# Bytes moved per read while splicing; large enough that a multi-megabyte stream needs few wakeups.
PUMP_CHUNK = 64 * 1024


class SpliceServer:
    """A TCP listener that forwards each connection, unopened, to the upstream its SNI names."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        on_connection: ConnectionObserver | None = None,
        hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
        on_bytes: ByteObserver | None = None,
    ) -> None:
        """
        Args:
            resolve: SNI (None when the client sent none) -> (route label, candidate upstream
                addresses), or None when the name is not routable here.
            on_connection: called once per connection with (route label, outcome), for metrics.
            hello_timeout: how long a client may take to send its whole ClientHello.
            dial_timeout: how long each upstream candidate may take to accept.
            on_bytes: called with (route label, direction "upstream"|"downstream", n) as bytes move,
                so long-lived streams are visible in metrics before they close.
        """
        self._on_bytes = on_bytes
        self._resolve = resolve
        self._on_connection = on_connection
        self._hello_timeout = hello_timeout
        self._dial_timeout = dial_timeout
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful after `start(host, 0)`)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("SpliceServer is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        """Accepted connections not yet closed, in any stage."""
        return len(self._handlers)

    async def start(self, host: str, port: int) -> None:
        if self._server is not None:
            raise RuntimeError("SpliceServer already started")
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("splice proxy listening on %s:%d", host, self.port)

    async def close(self, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT) -> None:
        """Stop accepting, wait up to `drain_timeout` for open connections, then cancel the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        if self._handlers:
            log.info("splice proxy draining %d connection(s)", len(self._handlers))
        # Loop because a connection accepted just before close() may register its handler late.
        while self._handlers and loop.time() < deadline:
            await asyncio.wait(set(self._handlers), timeout=deadline - loop.time())
        if self._handlers:
            log.info("splice proxy cancelling %d connection(s) after drain timeout", len(self._handlers))
            still_open = set(self._handlers)
            for task in still_open:
                task.cancel()
            await asyncio.gather(*still_open, return_exceptions=True)
        await server.wait_closed()

    # ---- one connection -----------------------------------------------------------------------

    def _report(self, peer: object, route_label: str, outcome: str, detail: str = "") -> None:
        log.debug("connection from %s: route=%s outcome=%s %s", peer, route_label, outcome, detail)
        if self._on_connection is not None:
            try:
                self._on_connection(route_label, outcome)
            except Exception:
                log.exception("on_connection callback failed")

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = client_writer.get_extra_info("peername")
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream = await self._route(peer, client_reader)
            if upstream is None:
                return
            route_label, hello_bytes, candidates = upstream
            connected = await self._dial(route_label, candidates)
            if connected is None:
                self._report(peer, route_label, OUTCOME_DIAL_FAILED)
                return
            upstream_reader, upstream_writer, address = connected
            upstream_writer.write(hello_bytes)
            self._report(peer, route_label, OUTCOME_OPENED, f"upstream={address}")
            count: Callable[[str, int], None] | None = None
            if self._on_bytes is not None:
                observe = self._on_bytes

                def count(direction: str, n: int) -> None:
                    observe(route_label, direction, n)

            sent, received = await splice(client_reader, client_writer, upstream_reader, upstream_writer, count)
            self._report(
                peer, route_label, OUTCOME_SPLICED, f"upstream={address} sent={sent} received={received}"
            )
        except asyncio.CancelledError:
            # Cancelled by close() after the drain timeout. End quietly: on Python 3.11 the stream
            # server's done-callback calls task.exception() on a cancelled task and logs a traceback.
            pass
        except Exception:
            log.exception("connection from %s failed unexpectedly", peer)
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    await close_writer(writer)
            self._handlers.discard(task)

    async def _route(
        self, peer: object, client_reader: asyncio.StreamReader
    ) -> tuple[str, bytes, list[tuple[str, int]]] | None:
        """Read the ClientHello and resolve it; None when the connection must just be closed."""
        buffered = b""
        try:
            async with asyncio.timeout(self._hello_timeout):
                while True:
                    parsed = parse_client_hello_sni(buffered)
                    if parsed.status != "need_more":
                        break
                    if len(buffered) >= MAX_CLIENT_HELLO:
                        self._report(peer, UNROUTED, OUTCOME_NOT_TLS, "ClientHello too large")
                        return None
                    chunk = await client_reader.read(MAX_CLIENT_HELLO - len(buffered))
                    if not chunk:
                        self._report(peer, UNROUTED, OUTCOME_NOT_TLS, f"EOF after {len(buffered)} bytes")
                        return None
                    buffered += chunk
        except TimeoutError:
            self._report(peer, UNROUTED, OUTCOME_TIMEOUT, f"{len(buffered)} bytes in {self._hello_timeout}s")
            return None
        except OSError as err:
            self._report(peer, UNROUTED, OUTCOME_NOT_TLS, f"read failed: {err}")
            return None
        if parsed.status == "not_tls":
            self._report(peer, UNROUTED, OUTCOME_NOT_TLS)
            return None
        try:
            route = await self._resolve(parsed.server_name)
        except Exception:
            log.warning("resolving SNI %r failed; closing the connection", parsed.server_name, exc_info=True)
            route = None
        if route is None:
            self._report(peer, UNROUTED, OUTCOME_UNKNOWN_SNI, f"sni={parsed.server_name!r}")
            return None
        route_label, candidates = route
        return route_label, buffered, list(candidates)

    async def _dial(
        self, route_label: str, candidates: list[tuple[str, int]]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[str, int]] | None:
        """Try the candidates in random order (spreads load without shared state); first to accept wins."""
        if not candidates:
            log.warning("route %s has no upstream addresses", route_label)
            return None
        for host, port in random.sample(candidates, len(candidates)):
            try:
                async with asyncio.timeout(self._dial_timeout):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as err:
                log.warning(
                    "route %s: dialing %s:%d failed: %s", route_label, host, port, err or type(err).__name__
                )
                continue
            return reader, writer, (host, port)
        return None


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, count: Callable[[int], None] | None = None
) -> int:
    """Copy until EOF, then pass the EOF on; returns the bytes copied. Errors propagate."""
    copied = 0
    while True:
        chunk = await source.read(PUMP_CHUNK)
        if not chunk:
            break
        sink.write(chunk)
        await sink.drain()
        copied += len(chunk)
        if count is not None:
            count(len(chunk))
    if sink.can_write_eof() and not sink.is_closing():
        sink.write_eof()
    return copied


async def splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
    count: Callable[[str, int], None] | None = None,
) -> tuple[int, int]:
    """Pump both directions until both have seen EOF, or either fails (then both are torn down)."""
    up = (lambda n: count("upstream", n)) if count is not None else None
    down = (lambda n: count("downstream", n)) if count is not None else None
    to_upstream = asyncio.create_task(_pump(client_reader, upstream_writer, up))
    to_client = asyncio.create_task(_pump(upstream_reader, client_writer, down))
    pumps = (to_upstream, to_client)
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        if not all(pump.done() and not pump.cancelled() and pump.exception() is None for pump in pumps):
            # A reset on one side (or our own cancellation) ends the whole splice: abort both
            # transports so the surviving pump sees EOF at once instead of lingering.
            client_writer.transport.abort()
            upstream_writer.transport.abort()
        for pump in pumps:
            pump.cancel()
        results = await asyncio.gather(*pumps, return_exceptions=True)
    sent, received = (result if isinstance(result, int) else 0 for result in results)
    return sent, received


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()
