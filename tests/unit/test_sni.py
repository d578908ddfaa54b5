"""The SNI parser against real ClientHellos from Python's ssl module, hand-built edge cases and junk."""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.rpc.sni import MAX_CLIENT_HELLO, ParseResult, parse_client_hello_sni

_CLIENT_CONTEXT = ssl.create_default_context()
_TLS12_CONTEXT = ssl.create_default_context()
_TLS12_CONTEXT.maximum_version = ssl.TLSVersion.TLSv1_2
_NO_SNI_CONTEXT = ssl.create_default_context()
_NO_SNI_CONTEXT.check_hostname = False


def real_client_hello(name: str | None, context: ssl.SSLContext = _CLIENT_CONTEXT) -> bytes:
    """The first flight a real TLS client sends for `name` (no SNI when None)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def records(message: bytes, cuts: list[int], version: bytes = b"\x03\x01") -> bytes:
    """Wrap a handshake message into handshake records split at the given offsets."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(message)}), len(message)]
    out = b""
    for start, end in zip(bounds, bounds[1:], strict=False):
        out += b"\x16" + version + struct.pack(">H", end - start) + message[start:end]
    return out


def handshake_of(single_record_hello: bytes) -> bytes:
    """Strip the record header of a one-record ClientHello (what Python's ssl sends)."""
    length = struct.unpack(">H", single_record_hello[3:5])[0]
    assert len(single_record_hello) == 5 + length, "expected a single-record ClientHello"
    return single_record_hello[5:]


def extension(ext_type: int, body: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(body)) + body


def sni_extension(entries: list[tuple[int, bytes]]) -> bytes:
    names = b"".join(struct.pack(">BH", kind, len(raw)) + raw for kind, raw in entries)
    return extension(0, struct.pack(">H", len(names)) + names)


def built_hello(
    extensions: bytes | None,
    *,
    session_id: bytes = b"",
    ciphers: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
    legacy_version: bytes = b"\x03\x03",
) -> bytes:
    """A minimal ClientHello handshake message built by hand, for cases real clients never send."""
    body = legacy_version + bytes(32)
    body += bytes([len(session_id)]) + session_id
    body += struct.pack(">H", len(ciphers)) + ciphers
    body += bytes([len(compression)]) + compression
    if extensions is not None:
        body += struct.pack(">H", len(extensions)) + extensions
    return b"\x01" + len(body).to_bytes(3, "big") + body


def one_record(message: bytes) -> bytes:
    return records(message, [])


_label = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?\Z")
_top_label = st.from_regex(r"\A[a-zA-Z]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?\Z")
dns_names = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(_label, min_size=0, max_size=5),
    _top_label,
).filter(lambda name: "xn--" not in name.lower())
meshfed_names = st.builds(
    lambda node, dc, domain: f"{node + '.' if node else ''}server.{dc}.{domain}",
    st.one_of(st.just(""), _label),
    _label,
    st.sampled_from(["consul", "example.com", "mesh.internal"]),
)
any_name = st.one_of(dns_names, meshfed_names)


# ---- real ClientHellos -----------------------------------------------------------------------------


def test_real_hello_yields_lower_cased_name() -> None:
    hello = real_client_hello("Node1.Server.DC1.Consul")
    assert b"Node1.Server.DC1.Consul" in hello  # the client really sent mixed case
    assert parse_client_hello_sni(hello) == ParseResult("ok", "node1.server.dc1.consul")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=any_name, tls12=st.booleans())
def test_real_hellos_for_many_names(name: str, tls12: bool) -> None:
    hello = real_client_hello(name, _TLS12_CONTEXT if tls12 else _CLIENT_CONTEXT)
    assert parse_client_hello_sni(hello) == ParseResult("ok", name.lower())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=any_name)
