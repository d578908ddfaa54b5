"""Type checks of decoded records: a log entry or snapshot row can hold anything msgpack can
express, and the store relies on names being strings and ports being ints, so every record is
checked against its dataclass's type hints before apply. Errors name fields as Consul clients
know them (`Service.Port`). Hot: runs for every command on every server, hence the caches."""

from __future__ import annotations

import dataclasses
import math
import typing
from types import NoneType, UnionType
from typing import Any

# msgpack's integer range: wider values cannot be in a log entry another server decodes.
_MIN_WIRE_INT = -(2**63)
_MAX_WIRE_INT = 2**64 - 1


class CommandError(ValueError):
    """A command with a bad shape; `field` uses the names Consul clients know (`Service.Port`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# snake_case attribute -> the JSON key Consul clients send, where simple capitalisation is wrong.
_CONSUL_NAMES = {"id": "ID", "check_id": "CheckID", "service_id": "ServiceID", "ttl": "TTL"}


def consul_name(attribute: str) -> str:
    known = _CONSUL_NAMES.get(attribute)
    if known is not None:
        return known
    return "".join(part.capitalize() for part in attribute.split("_"))


def field_path(prefix: str, name: str) -> str:
    """`prefix.name`, or `name` at the top (the label an error names)."""
    return f"{prefix}.{name}" if prefix else name


# (record class, renames) -> [(attribute, type hint, Consul label)]; hints resolved once, since
# resolving them and building labels per value dominated the cost of apply.
_FIELDS: dict[tuple[type, tuple[tuple[str, str], ...]], list[tuple[str, Any, str]]] = {}


def _fields_of(cls: type, renames: tuple[tuple[str, str], ...]) -> list[tuple[str, Any, str]]:
    fields = _FIELDS.get((cls, renames))
    if fields is None:
        labels = dict(renames)
        fields = [
            (name, hint, labels.get(name) or consul_name(name))
            for name, hint in typing.get_type_hints(cls).items()
        ]
        _FIELDS[(cls, renames)] = fields
    return fields


# hint -> (get_origin, get_args): those two were a quarter of a federation state's apply (issue #13:
# 4 ms per 4-gateway record, on every server); hints are few and hashable.
_HINT_SHAPES: dict[Any, tuple[Any, tuple[Any, ...]]] = {}


def type_error(path: str, expected: str, value: Any) -> CommandError:
    return CommandError(path, f"{path}: expected {expected}, got {type(value).__name__} {value!r:.60}")


# Hints whose check passes whenever the value's type is exactly the hinted type (float and the
# containers need more than that). Hints are the resolved ones of _fields_of.
_FAST_EXACT: dict[Any, type] = {str: str, bool: bool, int: int, bytes: bytes}


def check_type(value: Any, hint: Any, path: str, renames: tuple[tuple[str, str], ...] = ()) -> None:
    """Check `value` against a record's type hint, recursively.

    Decoded log entries can hold anything msgpack can express; the store relies on names being
    strings and ports being ints, so a wrong type must stop at the door, not half-way into apply.
    """
    if hint is Any:
        return
    if hint is str:
        if not isinstance(value, str):
            raise type_error(path, "a string", value)
        return
    if hint is bytes:
        if not isinstance(value, bytes):
            raise type_error(path, "bytes", value)
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise type_error(path, "a boolean", value)
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error(path, "an integer", value)
        if not _MIN_WIRE_INT <= value <= _MAX_WIRE_INT:
            raise CommandError(path, f"{path}: integer {value} does not fit in 64 bits")
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise type_error(path, "a number", value)
        if not math.isfinite(value):
            raise CommandError(path, f"{path}: must be a finite number, got {value!r}")
        return
    shape = _HINT_SHAPES.get(hint)
    if shape is None:
        shape = _HINT_SHAPES[hint] = (typing.get_origin(hint), typing.get_args(hint))
    origin, args = shape
    if origin in (UnionType, typing.Union):
        if value is None and NoneType in args:
            return
        concrete = [arg for arg in args if arg is not NoneType]
        if len(concrete) == 1:
            check_type(value, concrete[0], path, renames)
            return
        raise CommandError(path, f"{path}: unsupported union type {hint}")
    if origin is tuple:
        if not isinstance(value, tuple):
            raise type_error(path, "a list", value)
        for position, item in enumerate(value):
            check_type(item, args[0], f"{path}[{position}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise type_error(path, "an object", value)
        for key, item in value.items():
            if not isinstance(key, str):
                raise type_error(f"{path} key", "a string", key)
            check_type(item, args[1], f"{path}[{key}]")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise type_error(path, hint.__name__, value)
        for name, field_hint, label in _fields_of(hint, renames):
            item = getattr(value, name)
            # The common case first, without building the field's path (most of the cost when
            # every field is fine, and this runs for every command on every server).
            if _FAST_EXACT.get(field_hint) is type(item) and (field_hint is not int or _MIN_WIRE_INT <= item <= _MAX_WIRE_INT):
                continue
            check_type(item, field_hint, f"{path}.{label}" if path else label)
        return
    raise CommandError(path, f"{path}: unsupported type {hint}")  # a records.py change not handled here


def check_record_types(record: Any, cls: type, path: str = "") -> None:
    """Raise CommandError unless `record` is a `cls` whose fields (recursively) have their
    declared types; the snapshot loader uses it too, so a bad row never reaches a reader."""
    check_type(record, cls, path)
