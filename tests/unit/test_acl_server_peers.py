"""Server-only RPCs over real mutual TLS (issue #9 item 4): the RPC service reads the caller's
verified certificate and serves ACL replication reads only to a server of a known datacenter."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import RPCService
from meshfed.rpc.tls import create_ca, create_server_cert, load_channel_credentials, load_server_credentials
from meshfed.server.acl.peers import ERR_NOT_A_SERVER, ServerPeerCheck


async def echo(header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
    return QueryMeta(index=7), body


@pytest.mark.parametrize("caller_dc, allowed", [("dc2", True), ("dc1", True), ("dc9", False)])
def test_replication_reads_need_a_server_certificate_of_a_known_dc(tmp_path: Any, caller_dc: str,
                                                                   allowed: bool) -> None:
    ca = create_ca(str(tmp_path))
    here = create_server_cert(str(tmp_path), ca, "dc1", node="s1")
    caller = create_server_cert(str(tmp_path), ca, caller_dc, node="x")

    async def scenario() -> None:
        server = grpc.aio.server()
        handlers = {"ACL/TokenReplicate": echo, "Status/Leader": echo}
        server.add_generic_rpc_handlers([RPCService(handlers, peer_check=ServerPeerCheck("consul", lambda: ["dc1", "dc2"]))])
        port = server.add_secure_port("127.0.0.1:0", load_server_credentials(ca.cert_file, here.cert_file,
                                                                             here.key_file, True))
        await server.start()
        pool = ConnectionPool(load_channel_credentials(ca.cert_file, caller.cert_file, caller.key_file))
        address = f"127.0.0.1:{port}"
        try:
            call = pool.call(address, "ACL/TokenReplicate", RequestHeader(), {"x": 1}, timeout=10,
                             server_name="server.dc1.consul")
            if allowed:
                assert (await call)[1] == {"x": 1}
            else:
                with pytest.raises(RPCError) as caught:
                    await call
                assert (caught.value.code, caught.value.message) == (grpc.StatusCode.PERMISSION_DENIED,
                                                                     ERR_NOT_A_SERVER)
            # Methods outside the server-only set do not look at the certificate.
            leader = await pool.call(address, "Status/Leader", RequestHeader(), "ok", timeout=10,
                                     server_name="server.dc1.consul")
            assert leader[1] == "ok"
        finally:
            await pool.close()
            await server.stop(None)

    asyncio.run(asyncio.wait_for(scenario(), 30))
