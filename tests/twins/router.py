"""A router twin: serves every call for its own datacenter locally, and hands a call for another
datacenter straight to that datacenter's endpoint handlers (or fails, when the WAN is cut).

It implements `RequestRouter` (endpoint ports). There is no leader forwarding: a twin datacenter
is one server, so "here" is always the right place; that keeps unit tests about what an endpoint
decides, while forwarding itself is covered by `test_router.py` and the integration tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshfed.rpc.errors import ERR_NO_PATH, unavailable
from meshfed.rpc.header import QueryMeta, RequestHeader

T = TypeVar("T")

Handlers = dict[str, Callable[[RequestHeader, Any], Awaitable[tuple[QueryMeta, Any]]]]


@dataclass
class RouterTwin:
    datacenter: str
    peers: dict[str, Handlers] = field(default_factory=dict)  # datacenter -> its endpoint handlers
    wan_up: bool = True
    calls: list[tuple[str, str, bool]] = field(default_factory=list)  # (method, target dc, write)

    async def serve(
        self,
        method: str,
        header: RequestHeader,
        body: Any,
        local: Callable[[], Awaitable[T]],
        *,
        write: bool,
    ) -> T | tuple[QueryMeta, Any]:
        target = header.datacenter or self.datacenter
        self.calls.append((method, target, write))
        if target.lower() == self.datacenter.lower():
            return await local()
        if not self.wan_up:
            raise unavailable(f"{ERR_NO_PATH}: {target}")
        return await self.peers[target][method](header.forwarded(), body)