def test_every_truncation_needs_more(name: str) -> None:
    hello = real_client_hello(name)
    for length in range(len(hello)):
        assert parse_client_hello_sni(hello[:length]) == ParseResult("need_more", None), length


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=any_name, data=st.data())
def test_hello_split_across_records(name: str, data: st.DataObject) -> None:
    message = handshake_of(real_client_hello(name))
    cuts = data.draw(st.lists(st.integers(1, len(message) - 1), min_size=1, max_size=12))
    fragmented = records(message, cuts)
    assert parse_client_hello_sni(fragmented) == ParseResult("ok", name.lower())
    for length in range(len(fragmented)):
        assert parse_client_hello_sni(fragmented[:length]).status == "need_more", length


def test_split_into_single_byte_records() -> None:
    message = handshake_of(real_client_hello("a.server.dc2.consul"))
    assert parse_client_hello_sni(records(message, list(range(1, len(message))))) == ParseResult(
        "ok", "a.server.dc2.consul"
    )


def test_hello_without_sni_is_ok_with_no_name() -> None:
    assert parse_client_hello_sni(real_client_hello(None, _NO_SNI_CONTEXT)) == ParseResult("ok", None)


def test_bytes_after_the_hello_are_ignored() -> None:
    hello = real_client_hello("server.dc1.consul")
    assert parse_client_hello_sni(hello + b"\x17\x03\x03\x00\x05hello") == ParseResult(
        "ok", "server.dc1.consul"
    )
    assert parse_client_hello_sni(bytearray(hello)) == ParseResult("ok", "server.dc1.consul")


# ---- hand-built edge cases --------------------------------------------------------------------------


def test_built_hello_sanity() -> None:
    """The hand builder itself produces something the parser accepts, so the negative cases below mean something."""
    hello = one_record(built_hello(sni_extension([(0, b"server.dc1.consul")])))
    assert parse_client_hello_sni(hello) == ParseResult("ok", "server.dc1.consul")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", "need_more"),
        (b"\x16", "need_more"),
        (b"\x16\x03", "need_more"),
        (b"\x16\x03\x01\x02", "need_more"),
        (b"\x16\x03\x01\x02\x00", "need_more"),
        (b"\x16\x03\x01\x02\x00\x01", "need_more"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not_tls"),
        (b"\x17\x03\x03\x00\x05hello", "not_tls"),  # application data
        (b"\x15\x03\x03\x00\x02\x02\x28", "not_tls"),  # alert
        (b"\x16\x02", "not_tls"),  # not a TLS/SSL3 record version
        (b"\x80\x2e\x01\x03\x01", "not_tls"),  # SSLv2-compatible hello
        (b"\x16\x03\x01\x00\x00", "not_tls"),  # empty fragment
        (b"\x16\x03\x01\x40\x01", "not_tls"),  # fragment over 2^14
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not_tls"),  # ServerHello, not ClientHello
        (b"\x16\x03\x01\x00\x04\x01\x00\x40\x00", "not_tls"),  # hello larger than the gateway buffers
        (b"\x16\x03\x01\x00\x04\x01\x00\x00\x00", "not_tls"),  # empty hello body
    ],
)
def test_record_layer_cases(data: bytes, status: str) -> None:
    assert parse_client_hello_sni(data) == ParseResult(status, None)  # type: ignore[arg-type]


def test_hello_without_extensions_block() -> None:
    assert parse_client_hello_sni(one_record(built_hello(None))) == ParseResult("ok", None)


def test_only_host_name_entries_count() -> None:
    sni = sni_extension([(7, b"ignored.example"), (0, b"Server.DC1.consul")])
    assert parse_client_hello_sni(one_record(built_hello(sni))) == ParseResult("ok", "server.dc1.consul")
    other_only = sni_extension([(7, b"ignored.example")])
    assert parse_client_hello_sni(one_record(built_hello(other_only))) == ParseResult("ok", None)


def test_trailing_dot_is_dropped() -> None:
    hello = one_record(built_hello(sni_extension([(0, b"server.dc1.consul.")])))
    assert parse_client_hello_sni(hello) == ParseResult("ok", "server.dc1.consul")


def test_sni_after_other_extensions() -> None:
    exts = (
        extension(10, b"\x00\x02\x00\x1d")
        + extension(0xFF01, b"\x00")
        + sni_extension([(0, b"x.server.d.consul")])
    )
    assert parse_client_hello_sni(one_record(built_hello(exts))) == ParseResult("ok", "x.server.d.consul")


