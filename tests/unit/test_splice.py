"""The splice proxy with real sockets on 127.0.0.1: TLS end to end through it, and every way it refuses."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from meshfed.rpc.splice import UNROUTED, SpliceServer
from meshfed.rpc.tls import CertFiles, client_ssl_context, create_ca, create_server_cert, server_ssl_context

NODE_NAME = "node1.server.dc1.consul"
ANY_NAME = "server.dc1.consul"


@dataclass(frozen=True)
class Pki:
    ca: CertFiles
    server: CertFiles

    def server_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.ca.cert_file, self.server.cert_file, self.server.key_file, True)

    def client_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.ca.cert_file, self.server.cert_file, self.server.key_file, True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = str(tmp_path_factory.mktemp("pki"))
    ca = create_ca(directory)
    return Pki(ca=ca, server=create_server_cert(directory, ca, "dc1", node="node1"))


def run(scenario: Awaitable[None]) -> None:
    async def guarded() -> None:
        await asyncio.wait_for(scenario, 20)
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert leftovers == [], f"tasks leaked: {leftovers}"

    asyncio.run(guarded())


class Recorder:
    """Collects on_connection reports and the SNIs the resolver was asked about."""

    def __init__(self, routes: dict[str | None, tuple[str, list[tuple[str, int]]]]) -> None:
        self.routes = routes
        self.asked: list[str | None] = []
        self.outcomes: list[tuple[str, str]] = []

    async def resolve(self, sni: str | None) -> tuple[str, list[tuple[str, int]]] | None:
        self.asked.append(sni)
        return self.routes.get(sni)

    def observe(self, route_label: str, outcome: str) -> None:
        self.outcomes.append((route_label, outcome))

    async def wait_outcomes(self, count: int) -> list[tuple[str, str]]:
        for _ in range(500):
            if len(self.outcomes) >= count:
                return self.outcomes
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} outcomes, got {self.outcomes}")


@contextlib.asynccontextmanager
async def splice_running(recorder: Recorder, **options: Any) -> AsyncIterator[SpliceServer]:
    splice = SpliceServer(recorder.resolve, on_connection=recorder.observe, **options)
    await splice.start("127.0.0.1", 0)
    try:
        yield splice
    finally:
        await splice.close(drain_timeout=1.0)


@contextlib.asynccontextmanager
async def upstream(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def dead_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def tls_client(pki: Pki, port: int, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(), server_hostname=name)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def client_hello(name: str) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# ---- the happy path ---------------------------------------------------------------------------------


def test_tls_client_reaches_upstream_with_verified_name(pki: Pki) -> None:
    async def scenario() -> None:
        async with upstream(echo, pki.server_context()) as echo_port:
            recorder = Recorder({NODE_NAME: ("local:node1", [("127.0.0.1", echo_port)])})
            async with splice_running(recorder) as splice:
                reader, writer = await tls_client(pki, splice.port, "Node1.Server.DC1.Consul")
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                peer_names = {value for _, value in writer.get_extra_info("peercert")["subjectAltName"]}
                assert NODE_NAME in peer_names
                assert splice.active_connections == 1
                await close(writer)
                assert await recorder.wait_outcomes(2) == [("local:node1", "opened"), ("local:node1", "spliced")]
                assert recorder.asked == [NODE_NAME]  # lower-cased before lookup
                assert splice.active_connections == 0

    run(scenario())


def test_name_the_upstream_cert_lacks_fails_verification_end_to_end(pki: Pki) -> None:
    """The gateway does not terminate TLS, so the client checks the upstream's own certificate."""

    async def scenario() -> None:
        async with upstream(echo, pki.server_context()) as echo_port:
            recorder = Recorder({"server.dc2.consul": ("dc:dc2", [("127.0.0.1", echo_port)])})
            async with splice_running(recorder) as splice:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await tls_client(pki, splice.port, "server.dc2.consul")

    run(scenario())


def test_falls_back_to_a_live_candidate(pki: Pki) -> None:
    async def scenario() -> None:
        async with upstream(echo, pki.server_context()) as echo_port:
            candidates = [("127.0.0.1", dead_port()), ("127.0.0.1", dead_port()), ("127.0.0.1", echo_port)]
            recorder = Recorder({ANY_NAME: ("local:any", candidates)})
            async with splice_running(recorder) as splice:
                for attempt in range(6):
                    reader, writer = await tls_client(pki, splice.port, ANY_NAME)
                    writer.write(b"x%d" % attempt)
                    assert await reader.readexactly(2) == b"x%d" % attempt
                    await close(writer)
                outcomes = await recorder.wait_outcomes(12)
                assert sorted(outcomes) == [("local:any", "opened")] * 6 + [("local:any", "spliced")] * 6

    run(scenario())


def test_large_transfer_through_tls_is_intact(pki: Pki) -> None:
    payload = os.urandom(4 * 1024 * 1024)

    async def scenario() -> None:
        async with upstream(echo, pki.server_context()) as echo_port:
            recorder = Recorder({NODE_NAME: ("local:node1", [("127.0.0.1", echo_port)])})
            async with splice_running(recorder) as splice:
                reader, writer = await tls_client(pki, splice.port, NODE_NAME)

                async def send() -> None:
                    for offset in range(0, len(payload), 100_000):
                        writer.write(payload[offset : offset + 100_000])
                        await writer.drain()

                sender = asyncio.create_task(send())
                echoed = await reader.readexactly(len(payload))
                await sender
                assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
                await close(writer)
                await recorder.wait_outcomes(1)

    run(scenario())


def test_half_close_keeps_the_other_direction_flowing() -> None:
    """Client sends, then shuts its write side; the upstream answers only after seeing that EOF."""
    request = client_hello(ANY_NAME) + os.urandom(3 * 1024 * 1024)
    answer = os.urandom(2 * 1024 * 1024)

    async def digest_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until EOF
        writer.write(hashlib.sha256(received).digest() + answer)
        await writer.drain()
        await close(writer)

    async def scenario() -> None:
        async with upstream(digest_then_answer) as upstream_port:
            recorder = Recorder({ANY_NAME: ("local:any", [("127.0.0.1", upstream_port)])})
            async with splice_running(recorder) as splice:
                reader, writer = await asyncio.open_connection("127.0.0.1", splice.port)
                writer.write(request)
                await writer.drain()
                writer.write_eof()
                reply = await reader.read()
                assert reply[:32] == hashlib.sha256(request).digest()
                assert reply[32:] == answer
                await close(writer)
                assert await recorder.wait_outcomes(2) == [("local:any", "opened"), ("local:any", "spliced")]

    run(scenario())


# ---- refusals ---------------------------------------------------------------------------------------


def test_unknown_sni_is_closed_and_counted(pki: Pki) -> None:
    async def scenario() -> None:
        recorder = Recorder({})
        async with splice_running(recorder) as splice:
            with pytest.raises(OSError):  # ssl errors and resets are both OSErrors
                await tls_client(pki, splice.port, "server.nowhere.consul")
            assert await recorder.wait_outcomes(1) == [(UNROUTED, "unknown_sni")]
            assert recorder.asked == ["server.nowhere.consul"]

    run(scenario())


