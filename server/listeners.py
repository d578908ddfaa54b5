"""The server's two client-facing ports: gRPC (server RPC, forwarding, WAN and peering calls) and
the HTTP API. Each start either binds and serves or raises `StartupError` with one line that
names the address, never a traceback (server/agent.py stops what it started before)."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from aiohttp import web

from meshfed.rpc.limits import MAX_MESSAGE_BYTES
from meshfed.rpc.service import Authorize, CallObserver, Handler, PeerCheck, RPCService
from meshfed.server.config import Config

HTTP_SHUTDOWN_TIMEOUT = 1.0
# Thousands of blocking clients may connect at once (benchmarks overflowed the default 128).
HTTP_BACKLOG = 2048


class StartupError(Exception):
    """The server cannot start; the message says what and where."""


def server_credentials(cfg: Config) -> grpc.ServerCredentials | None:
    tls = cfg.tls
    if not tls.enabled:
        return None
    from meshfed.rpc.tls import load_server_credentials

    return load_server_credentials(tls.ca_file, tls.cert_file, tls.key_file, require_client_auth=tls.verify_incoming)


def channel_credentials(cfg: Config) -> grpc.ChannelCredentials | None:
    tls = cfg.tls
    if not tls.enabled:
        return None
    from meshfed.rpc.tls import load_channel_credentials

    return load_channel_credentials(tls.ca_file, tls.cert_file, tls.key_file)


# gRPC core queues incoming calls until the application picks them up, and past a backlog (1,000
# by default, 3,000 at most) cancels new ones at random, with a bare CANCELLED and no log line.
# A follower forwards its blocking queries as they arrive: thousands in a burst while the
# leader's event loop is busy waking others. Calls are picked up a few milliseconds late, never
# lost, so the backlog may hold every forwarded query of a large fleet; past it, a follower sees
# the cancellation as a transport failure and retries (rpc/errors.py).
MAX_PENDING_CALLS = 20_000
MAX_PENDING_CALLS_HARD = 40_000
RPC_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    # gRPC's 4 MiB default would refuse what the pool sends and the codec decodes.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS_HARD),
]


async def start_rpc(cfg: Config, handlers: Mapping[str, Handler], *, observe: CallObserver,
                    authorize: Authorize | None, peer_check: PeerCheck) -> tuple[grpc.aio.Server, str]:
    """The gRPC server on `bind_addr:ports.server`, started; returns it and the bound address."""
    server = grpc.aio.server(options=RPC_SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        [RPCService(handlers, observe=observe, authorize=authorize, peer_check=peer_check)])
    address = f"{cfg.bind_addr}:{cfg.ports.server}"
    credentials = server_credentials(cfg)
    try:
        bound = (server.add_secure_port(address, credentials) if credentials is not None
                 else server.add_insecure_port(address))
    except RuntimeError:
        bound = 0
    if not bound:
        raise StartupError(f"cannot bind the server RPC port {address} (in use? set ports.server / -server-port)")
    await server.start()
    return server, address


async def start_http(cfg: Config, app: web.Application) -> tuple[web.AppRunner, str]:
    """The HTTP API on `client_addr` (else `bind_addr`) `:ports.http`; returns the runner and the
    bound address. Open blocking queries are cut at shutdown after HTTP_SHUTDOWN_TIMEOUT (clients
    retry), not aiohttp's default 60 s."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT)
    await runner.setup()
    host = cfg.client_addr or cfg.bind_addr
    try:
        await web.TCPSite(runner, host, cfg.ports.http, reuse_address=True, backlog=HTTP_BACKLOG).start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot bind the HTTP port {host}:{cfg.ports.http}: {exc.strerror}") from None
    return runner, f"{host}:{cfg.ports.http}"
