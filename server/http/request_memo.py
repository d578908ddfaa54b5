"""Work done once per HTTP request, shared by the ACL check and the handler.

With ACLs on, the enforcement middleware must look inside a write's body (a catalog registration
needs node:write only if it changes the node) before the handler runs, and the handler then
parses and decodes the same body. Decoding is the larger part of the cost of authorization
(tens of microseconds of a ~1.3 ms write), so both sides take it from here: computed by whoever
asks first, kept on the request, gone with it. Only pure functions of the request belong here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

_MEMO: web.RequestKey[dict[str, Any]] = web.RequestKey("meshfed_request_memo", dict)


def once_per_request(request: web.Request, key: str, compute: Callable[[], T]) -> T:
    """`compute()` the first time `key` is asked for on this request, the same value after.
    A computation that raises is not kept (the request fails with it anyway)."""
    memo = request.get(_MEMO)
    if memo is None:
        memo = request[_MEMO] = {}
    if key not in memo:
        memo[key] = compute()
    value: T = memo[key]
    return value
