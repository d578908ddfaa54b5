"""The one error type of config entries, and the helpers every stage uses to phrase it.

Errors carry the field path in Consul spelling ("Sources[1].Action") so that the HTTP layer can
answer 400 with something a user can act on.
"""

from __future__ import annotations

from typing import Any, NoReturn


class ConfigEntryError(ValueError):
    """A refused entry. `field` is the path in Consul spelling ("Sources[1].Action", "" for the
    whole payload) so the HTTP layer can answer 400 with something a user can act on."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def fail(field: str, message: str) -> NoReturn:
    raise ConfigEntryError(field, message)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def quoted(values: Any) -> str:
    return ", ".join(f'"{v}"' for v in values)


def type_name(value: Any) -> str:
    """JSON's name for a value's type, as a user who wrote JSON or HCL would call it."""
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )
