"""once_per_request: the ACL check and the handler share one parse/decode of a request's body."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from meshfed.server.http.request_memo import once_per_request


def test_computes_once_per_request_and_per_key() -> None:
    calls: list[str] = []

    def compute(value: str) -> str:
        calls.append(value)
        return value

    first, second = make_mocked_request("PUT", "/v1/catalog/register"), make_mocked_request("PUT", "/")
    assert once_per_request(first, "body", lambda: compute("a")) == "a"
    assert once_per_request(first, "body", lambda: compute("b")) == "a"  # kept
    assert once_per_request(first, "other", lambda: compute("c")) == "c"
    assert once_per_request(second, "body", lambda: compute("d")) == "d"  # another request, its own
    assert calls == ["a", "c", "d"]


def test_a_failed_computation_is_not_kept() -> None:
    request = make_mocked_request("PUT", "/")

    def fail() -> str:
        raise ValueError("bad body")

    with pytest.raises(ValueError):
        once_per_request(request, "body", fail)
    assert once_per_request(request, "body", lambda: "ok") == "ok"