def test_non_tls_bytes_are_closed_without_resolving() -> None:
    async def scenario() -> None:
        recorder = Recorder({})
        async with splice_running(recorder) as splice:
            reader, writer = await asyncio.open_connection("127.0.0.1", splice.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            await close(writer)
            assert await recorder.wait_outcomes(1) == [(UNROUTED, "not_tls")]
            assert recorder.asked == []

    run(scenario())


def test_slow_hello_times_out() -> None:
    async def scenario() -> None:
        recorder = Recorder({})
        async with splice_running(recorder, hello_timeout=0.3) as splice:
            reader, writer = await asyncio.open_connection("127.0.0.1", splice.port)
            writer.write(client_hello(ANY_NAME)[:20])  # a plausible start, then silence
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert time.monotonic() - started < 3
            await close(writer)
            assert await recorder.wait_outcomes(1) == [(UNROUTED, "timeout")]

    run(scenario())


def test_upstream_down_is_dial_failed(pki: Pki) -> None:
    async def scenario() -> None:
        candidates = [("127.0.0.1", dead_port()), ("127.0.0.1", dead_port())]
        recorder = Recorder({ANY_NAME: ("local:any", candidates), NODE_NAME: ("local:node1", [])})
        async with splice_running(recorder, dial_timeout=1.0) as splice:
            for name in (ANY_NAME, NODE_NAME):
                with pytest.raises(OSError):
                    await tls_client(pki, splice.port, name)
            assert await recorder.wait_outcomes(2) == [
                ("local:any", "dial_failed"),
                ("local:node1", "dial_failed"),
            ]

    run(scenario())


def test_resolver_error_closes_the_connection(pki: Pki) -> None:
    async def scenario() -> None:
        async def broken(sni: str | None) -> tuple[str, list[tuple[str, int]]] | None:
            raise RuntimeError("routing table unavailable")

        outcomes: list[tuple[str, str]] = []
        splice = SpliceServer(broken, on_connection=lambda label, outcome: outcomes.append((label, outcome)))
        await splice.start("127.0.0.1", 0)
        with pytest.raises(OSError):
            await tls_client(pki, splice.port, ANY_NAME)
        await splice.close()
        assert outcomes == [(UNROUTED, "unknown_sni")]

    run(scenario())


# ---- shutdown ---------------------------------------------------------------------------------------


def test_close_drains_open_splices(pki: Pki) -> None:
    async def scenario() -> None:
        async with upstream(echo, pki.server_context()) as echo_port:
            recorder = Recorder({NODE_NAME: ("local:node1", [("127.0.0.1", echo_port)])})
            splice = SpliceServer(recorder.resolve, on_connection=recorder.observe)
            await splice.start("127.0.0.1", 0)
            port = splice.port
            reader, writer = await tls_client(pki, port, NODE_NAME)
            closing = asyncio.create_task(splice.close(drain_timeout=10))
            await asyncio.sleep(0.1)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
            assert not closing.done()
            assert splice.active_connections == 1
            writer.write(b"still here")  # the open splice keeps working while draining
            assert await reader.readexactly(10) == b"still here"
            started = time.monotonic()
            await close(writer)
            await closing
            assert time.monotonic() - started < 3
            assert splice.active_connections == 0
            assert recorder.outcomes == [("local:node1", "opened"), ("local:node1", "spliced")]

    run(scenario())


def test_close_cancels_splices_after_drain_timeout(pki: Pki) -> None:
    async def scenario() -> None:
        async with upstream(echo, pki.server_context()) as echo_port:
            recorder = Recorder({NODE_NAME: ("local:node1", [("127.0.0.1", echo_port)])})
            splice = SpliceServer(recorder.resolve, on_connection=recorder.observe)
            await splice.start("127.0.0.1", 0)
            reader, writer = await tls_client(pki, splice.port, NODE_NAME)
            idle_raw = await asyncio.open_connection("127.0.0.1", splice.port)  # still in the hello stage
            await asyncio.sleep(0.05)
            assert splice.active_connections == 2
            started = time.monotonic()
            await splice.close(drain_timeout=0.3)
            assert 0.25 < time.monotonic() - started < 3
            assert splice.active_connections == 0
            with contextlib.suppress(OSError):
                assert await asyncio.wait_for(reader.read(), 5) == b""  # the client sees the end
            assert await asyncio.wait_for(idle_raw[0].read(), 5) == b""
            await close(writer)
            await close(idle_raw[1])

    run(scenario())