@pytest.mark.parametrize(
    "extensions",
    [
        sni_extension([(0, b"a.consul"), (0, b"b.consul")]),  # two host names: ambiguous route
        sni_extension([(0, b"a.consul")]) + sni_extension([(0, b"a.consul")]),  # duplicate extension
        sni_extension([(0, b"bad\x00name.consul")]),
        sni_extension([(0, b"sp ace.consul")]),
        sni_extension([(0, "caf\u00e9.consul".encode())]),
        sni_extension([(0, b"")]),
        sni_extension([(0, b".")]),
        sni_extension([(0, b"a..b")]),
        sni_extension([(0, b"a" * 300)]),
        sni_extension([]),  # empty server_name_list
        extension(0, b"\x00\x05\x00\x00\x09abc"),  # entry longer than its list
        extension(0, b"\x00\x03\x00\x00\x01a\xff"),  # bytes after the list
        extension(0, b"\x00"),  # list length cut short
        b"\x00\x00\x00\x10\x00",  # extension longer than the block
        b"\x00",  # stray byte in the extensions block
    ],
)
def test_malformed_server_name_is_not_tls(extensions: bytes) -> None:
    assert parse_client_hello_sni(one_record(built_hello(extensions))) == ParseResult("not_tls", None)


@pytest.mark.parametrize(
    "message",
    [
        built_hello(b"", session_id=bytes(33)),  # session id too long
        built_hello(b"", ciphers=b""),  # no cipher suites
        built_hello(b"", ciphers=b"\x13"),  # odd cipher-suite length
        built_hello(b"", compression=b""),  # no compression methods
        built_hello(b"", legacy_version=b"\x02\x00"),
        built_hello(b"")[:-2] + b"\x00\x05",  # extensions length past the end
        built_hello(b"") + b"\x00",  # a byte after the extensions block
        built_hello(None)[:-1],  # compression methods cut short
    ],
)
def test_malformed_hello_body_is_not_tls(message: bytes) -> None:
    fixed = message[:1] + (len(message) - 4).to_bytes(3, "big") + message[4:]
    assert parse_client_hello_sni(one_record(fixed)) == ParseResult("not_tls", None)


def test_largest_bufferable_hello_is_parsed() -> None:
    padding = extension(21, bytes(MAX_CLIENT_HELLO - 200))
    message = built_hello(padding + sni_extension([(0, b"server.dc1.consul")]))
    hello = records(message, [MAX_CLIENT_HELLO // 2])
    assert len(hello) < MAX_CLIENT_HELLO
    assert parse_client_hello_sni(hello) == ParseResult("ok", "server.dc1.consul")
    too_big = built_hello(extension(21, bytes(MAX_CLIENT_HELLO)) + sni_extension([(0, b"a.consul")]))
    assert parse_client_hello_sni(records(too_big, [100])[:200]) == ParseResult("not_tls", None)


# ---- junk -------------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = parse_client_hello_sni(data)
    assert result.status in ("ok", "need_more", "not_tls")
    if result.status != "ok":
        assert result.server_name is None


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=400), version=st.integers(0, 255), declared=st.integers(0, 0xFFFF))
def test_junk_behind_a_handshake_header_never_raises(body: bytes, version: int, declared: int) -> None:
    data = bytes([0x16, 0x03, version]) + struct.pack(">H", declared) + b"\x01" + body
    assert parse_client_hello_sni(data).status in ("ok", "need_more", "not_tls")


_SEED_HELLO = real_client_hello("node1.server.dc1.consul")


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutated_real_hellos_never_raise(data: st.DataObject) -> None:
    mutated = bytearray(_SEED_HELLO)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    result = parse_client_hello_sni(bytes(mutated))
    assert result.status in ("ok", "need_more", "not_tls")
    if result.server_name is not None:
        assert result.server_name == result.server_name.lower()
        assert all(0x20 < ord(char) < 0x7F for char in result.server_name)
