"""Type checks of decoded records: a log entry or snapshot row can hold anything msgpack can
express, and the store relies on names being strings and ports being ints, so every record is
checked against its dataclass's type hints before apply. Errors name fields as Consul clients
know them (`Service.Port`). Hot: runs for every command on every server, hence the caches."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
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


# hint -> a predicate that accepts exactly what `check_type` accepts, built once per hint. The
# walk (`_walk`) re-dispatches on the hint and builds a field path for every nested value;
# asked first, the predicate answers a well-typed record in a third of the time (issue #13: the
# check runs for every command on every server), and the walk runs only to name a bad field.
_ACCEPTS: dict[Any, Callable[[Any], bool]] = {}
# Field hints a value of exactly this type satisfies with no further look (int and float have
# range and finiteness rules, so they go through their predicates).
_EXACT_OK: dict[Any, type] = {str: str, bool: bool, bytes: bytes}


def accepts(hint: Any) -> Callable[[Any], bool]:
    found = _ACCEPTS.get(hint)
    if found is None:
        found = _ACCEPTS[hint] = _compile(hint)
    return found


def _never(value: Any) -> bool:
    return False  # the walk then raises, naming the field and the unsupported hint


def _compile(hint: Any) -> Callable[[Any], bool]:  # noqa: C901 - one branch per kind of hint, as check_type
    if hint is Any:
        return lambda value: True
    if hint is str or hint is bytes:
        return lambda value: isinstance(value, hint)
    if hint is bool:
        return lambda value: isinstance(value, bool)
    if hint is int:
        return lambda value: (isinstance(value, int) and not isinstance(value, bool)
                              and _MIN_WIRE_INT <= value <= _MAX_WIRE_INT)
    if hint is float:
        return lambda value: (isinstance(value, (int, float)) and not isinstance(value, bool)
                              and math.isfinite(value))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (UnionType, typing.Union):
        concrete = [arg for arg in args if arg is not NoneType]
        if len(concrete) != 1:
            return _never
        inner, nullable = accepts(concrete[0]), NoneType in args
        return lambda value: (nullable and value is None) or inner(value)
    if origin is tuple:
        item_ok = accepts(args[0])
        return lambda value: isinstance(value, tuple) and all(item_ok(item) for item in value)
    if origin is dict:
        value_ok = accepts(args[1])
        return lambda value: isinstance(value, dict) and all(
            isinstance(key, str) and value_ok(item) for key, item in value.items())
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_accepts(hint)
    return _never


def _dataclass_accepts(cls: type) -> Callable[[Any], bool]:
    fields: tuple[tuple[str, type | None, Callable[[Any], bool]], ...] | None = None

    def ok(value: Any) -> bool:
        nonlocal fields
        if not isinstance(value, cls):
            return False
        if fields is None:  # on first use, so a record may name a class defined after it
            fields = tuple((name, _EXACT_OK.get(field_hint), accepts(field_hint))
                           for name, field_hint in typing.get_type_hints(cls).items())
        for name, exact, field_ok in fields:
            item = getattr(value, name)
            if type(item) is exact or field_ok(item):
                continue
            return False
        return True

    return ok


def check_type(value: Any, hint: Any, path: str, renames: tuple[tuple[str, str], ...] = ()) -> None:
    """Check `value` against a record's type hint, recursively.

    Decoded log entries can hold anything msgpack can express; the store relies on names being
    strings and ports being ints, so a wrong type must stop at the door, not half-way into apply.
    """
    if accepts(hint)(value):
        return
    _walk(value, hint, path, renames)
    # The predicate refused what the walk accepts: they disagree (a bug), so refuse, not let it in.
    raise CommandError(path, f"{path or 'value'}: does not match {hint}")


def _walk(value: Any, hint: Any, path: str, renames: tuple[tuple[str, str], ...] = ()) -> None:
    """`check_type`'s walk, for a value its predicate refused: raises naming the first bad field.
    It never asks the predicates, so it is the reference they are tested against."""
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
            _walk(value, concrete[0], path, renames)
            return
        raise CommandError(path, f"{path}: unsupported union type {hint}")
    if origin is tuple:
        if not isinstance(value, tuple):
            raise type_error(path, "a list", value)
        for position, item in enumerate(value):
            _walk(item, args[0], f"{path}[{position}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise type_error(path, "an object", value)
        for key, item in value.items():
            if not isinstance(key, str):
                raise type_error(f"{path} key", "a string", key)
            _walk(item, args[1], f"{path}[{key}]")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise type_error(path, hint.__name__, value)
        for name, field_hint, label in _fields_of(hint, renames):
            _walk(getattr(value, name), field_hint, f"{path}.{label}" if path else label)
        return
    raise CommandError(path, f"{path}: unsupported type {hint}")  # a records.py change not handled here


def check_record_types(record: Any, cls: type, path: str = "") -> None:
    """Raise CommandError unless `record` is a `cls` whose fields (recursively) have their
    declared types; the snapshot loader uses it too, so a bad row never reaches a reader."""
    check_type(record, cls, path)
