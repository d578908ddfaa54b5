"""Request bodies checked for what JSON allows but the rest of the server cannot carry.

A body that parses as JSON can still break the write path far from where it came in: nesting
deep enough to exhaust Python's recursion limit (in `json.loads` itself, or later in msgpack,
which refuses more than 511 levels), integers outside msgpack's 64-bit range (the forward to the
leader fails to encode them), and lone UTF-16 surrogates (`"\\ud800"`, legal in JSON text, not
encodable as UTF-8, so neither msgpack nor the HTTP error answer can carry them). Each of these
once surfaced as a 500 with a traceback in the log.

`parse_json_body` is the one door: it parses, then walks the value once, iteratively (a
recursive walk would fail on exactly the input it guards against), and refuses the first
offending field with a message that names it in the body's own spelling (`Weights.Passing`,
`Checks[2].Name`). Consul's decoder is Go's, which refuses the same inputs (numbers overflow
int64/uint64, invalid UTF-8 is replaced); refusing is the honest choice for a write.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any Consul request body (a config entry nests about six levels) and far below
# msgpack's 511 and Python's default recursion limit of 1000.
MAX_JSON_DEPTH = 64
# msgpack encodes integers in [-2**63, 2**64 - 1]; anything outside cannot be forwarded.
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**64 - 1


class BodyError(ValueError):
    """The body is not a value the server can store; the message is safe to show the client."""


def printable(text: str) -> str:
    """`text` with lone surrogates escaped, so it can be put in an error answer or a log line."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_json_value(value: Any) -> None:
    """Raise BodyError naming the first field that is too deep, too large or not valid text."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BodyError(f"Request decode failed: {printable(path) or 'the body'} nests deeper than "
                            f"{MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if not _encodable(key):
                    raise BodyError(f'Request decode failed: field name "{printable(_join(path, key))}" '
                                    'is not valid Unicode text (lone surrogate)')
                stack.append((child, _join(path, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if not _encodable(item):
                raise BodyError(f"Request decode failed: {printable(path) or 'the body'} is not valid "
                                "Unicode text (lone surrogate)")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not MIN_JSON_INT <= item <= MAX_JSON_INT:
                raise BodyError(f"Request decode failed: {printable(path) or 'the body'}: number out of "
                                f"range (want {MIN_JSON_INT} to {MAX_JSON_INT})")
        elif isinstance(item, float) and not math.isfinite(item):  # json.loads accepts NaN, Infinity
            raise BodyError(f"Request decode failed: {printable(path) or 'the body'}: not a finite number")


def parse_json_body(raw: bytes) -> Any:
    """The body as a JSON value (None when empty), checked by `check_json_value`."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BodyError(f"Request decode failed: the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BodyError(f"Request decode failed: {printable(str(exc))}") from None
    check_json_value(value)
    return value
