"""Config-entry files (HCL or JSON, as `consul config write` takes them) into raw entries.

This is file parsing, so it lives on the server side: `fsm/` receives the raw dict and keeps no
parser state. pyhcl's parser costs ~50 ms to build, so one is built lazily and shared; ply parsers
keep per-parse state, so it is used under a lock.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from meshfed.fsm.config_entries import ConfigEntryError

_parser_lock = threading.Lock()
_parser: Any = None


def from_hcl(text: str | bytes) -> dict[str, Any]:
    """Parse a config-entry file (HCL or JSON) into a raw dict for `normalize`.

    Repeated blocks (`Sources { ... }` twice) become a list of objects, as in Consul's HCL
    decoder; stock pyhcl merges them and silently loses keys, so a stricter parser is used.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigEntryError("", f"config entry file is not UTF-8: {exc}") from None
    try:
        if text.lstrip().startswith("{"):
            parsed = json.loads(text)
        else:
            with _parser_lock:
                parsed = _hcl_parser().parse(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigEntryError("", f"failed to parse JSON: {exc.msg} at {where}") from None
    except ConfigEntryError:
        raise
    except Exception as exc:  # pyhcl raises assorted exception types on bad input
        raise ConfigEntryError("", f"failed to parse HCL: {_hcl_error_position(str(exc), text)}") from None
    if not isinstance(parsed, dict):
        raise ConfigEntryError("", "config entry file must contain one object")
    return parsed


def _hcl_error_position(message: str, text: str) -> str:
    """pyhcl's grammar errors report the offset in the file as the "column", and end-of-file
    errors carry no position at all; make both point at a line and column a user can find."""
    grammar_error = re.match(r"Line (\d+), column (\d+): (.*)", message, re.DOTALL)
    if grammar_error:
        line, offset, rest = int(grammar_error[1]), int(grammar_error[2]), grammar_error[3]
        column = offset - text.rfind("\n", 0, offset)
        return f"line {line}, column {column}: {rest}"
    if message.startswith("Unexpected end of file"):
        return f"line {text.count(chr(10)) + 1}: {message}"
    return message


def _hcl_parser() -> Any:
    global _parser
    if _parser is None:
        from hcl.parser import HclParser

        class _RepeatedBlocksParser(HclParser):  # type: ignore[misc]
            def objectlist_flat(self, items: list[tuple[Any, Any]], replace: bool) -> dict[str, Any]:
                return _collect_items(items)

        _parser = _RepeatedBlocksParser()
    return _parser


def _collect_items(items: list[tuple[Any, Any]]) -> dict[str, Any]:
    """One HCL object body: a key given once keeps its value; a key repeated as blocks becomes
    the list of those blocks; any other repetition is a mistake we refuse rather than guess."""
    grouped: dict[str, list[Any]] = {}
    for key, value in items:
        if not isinstance(key, str):
            raise ConfigEntryError("", f"unsupported HCL key {key!r}")
        grouped.setdefault(key, []).append(value)
    out: dict[str, Any] = {}
    for key, values in grouped.items():
        if len(values) == 1:
            out[key] = values[0]
        elif all(isinstance(v, dict) for v in values):
            out[key] = values
        else:
            raise ConfigEntryError("", f'duplicate config key "{key}"')
    return out
