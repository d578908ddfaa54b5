"""Calls from this cluster's leader to a peer's servers: TLS verified against the CA PEMs the
peer put in its token (the peer's servers are not signed by our CA), the token's server name as
the name to verify, and the addresses tried in order until one answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.stream import ClientStream

DIAL_TIMEOUT = 2.0


class PeerDialer:
    """One connection pool per (CA bundle, client identity): a peering's channels reuse TLS
    sessions across rounds, and a token with another CA gets its own channels."""

    def __init__(self, cert_chain: bytes | None = None, private_key: bytes | None = None) -> None:
        self._cert_chain = cert_chain
        self._private_key = private_key
        self._pools: dict[tuple[str, ...], ConnectionPool] = {}

    def _pool(self, ca_pems: tuple[str, ...]) -> ConnectionPool:
        pool = self._pools.get(ca_pems)
        if pool is None:
            credentials = None
            if ca_pems:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates="".join(ca_pems).encode(),
                    private_key=self._private_key,
                    certificate_chain=self._cert_chain,
                )
            pool = ConnectionPool(credentials)
            self._pools[ca_pems] = pool
        return pool

    async def call(
        self, addresses: Sequence[str], ca_pems: tuple[str, ...], server_name: str, method: str, body: Any
    ) -> tuple[QueryMeta, Any]:
        """The first answer from `addresses`; a handler's error (e.g. PermissionDenied) is final,
        transport failures move on to the next address."""
        pool = self._pool(ca_pems)
        failures: list[str] = []
        for address in addresses:
            try:
                return await pool.call(address, method, RequestHeader(), body, timeout=DIAL_TIMEOUT,
                                       server_name=server_name if ca_pems else "")
            except RPCError as exc:
                if not exc.transport and exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                failures.append(f"{address}: {exc}")
        raise RPCError(grpc.StatusCode.UNAVAILABLE, "could not reach the peer's servers: " + "; ".join(failures),
                       transport=True)

    async def open_stream(self, address: str, ca_pems: tuple[str, ...], server_name: str, method: str,
                          first: Any) -> ClientStream:
        """A stream to one of the peer's addresses (the caller rotates through them); a
        transport failure drops the channel so the next dial connects afresh."""
        pool = self._pool(ca_pems)
        name = server_name if ca_pems else ""
        try:
            return await pool.open_stream(address, method, RequestHeader(), first, server_name=name)
        except RPCError as exc:
            if exc.transport:
                pool.drop_if_failing(address, name)
            raise

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()
