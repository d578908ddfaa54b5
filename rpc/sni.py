"""Read the SNI server name from the first bytes of a TLS connection, without decrypting anything.

The mesh gateway routes a connection on this name alone (DESIGN.md §7), so the parser sees bytes
straight from the network: it is pure, checks every length against the bytes it actually has, and
answers one of three things instead of raising:

- ``need_more``: what arrived so far is a plausible start of a ClientHello; read more and ask again.
- ``not_tls``: this will never become a usable ClientHello (wrong record type, malformed fields,
  a hello larger than ``MAX_CLIENT_HELLO``). The gateway closes the connection.
- ``ok``: the whole ClientHello is here; ``server_name`` is its lower-cased host name, or None when
  the client sent no SNI.

The ClientHello may be fragmented over several handshake records (RFC 8446 §5.1 allows it, and
large post-quantum key shares make it happen in practice); fragments are joined before parsing.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

# How many bytes the gateway buffers while waiting for a full ClientHello before giving up.
MAX_CLIENT_HELLO = 16384

RECORD_HEADER_LEN = 5
HANDSHAKE_HEADER_LEN = 4
CONTENT_TYPE_HANDSHAKE = 22
HANDSHAKE_TYPE_CLIENT_HELLO = 1
EXTENSION_SERVER_NAME = 0
NAME_TYPE_HOST_NAME = 0
# RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes.
MAX_RECORD_FRAGMENT = 16384
MAX_SESSION_ID_LEN = 32
MAX_HOST_NAME_LEN = 253


class ParseResult(NamedTuple):
    status: Literal["ok", "need_more", "not_tls"]
    server_name: str | None


NEED_MORE = ParseResult("need_more", None)
NOT_TLS = ParseResult("not_tls", None)


class _Malformed(Exception):
    """Internal signal: the bytes cannot be a valid ClientHello. Never leaves this module."""


class _Reader:
    """A cursor over a complete message; any read past its end means the message is malformed."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, count: int) -> bytes:
        if count > self.remaining:
            raise _Malformed
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Reader:
        """A length-prefixed sub-block as its own reader, so nested parsing cannot overrun it."""
        return _Reader(self.take(self.uint(length_size)))


def _collect_handshake(data: bytes) -> bytes | ParseResult:
    """Join handshake-record fragments until the ClientHello is whole.

    Returns the ClientHello message (header included), or a ParseResult when it is not whole yet
    or cannot be one.
    """
    message = bytearray()
    needed: int | None = None  # total message length, known once the 4-byte header is in
    pos = 0
    while True:
        header = data[pos : pos + RECORD_HEADER_LEN]
        # Check whatever header bytes are present, so junk is rejected without waiting for more.
        if len(header) >= 1 and header[0] != CONTENT_TYPE_HANDSHAKE:
            return NOT_TLS
        if len(header) >= 2 and header[1] != 3:
            return NOT_TLS
        if len(header) < RECORD_HEADER_LEN:
            return NEED_MORE
        fragment_len = int.from_bytes(header[3:5], "big")
        if fragment_len == 0 or fragment_len > MAX_RECORD_FRAGMENT:
            return NOT_TLS
        fragment = data[pos + RECORD_HEADER_LEN : pos + RECORD_HEADER_LEN + fragment_len]
        message += fragment
        if message and message[0] != HANDSHAKE_TYPE_CLIENT_HELLO:
            return NOT_TLS
        if needed is None and len(message) >= HANDSHAKE_HEADER_LEN:
            needed = HANDSHAKE_HEADER_LEN + int.from_bytes(message[1:4], "big")
            if needed > MAX_CLIENT_HELLO - RECORD_HEADER_LEN:
                return NOT_TLS  # the gateway would never buffer it all
        if needed is not None and len(message) >= needed:
            return bytes(message[:needed])
        if len(fragment) < fragment_len:
            return NEED_MORE  # the current record is not complete yet
        pos += RECORD_HEADER_LEN + fragment_len


def _host_name(raw: bytes) -> str:
    """Validate and normalise one host_name entry (RFC 6066 §3: ASCII, no trailing dot)."""
    if not 0 < len(raw) <= MAX_HOST_NAME_LEN + 1:
        raise _Malformed
    if any(byte <= 0x20 or byte >= 0x7F for byte in raw):
        raise _Malformed  # controls, spaces, NUL and non-ASCII have no place in a DNS name
    name = raw.decode("ascii").lower()
    # Some clients send the absolute form; it names the same host.
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > MAX_HOST_NAME_LEN or ".." in name or name.startswith("."):
        raise _Malformed
    return name


def _server_name_extension(body: _Reader) -> str | None:
    names = body.vector(2)
    if body.remaining or not names.remaining:
        raise _Malformed
    host_name: str | None = None
    while names.remaining:
        name_type = names.uint(1)
        raw = names.take(names.uint(2))
        if name_type != NAME_TYPE_HOST_NAME:
            continue
        if host_name is not None:
            raise _Malformed  # RFC 6066: at most one name per type; two would make routing ambiguous
        host_name = _host_name(raw)
    return host_name


def _parse_client_hello(message: bytes) -> str | None:
    hello = _Reader(message)
    hello.take(HANDSHAKE_HEADER_LEN)
    if hello.uint(1) != 3:  # legacy_version major
        raise _Malformed
    hello.take(1 + 32)  # legacy_version minor, random
    session_id = hello.vector(1)
    if session_id.remaining > MAX_SESSION_ID_LEN:
        raise _Malformed
    cipher_suites = hello.vector(2)
    if cipher_suites.remaining == 0 or cipher_suites.remaining % 2:
        raise _Malformed
    if hello.vector(1).remaining == 0:  # compression methods
        raise _Malformed
    if hello.remaining == 0:
        return None  # a hello without extensions (SSL 3.0 style) cannot carry SNI
    extensions = hello.vector(2)
    if hello.remaining:
        raise _Malformed
    seen: set[int] = set()
    server_name: str | None = None
    while extensions.remaining:
        extension_type = extensions.uint(2)
        extension_body = extensions.vector(2)
        if extension_type in seen:
            raise _Malformed  # RFC 8446 §4.2: duplicate extensions are an error
        seen.add(extension_type)
        if extension_type == EXTENSION_SERVER_NAME:
            server_name = _server_name_extension(extension_body)
    return server_name


def parse_client_hello_sni(data: bytes) -> ParseResult:
    """Classify the first bytes of a connection and extract the SNI host name when complete.

    Args:
        data: everything received on the connection so far.

    Returns:
        A ParseResult; never raises, whatever ``data`` holds.
    """
    collected = _collect_handshake(bytes(data))
    if isinstance(collected, ParseResult):
        return collected
    try:
        return ParseResult("ok", _parse_client_hello(collected))
    except _Malformed:
        return NOT_TLS
