"""Normalization: a raw config entry (JSON body or parsed HCL file) into its canonical form.

Raw input has keys in any case, snake_case aliases and blocks that HCL decoders wrap in a
one-item list; the canonical entry is a plain dict with Consul's key spelling, zero values dropped
and kind defaults applied, so that two writes with the same meaning give the same dict, the same
`content_hash`, and the no-op short-circuit of connect-data §B.2 step 5 fires. This is the decode
step of Consul's HTTP handler: it checks types and key names, not values (see `validate`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from meshfed.fsm.config_entries.errors import ConfigEntryError, join_path, quoted, type_name
from meshfed.fsm.config_entries.identity import STORE_OWNED_FIELDS, precedence
from meshfed.fsm.config_entries.schema import (
    CONSUL_ONLY_KINDS,
    DEFAULT_SOURCE_TYPE,
    KIND_MESH,
    KIND_PROXY_DEFAULTS,
    KIND_SCHEMAS,
    KIND_SERVICE_INTENTIONS,
    KINDS,
    MESH_NAME,
    PROXY_DEFAULTS_NAME,
    SOURCE_SCHEMA,
    Field,
    fold_key,
)

_STORE_OWNED_KEYS = tuple(fold_key(name) for name in STORE_OWNED_FIELDS)
_INT64_MIN, _UINT64_LIMIT = -(2**63), 2**64  # what msgpack (Raft commands, snapshots) can carry

_ABSENT = object()


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a request body into the canonical entry (see module docstring).

    Raises ConfigEntryError for a missing/unknown Kind, unknown or duplicated keys, and values of
    the wrong type; never anything else, whatever the input.
    """
    try:
        return _normalize(raw)
    except RecursionError:
        raise ConfigEntryError("", "config entry is nested too deeply") from None


def _normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigEntryError("", "config entry must be an object")
    kind = _kind_of(raw)
    entry = _normalize_object(raw, KIND_SCHEMAS[kind], "", top=True)
    entry["Kind"] = kind
    entry.setdefault("Name", "")
    entry = _in_schema_order(entry, KIND_SCHEMAS[kind])
    if kind == KIND_PROXY_DEFAULTS:
        entry["Name"] = entry["Name"] or PROXY_DEFAULTS_NAME
        _lower_config_protocol(entry)
    elif kind == KIND_MESH:
        entry["Name"] = entry["Name"] or MESH_NAME
    elif kind == KIND_SERVICE_INTENTIONS:
        _normalize_sources(entry)
    return entry


def _kind_of(raw: Mapping[Any, Any]) -> str:
    kind_keys = [k for k in raw if isinstance(k, str) and fold_key(k) == "kind"]
    if not kind_keys:
        raise ConfigEntryError("Kind", "Payload does not contain a kind/Kind key at the top level")
    if len(kind_keys) > 1:
        raise ConfigEntryError("Kind", f"duplicate config key: given as {quoted(kind_keys)}")
    kind = raw[kind_keys[0]]
    if not isinstance(kind, str):
        raise ConfigEntryError("Kind", "Kind value in payload is not a string")
    folded = kind.lower()
    if folded in KINDS:
        return folded
    if folded in CONSUL_ONLY_KINDS:
        supported = ", ".join(KINDS)
        raise ConfigEntryError("Kind", f"unsupported config entry kind: {kind} (meshfed stores {supported})")
    raise ConfigEntryError("Kind", f"invalid config entry kind: {kind}")


def _normalize_object(raw: Any, schema: Mapping[str, Field], path: str, top: bool = False) -> dict[str, Any]:
    block = _unwrap_block(raw, path)
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in block.items():
        if not isinstance(key, str):
            raise ConfigEntryError(path, f"invalid config key {key!r}: keys must be strings")
        folded = fold_key(key)
        if top and folded in _STORE_OWNED_KEYS:
            continue
        field = schema.get(folded)
        if field is None:
            raise _unknown_key(join_path(path, key), key)
        field_path = join_path(path, field.name)
        if field.name in given_as:
            spellings = quoted([given_as[field.name], key])
            raise ConfigEntryError(field_path, f"duplicate config key: given as {spellings}")
        given_as[field.name] = key
        value = _convert(value, field, field_path)
        if value is not _ABSENT:
            out[field.name] = value
    return _in_schema_order(out, schema)


def _in_schema_order(values: dict[str, Any], schema: Mapping[str, Field]) -> dict[str, Any]:
    """Same key order whatever the input order: readers see entries laid out like Consul's."""
    return {f.name: values[f.name] for f in schema.values() if f.name in values}


def _unknown_key(path: str, key: str) -> ConfigEntryError:
    message = f'invalid config key "{key}"'
    if key.lower().endswith("namespace"):
        message += ", namespaces are a consul enterprise feature"
    elif key.lower().endswith("partition"):
        message += ", partitions are a consul enterprise feature"
    return ConfigEntryError(path, message)


