"""Bodies that parse as JSON but cannot be carried through the write path (issue #8 item 1)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.rpc.codec import decode_request, encode_request
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.http.json_guard import MAX_JSON_DEPTH, BodyError, parse_json_body, printable


def refused(raw: str | bytes) -> str:
    with pytest.raises(BodyError) as caught:
        parse_json_body(raw.encode() if isinstance(raw, str) else raw)
    message = str(caught.value)
    message.encode("utf-8")  # the answer itself must be sendable
    return message


def test_empty_body_is_none_and_plain_json_passes() -> None:
    assert parse_json_body(b"  ") is None
    assert parse_json_body(b'{"Node": "n1", "Weights": {"Passing": 1}}') == {"Node": "n1", "Weights": {"Passing": 1}}


def test_deep_nesting_is_refused_before_python_recursion_fails() -> None:
    assert "nests deeper" in refused("[" * 5000 + "]" * 5000)
    assert "nests deeper" in refused('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1))
    parse_json_body(('{"a":' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1)).encode())


def test_integer_beyond_64_bits_names_the_field() -> None:
    message = refused('{"Service": {"Weights": {"Passing": 18446744073709551616}}}')
    assert "Service.Weights.Passing" in message and "out of range" in message
    assert "Checks[1]" in refused('{"Checks": [1, -9223372036854775809]}')
    parse_json_body(b'{"a": 18446744073709551615, "b": -9223372036854775808}')


def test_lone_surrogates_in_values_and_keys_name_the_field() -> None:
    assert "Node" in refused('{"Node": "\\ud800"}')
    message = refused('{"Meta": {"\\udfff": "x"}}')
    assert "Meta.\\udfff" in message and "lone surrogate" in message


def test_non_finite_numbers_and_bad_json() -> None:
    assert "finite" in refused('{"Precedence": NaN}')
    assert "Request decode failed" in refused("{nope")
    assert "Request decode failed" in refused(b"\xff\xfe\x00")


def test_printable_escapes_only_what_utf8_cannot_carry() -> None:
    assert printable("é\ud800") == "é\\ud800"


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=30))
def test_whatever_the_guard_accepts_the_codec_carries(value: object) -> None:
    try:
        checked = parse_json_body(json.dumps(value).encode())
    except BodyError:
        return
    header, body = decode_request(encode_request(RequestHeader(), checked))
    assert json.dumps(body, sort_keys=True) == json.dumps(checked, sort_keys=True)


def test_codec_refuses_unencodable_values_as_invalid_argument() -> None:
    for bad in (2**64, "\ud800", -(2**63) - 1):
        with pytest.raises(RPCError) as caught:
            encode_request(RequestHeader(), {"x": bad})
        assert caught.value.code.name == "INVALID_ARGUMENT"
