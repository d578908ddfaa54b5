"""Loading the agent configuration: read each file, flatten it to dotted keys, merge, then check.

A configuration moves through four stages, each of which can fail with a ``ConfigError`` that names
the file (or "command line"), the dotted key and what would have been accepted:

1. read: each file is parsed as HCL or JSON, chosen by its extension;
2. flatten: nested blocks become dotted keys (``ports.http``); unknown keys are refused here, while
   we still know which file they came from, and each value is converted to its type (``schema.py``);
3. merge: files in order, then command-line overrides; later sources win, except ``retry_join``,
   ``primary_gateways`` and the service definitions (``service``/``services``, ``services.py``),
   which are concatenated (as Consul does for list-valued keys);
4. check: rules that involve several keys (cluster key, peer count, TLS, WAN federation) run on the
   merged result, and the peers are normalised to ``host:port`` (``checks.py``).

Consul's key names are kept so that operators can reuse what they know (DESIGN.md §11). meshfed has
no gossip layer, so ``retry_join`` is the static Raft peer list rather than a discovery hint, and
``encrypt`` is mandatory (``cluster_key.py`` says why).
"""

from __future__ import annotations

import difflib
import json
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hcl

from meshfed.server.config.checks import check
from meshfed.server.config.cluster_key import generate_key
from meshfed.server.config.errors import COMMAND_LINE, DEFAULTS, ConfigError
from meshfed.server.config.schema import (
    BLOCKS,
    CONCATENATED,
    SCHEMA,
    SECTIONS,
    UNUSED_BLOCKS,
    UNUSED_KEYS,
    show_value,
    target,
)
from meshfed.server.config.services import SERVICE_KEYS, check_definitions, convert_definitions
from meshfed.server.config.settings import (
    ACLConfig,
    ACLTokens,
    Config,
    ConnectConfig,
    Ports,
    TelemetryConfig,
    TLSConfig,
)

# Callers written before the package was split import these names from this module; new code
# imports them from ``meshfed.server.config``.
__all__ = ["COMMAND_LINE", "CONFIG_EXTENSIONS", "Config", "ConfigError", "generate_key", "load"]

CONFIG_EXTENSIONS = (".hcl", ".json")


def _read_file(path: str) -> Mapping[str, Any]:
    extension = Path(path).suffix.lower()
    if extension not in CONFIG_EXTENSIONS:
        raise ConfigError(path, "", "unsupported file extension; accepted: .hcl or .json")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, "", f"cannot read the file: {error}") from None
    try:
        raw = hcl.loads(text) if extension == ".hcl" else json.loads(text)
    except Exception as error:  # pyhcl raises assorted types for syntax errors
        raise ConfigError(path, "", f"not valid {extension[1:].upper()}: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "the top level must be an object of keys")
    return raw


def _flatten(raw: Mapping[str, Any], source: str, unused: set[str], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted key, typed value)`` in document order, refusing unknown keys and bad values.
    Consul keys meshfed does not use are added to ``unused`` instead (one warning names them all)."""
    for name, value in raw.items():
        key = f"{prefix}{name}"
        if not prefix and name in SERVICE_KEYS:
            yield "services", convert_definitions(value, source, name)
        elif "." not in str(name) and (key in UNUSED_KEYS or key in UNUSED_BLOCKS):
            unused.add(key)
        elif key in BLOCKS and "." not in str(name):
            # pyhcl returns a repeated block (`connect {}` twice) as a list of dicts; later ones win.
            parts = value if isinstance(value, list) else [value]
            if not all(isinstance(part, dict) for part in parts):
                raise ConfigError(source, key, f"must be a block of keys, got {show_value(value)}")
            for part in parts:
                yield from _flatten(part, source, unused, key + ".")
        elif key in SCHEMA and "." not in str(name):
            try:
                yield key, SCHEMA[key](value)
            except ValueError as error:
                raise ConfigError(source, key, str(error)) from None
        else:
            known_keys = (*SCHEMA, *BLOCKS, *UNUSED_KEYS, *UNUSED_BLOCKS, *SERVICE_KEYS)
            siblings = [known for known in known_keys if known.startswith(prefix)]
            close = difflib.get_close_matches(key, siblings, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(source, key, f"unknown key{hint}")


def _merge_into(merged: dict[str, tuple[Any, str]], raw: Mapping[str, Any], source: str, unused: set[str]) -> None:
    for key, value in _flatten(raw, source, unused):
        if key in CONCATENATED and key in merged:
            value = merged[key][0] + value
        merged[key] = (value, source)


def _default_node_name() -> str:
    return socket.gethostname().split(".", 1)[0]


def load(files: Sequence[str], overrides: Mapping[str, Any] | None = None, *, dev: bool = False) -> Config:
    """Read, merge and check the agent configuration.

    Args:
        files: config files, merged in order (later wins; ``retry_join``/``primary_gateways`` add up).
        overrides: command-line values in config-key form, nested like a file (``{"ports": {...}}``).
        dev: single throw-away server: a generated cluster key, no data_dir needed.

    Raises:
        ConfigError: naming the file (or "command line"), the dotted key and the reason.
    """
    merged: dict[str, tuple[Any, str]] = {}
    unused: set[str] = set()
    for path in files:
        _merge_into(merged, _read_file(path), path, unused)
    if overrides:
        _merge_into(merged, overrides, COMMAND_LINE, unused)
    if "node_name" not in merged:
        try:
            merged["node_name"] = (SCHEMA["node_name"](_default_node_name()), DEFAULTS)
        except ValueError as error:
            raise ConfigError(
                DEFAULTS, "node_name", f"the host name is unusable ({error}); set node_name"
            ) from None
    sections: dict[str, dict[str, Any]] = {name: {} for name in ("", *SECTIONS)}
    for key, (value, _) in merged.items():
        section, attribute = target(key)
        sections[section][attribute] = value
    config = Config(
        **sections[""],
        dev=dev,
        unused_keys=tuple(sorted(unused)),
        ports=Ports(**sections["ports"]),
        connect=ConnectConfig(**sections["connect"]),
        tls=TLSConfig(**sections["tls"]),
        telemetry=TelemetryConfig(**sections["telemetry"]),
        acl=ACLConfig(**sections["acl"], tokens=ACLTokens(**sections["acl.tokens"])),
    )
    fallback = ", ".join(files) if files else COMMAND_LINE

    def source_of(*keys: str) -> str:
        """Where the first of ``keys`` that was set came from; a missing value blames every file."""
        return next((merged[key][1] for key in keys if key in merged), fallback)

    config = check(config, source_of)
    check_definitions(config.services, config.node_name, config.datacenter)
    return config