def _unwrap_block(raw: Any, path: str) -> Mapping[Any, Any]:
    """HCL decoders hand a block back as a one-item list of objects; both forms mean the object."""
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], Mapping):
        return raw[0]
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, list):
        raise ConfigEntryError(path, f"must be a single object, got a list of {len(raw)} items")
    raise ConfigEntryError(path, f"must be an object, got {type_name(raw)}")


def _convert(value: Any, field: Field, path: str) -> Any:
    """Type-check one value; returns _ABSENT for null and (unless keep_zero) for zero values,
    because Go's decoder makes absent and zero indistinguishable and the hash must agree."""
    if value is None:
        return _ABSENT
    kind = field.type
    if kind == "str":
        result: Any = _as_str(value, path)
        result = result.lower() if field.case == "lower" else result
    elif kind == "bool":
        result = _as_bool(value, path)
    elif kind == "int":
        result = _as_int(value, path)
    elif kind == "duration":
        result = value if isinstance(value, str) else _as_int(value, path)
    elif kind == "str_list":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigEntryError(path, f"must be a list of strings, got {type_name(value)}")
        result = [_as_str(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if field.case == "upper":
            result = [item.upper() for item in result]
    elif kind == "str_map":
        result = {}
        for key, item in _unwrap_block(value, path).items():
            if not isinstance(key, str):
                raise ConfigEntryError(path, f"keys must be strings, got {type_name(key)}")
            result[_text(key, path)] = _as_map_str(item, f"{path}.{key}")
    elif kind == "free_map":
        result = _free_value(_unwrap_block(value, path), path)
    elif kind == "object":
        result = _normalize_object(value, field.schema or {}, path)
    else:  # object_list
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list):
            raise ConfigEntryError(path, f"must be a list of objects, got {type_name(value)}")
        result = [_normalize_object(item, field.schema or {}, f"{path}[{i}]") for i, item in enumerate(items)]
    return _ABSENT if not field.keep_zero and _is_zero(result) else result


def _is_zero(value: Any) -> bool:
    return value in ("", [], {}) or value is False or (type(value) is int and value == 0)


def _as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigEntryError(path, f"must be a string, got {type_name(value)}")
    return _text(value, path)


def _text(value: str, path: str) -> str:
    """JSON escapes can smuggle in lone surrogates, which msgpack (Raft commands) cannot encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigEntryError(path, "must be valid unicode text") from None
    return value


def _as_map_str(value: Any, path: str) -> str:
    """Meta values are strings; HCL users write `version = 2`, which Consul's weak decoder accepts."""
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise ConfigEntryError(path, f"must be a string, got {type_name(value)}")


def _as_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigEntryError(path, f"must be a boolean, got {type_name(value)}")


def _as_int(value: Any, path: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
        number = int(value)
    if number is None:
        raise ConfigEntryError(path, f"must be an integer, got {type_name(value)}")
    if not _INT64_MIN <= number < 2**63:
        raise ConfigEntryError(path, f"integer {number} is out of range")
    return number


def _free_value(value: Any, path: str) -> Any:
    """Copy user-owned data (proxy Config, extension Arguments) keeping keys as given, refusing
    only what JSON and msgpack cannot carry faithfully (NaN, huge ints, non-string keys)."""
    if isinstance(value, Mapping):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigEntryError(path, f"keys must be strings, got {type_name(key)}")
            copied[_text(key, path)] = _free_value(item, f"{path}.{key}")
        return copied
    if isinstance(value, (list, tuple)):
        return [_free_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigEntryError(path, "must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value < _UINT64_LIMIT:
        raise ConfigEntryError(path, f"integer {value} is out of range")
    if isinstance(value, str):
        return _text(value, path)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise ConfigEntryError(path, f"unsupported value of type {type_name(value)}")


def _lower_config_protocol(entry: dict[str, Any]) -> None:
    config = entry.get("Config")
    if not config:
        return
    for key, value in config.items():
        if key.lower() == "protocol" and isinstance(value, str):
            config[key] = value.lower()


def _normalize_sources(entry: dict[str, Any]) -> None:
    """Intention sources: Type defaults to consul, Precedence is always recomputed (client
    values are ignored, §A.4), and sources are stable-sorted by precedence, highest first."""
    sources = entry.get("Sources")
    if not sources:
        return
    for i, source in enumerate(sources):
        source["Type"] = source.get("Type") or DEFAULT_SOURCE_TYPE
        source["Precedence"] = precedence(source.get("Name", ""), entry["Name"])
        sources[i] = _in_schema_order(source, SOURCE_SCHEMA)
    sources.sort(key=lambda source: -source["Precedence"])
