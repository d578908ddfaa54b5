"""How the dialer's leader copes with peer addresses that do not behave: one that accepts the
stream and never says anything, and a peer server that is shutting down.

Real processes on both sides (one acceptor server, one dialer server, each cluster its own CA).
The silent address is a real gRPC server in this test process, presenting the acceptor's own
certificate, so the dialer's TLS checks pass and only its silence is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import requests

from meshfed.server.peering.dialing import FIRST_MESSAGE_TIMEOUT

from .harness import Datacenter, wait_until
from .test_peering import _tls_config, get, post


class _Silent(grpc.GenericRpcHandler):
    """Accepts every call and answers none: streams are read until the caller goes away, unary
    calls wait out the caller's deadline."""

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        if handler_call_details.method.endswith("/StreamResources"):
            return grpc.stream_stream_rpc_method_handler(self._stream)
        return grpc.unary_unary_rpc_method_handler(self._unary)

    @staticmethod
    def _stream(requests_in: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests_in:
            pass
        yield from ()

    @staticmethod
    def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        while context.is_active():
            time.sleep(0.1)
        return b""


@pytest.fixture
def silent_server(tmp_path: Any) -> Iterator[Any]:
    """A factory: silent(address, cert_file, key_file) starts one; all are stopped afterwards."""
    started: list[grpc.Server] = []

    def silent(address: str, cert_file: str, key_file: str) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers([_Silent()])
        with open(key_file, "rb") as key, open(cert_file, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        assert server.add_secure_port(address, credentials)
        server.start()
        started.append(server)

    yield silent
    for server in started:
        server.stop(None)


def test_a_silent_peer_address_is_left_and_a_stopping_peer_says_why(
        make_dc: Any, tmp_path: Any, silent_server: Any) -> None:
    a_config = _tls_config(str(tmp_path), "dc1")
    acceptor: Datacenter = make_dc("dc1", count=3, config=a_config)
    dialer: Datacenter = make_dc("dc2", count=1, config=_tls_config(str(tmp_path), "dc2"))
    acceptor.start()
    dialer.start()
    leader, follower, b_server = acceptor.leader(), acceptor.followers()[0], dialer.servers[0]
    tls = a_config["tls"]["defaults"]
    silent = leader.address.rsplit(".", 1)[0] + ".9:8300"
    silent_server(silent, tls["cert_file"], tls["key_file"])

    # The token lists the silent address first, then a follower (which relays the stream to its
    # leader), then the leader: establishing waits out one call's deadline at the silent one.
    token = post(leader, "/v1/peering/token", {
        "PeerName": "cluster-02", "ServerExternalAddresses": [silent, follower.rpc_address, leader.rpc_address]})
    assert token.status_code == 200, token.text
    established = post(b_server, "/v1/peering/establish",
                       {"PeerName": "cluster-01", "PeeringToken": token.json()["PeeringToken"]})
    assert established.status_code == 200, established.text

    # The stream is dialed at the silent address first. It must be left for the next address
    # within the first-message bound, not held for the whole stream timeout (120 s by default).
    assert requests.put(leader.http + "/v1/catalog/register", json={
        "Node": "box1", "Address": "10.1.1.1", "Service": {"Service": "socat", "Port": 5000}}, timeout=10).ok
    assert requests.put(leader.http + "/v1/config", json={
        "Kind": "exported-services", "Name": "default",
        "Services": [{"Name": "socat", "Consumers": [{"Peer": "cluster-02"}]}]}, timeout=10).json() is True
    wait_until(lambda: get(b_server, "/v1/health/service/socat?peer=cluster-01").json(),
               FIRST_MESSAGE_TIMEOUT + 15, what="socat imported past the silent address")

    def dialer_log() -> str:
        return open(b_server.log_path).read()

    assert f"stream to {silent} ended" in dialer_log() and "sent nothing" in dialer_log(), dialer_log()[-3000:]
    assert f"peering cluster-01: stream to {follower.rpc_address} connected" in dialer_log(), dialer_log()[-3000:]

    # The relaying follower stops, then the leader: each time the dialer hears why at once (and
    # moves on to the next address), not a cancellation at the end of the shutdown's grace.
    def told_shutting_down(address: str, node: str) -> bool:
        ended = f"stream to {address} ended"
        return ended in dialer_log() and \
            f"server {node} is shutting down" in dialer_log().rsplit(ended, 1)[1].split("\n", 1)[0]

    for server in (follower, leader):
        server.stop()
        wait_until(lambda address=server.rpc_address, node=server.node: told_shutting_down(address, node), 10,
                   what=f"the dialer told {server.node} is shutting down")
        if server is follower:
            wait_until(lambda: f"stream to {leader.rpc_address} connected" in dialer_log(), 10,
                       what="the dialer on the next address")
