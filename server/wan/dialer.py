"""Cross-datacenter RPC: always through a mesh gateway picked by the gateway locator.

The call dials the picked gateway's address with TLS SNI (and verified name)
`server.<dc>.<domain>`; the gateway routes on that name without decrypting, to any server of
`<dc>`, possibly through a second gateway. Nothing here ever dials a remote server directly
(operators.md #6356, #10796, #12658). A fetch that fails is reported to the caller; the locator
learns about replication health from the replicator, not from here.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import grpc

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import ERR_NO_PATH, ERR_NO_SERVER, RPCError, unavailable
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.tls import server_name
from meshfed.server.wan.gateway_locator import GatewayLocator

log = logging.getLogger(__name__)

# A channel whose last connect failed fails calls at once until gRPC's reconnect backoff expires;
# a few quick retries (each re-picking a gateway) ride over that and over one dead gateway,
# while a real outage is still reported within a second to the replicator and the locator.
ATTEMPTS = 3
RETRY_PAUSE = (0.1, 0.3)


class WanDialer:
    def __init__(
        self,
        locator: GatewayLocator,
        pool: ConnectionPool,
        domain: str,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self._locator = locator
        self._pool = pool
        self._domain = domain
        self._on_call = on_call or (lambda datacenter, outcome: None)

    async def call(self, datacenter: str, method: str, header: RequestHeader, body: Any, timeout: float) -> tuple[QueryMeta, Any]:
        if not self._pool.tls:
            raise unavailable(f"{ERR_NO_SERVER}: cross-datacenter RPC needs TLS (tls.defaults cert_file/key_file)")
        if not self._locator.knows(datacenter):
            self._on_call(datacenter, "no_path")
            raise unavailable(f"{ERR_NO_PATH}: {datacenter}")
        name = server_name(datacenter, "", self._domain)
        for attempt in range(1, ATTEMPTS + 1):
            address = self._locator.pick(datacenter)
            if not address:
                self._on_call(datacenter, "no_gateway")
                raise unavailable(f"{ERR_NO_SERVER}: no mesh gateway known for datacenter {datacenter!r}")
            try:
                result = await self._pool.call(address, method, header, body, timeout=timeout, server_name=name)
            except RPCError as exc:
                log.debug("cross-DC %s to %s via gateway %s failed (attempt %d): %s",
                          method, datacenter, address, attempt, exc)
                if exc.transport:
                    self._pool.drop_if_failing(address, name)
                if exc.code != grpc.StatusCode.UNAVAILABLE or attempt == ATTEMPTS:
                    self._on_call(datacenter, "error")
                    raise
                await asyncio.sleep(random.uniform(*RETRY_PAUSE))
                continue
            self._on_call(datacenter, "ok")
            return result
        raise AssertionError("unreachable")
