"""HTTP query parameters and headers -> RequestHeader, with Consul's exact 400 texts
(reference/federation.md §4), on requests built with aiohttp's make_mocked_request."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from meshfed.rpc.header import RequestHeader
from meshfed.server.http.params import BadRequest, flag, parse_header, token_of


def request(query: str = "", headers: dict[str, str] | None = None, method: str = "GET") -> web.Request:
    path = "/v1/internal/federation-states" + (f"?{query}" if query else "")
    return make_mocked_request(method, path, headers=CIMultiDict(headers or {}))


def error_of(query: str = "", headers: dict[str, str] | None = None) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_header(request(query, headers))
    return str(caught.value)


def test_no_parameters_is_the_default_header() -> None:
    assert parse_header(request()) == RequestHeader()


def test_all_parameters() -> None:
    header = parse_header(request("dc=dc2&index=41&wait=2s&stale&token=abc"))
    assert header == RequestHeader(datacenter="dc2", token="abc", min_query_index=41, max_query_time=2.0,
                                   allow_stale=True)
    assert header.blocking


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "+5", "%205", "1_000", "0x10", "\u0663", str(2**64)])
def test_invalid_index(value: str) -> None:
    assert error_of(f"index={quote(value)}") == "Invalid index"


def test_index_bounds_and_empty() -> None:
    assert parse_header(request("index=0")).min_query_index == 0
    assert parse_header(request(f"index={2**64 - 1}")).min_query_index == 2**64 - 1
    assert parse_header(request("index=")).min_query_index == 0  # Consul ignores an empty value
    assert parse_header(request("index=007")).min_query_index == 7


@given(st.integers(0, 2**64 - 1))
def test_any_uint64_index_is_accepted(index: int) -> None:
    assert parse_header(request(f"index={index}")).min_query_index == index


@given(st.text(min_size=1, max_size=12).filter(lambda t: not (t.isascii() and t.isdigit())))
def test_anything_but_ascii_digits_is_an_invalid_index(value: str) -> None:
    assert error_of("index=" + quote(value, safe="")) == "Invalid index"


@pytest.mark.parametrize("value", ["10", "ten", "5x", "-5s", "1.2.3s", "s"])
def test_invalid_wait(value: str) -> None:
    assert error_of(f"wait={value}") == "Invalid wait time"


@pytest.mark.parametrize("value, seconds", [("10s", 10.0), ("1m30s", 90.0), ("250ms", 0.25), ("0", 0.0), ("", 0.0)])
def test_wait_values(value: str, seconds: float) -> None:
    assert parse_header(request(f"wait={value}")).max_query_time == seconds


@pytest.mark.parametrize("query", ["stale&consistent", "stale=1&consistent=1", "consistent&max_stale=5s"])
def test_stale_with_consistent(query: str) -> None:
    assert error_of(query) == "Cannot specify ?stale with ?consistent, conflicting semantics."


def test_max_stale() -> None:
    assert error_of("max_stale=forever") == 'Invalid max_stale value "forever"'
    assert parse_header(request("max_stale=5s")).allow_stale
    assert not parse_header(request("max_stale=0s")).allow_stale
    assert not parse_header(request("max_stale=")).allow_stale
    assert parse_header(request("max_stale=0s&consistent")).require_consistent


def test_presence_flags() -> None:
    assert parse_header(request("stale")).allow_stale
    assert parse_header(request("stale=")).allow_stale
    assert parse_header(request("consistent")).require_consistent
    assert not parse_header(request("staleness")).allow_stale


@pytest.mark.parametrize("value", ["max-age=abc", "max-age=1.5", "no-cache, max-age=", "MAX-AGE=x", "stale-if-error=soon"])
def test_invalid_cache_control(value: str) -> None:
    assert error_of(headers={"Cache-Control": value}) == "Invalid Cache-Control header."


@pytest.mark.parametrize("value", ["max-age=30", "no-cache", "must-revalidate, max-age=0", "", " , ", "stale-if-error=60"])
def test_valid_cache_control(value: str) -> None:
    parse_header(request(headers={"Cache-Control": value}))


def test_first_error_follows_consuls_order() -> None:
    """Consul checks consistency, then Cache-Control, then wait, then index."""
    bad_all = "index=x&wait=x&stale&consistent"
    assert error_of(bad_all, {"Cache-Control": "max-age=x"}).startswith("Cannot specify ?stale")
    assert error_of("index=x&wait=x", {"Cache-Control": "max-age=x"}) == "Invalid Cache-Control header."
    assert error_of("index=x&wait=x") == "Invalid wait time"


def test_token_sources() -> None:
    assert token_of(request(headers={"X-Consul-Token": "h"})) == "h"
    assert token_of(request(headers={"Authorization": "Bearer b"})) == "b"
    assert token_of(request(headers={"Authorization": "bearer   b  "})) == "b"
    assert token_of(request(headers={"Authorization": "Bearer b extra"})) == "b"
    assert token_of(request("token=q")) == "q"
    assert token_of(request()) == ""
    assert token_of(request(headers={"Authorization": "Basic dXNlcjpwdw=="})) == ""
    assert token_of(request(headers={"Authorization": "Bearer"})) == ""
    assert token_of(request(headers={"Authorization": "Bearerb"})) == ""


def test_token_precedence_is_query_then_header_then_bearer() -> None:
    both_headers = {"X-Consul-Token": "h", "Authorization": "Bearer b"}
    assert token_of(request("token=q", both_headers)) == "q"
    assert token_of(request("", both_headers)) == "h"
    assert token_of(request("token=", both_headers)) == "h"
    assert parse_header(request("token=q", both_headers)).token == "q"


def test_writes_get_a_fresh_request_id_and_reads_none() -> None:
    first = parse_header(request(method="PUT"), write=True).request_id
    second = parse_header(request(method="PUT"), write=True).request_id
    assert first and second and first != second
    assert parse_header(request()).request_id == ""


def test_flag() -> None:
    assert flag(request("passing"), "passing")
    assert flag(request("passing=1"), "passing")
    assert flag(request("passing=true"), "passing")
    assert not flag(request("passing=false"), "passing")
    assert not flag(request("passing=0"), "passing")
    assert not flag(request(), "passing")
