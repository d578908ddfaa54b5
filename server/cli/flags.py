"""The ``meshfed agent`` command-line flags, in Consul's single-dash style.

Flags are a thin layer over ``server.config``: each one maps to a config key, and only the flags
actually given become overrides, so a default here can never silently replace a value from a file.
Type and value checks stay in ``server.config`` (where every error message lives); the only checks
made here are the ones argparse does for numbers and the existence of ``-config-dir`` directories.

``-config-file`` and ``-config-dir`` share one ordered list, so files are merged in the order the
operator wrote them, as Consul does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshfed.server.config import COMMAND_LINE, CONFIG_EXTENSIONS, ConfigError
from meshfed.server.config.key_file import read_key_file


class _ConfigSource(argparse.Action):
    """Appends ``(kind, path)`` to one shared list so files and directories keep their order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        sources = list(getattr(namespace, self.dest, None) or [])
        sources.append((self.const, values))
        setattr(namespace, self.dest, sources)


# (flag, config key path, value type, repeatable, metavar, help)
_VALUE_FLAGS: tuple[tuple[str, tuple[str, ...], type, bool, str, str], ...] = (
    ("node", ("node_name",), str, False, "NAME", "node name (default: short host name)"),
    ("datacenter", ("datacenter",), str, False, "DC", "datacenter of this server (default: dc1)"),
    ("primary-datacenter", ("primary_datacenter",), str, False, "DC", "the primary datacenter"),
    ("bind", ("bind_addr",), str, False, "ADDR", "address the Raft and RPC ports bind to"),
    ("advertise", ("advertise_addr",), str, False, "ADDR", "address other servers dial"),
    ("client", ("client_addr",), str, False, "ADDR", "address the HTTP API listens on"),
    ("data-dir", ("data_dir",), str, False, "DIR", "directory for the Raft journal and snapshots"),
    ("encrypt", ("encrypt",), str, False, "KEY", "cluster key; visible in `ps`, prefer -encrypt-file"),
    ("bootstrap-expect", ("bootstrap_expect",), int, False, "N", "number of servers in this datacenter"),
    ("retry-join", ("retry_join",), str, True, "ADDR", "another server, host or host:port (repeatable)"),
    ("http-port", ("ports", "http"), int, False, "N", "HTTP API port (default 8500)"),
    ("server-port", ("ports", "server"), int, False, "N", "server RPC port (default 8300)"),
    ("raft-port", ("ports", "raft"), int, False, "N", "Raft port (default 8301)"),
    ("domain", ("domain",), str, False, "DOMAIN", "domain of TLS server names (default consul)"),
    (
        "primary-gateway",
        ("primary_gateways",),
        str,
        True,
        "ADDR",
        "a primary mesh gateway, host:port (repeatable)",
    ),
    ("log-level", ("log_level",), str, False, "LEVEL", "trace, debug, info, warn or error"),
)


def _dest(flag: str) -> str:
    return flag.replace("-", "_")


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the agent flags to ``parser`` (a sub-command parser of the ``meshfed`` CLI, say).

    Create that parser with ``allow_abbrev=False``: single-dash long flags plus abbreviation would
    let ``-data`` silently mean ``-data-dir``.
    """
    parser.add_argument(
        "-server", "--server", action="store_true", default=None, help="run as a server (always)"
    )
    parser.add_argument(
        "-dev", "--dev", action="store_true", default=False, help="single in-memory dev server"
    )
    for kind in ("file", "dir"):
        parser.add_argument(
            f"-config-{kind}",
            f"--config-{kind}",
            dest="config_sources",
            action=_ConfigSource,
            const=kind,
            metavar=kind.upper(),
            help=f"config {'file (.hcl or .json)' if kind == 'file' else 'directory of *.hcl/*.json'} (repeatable)",
        )
    parser.add_argument(
        "-encrypt-file",
        "--encrypt-file",
        dest="encrypt_file",
        default=None,
        metavar="FILE",
        help="file holding the cluster key, mode 0600 (`meshfed keygen > FILE`)",
    )
    for flag, _, value_type, repeatable, metavar, help_text in _VALUE_FLAGS:
        parser.add_argument(
            f"-{flag}",
            f"--{flag}",
            dest=_dest(flag),
            type=value_type,
            action="append" if repeatable else "store",
            default=None,
            metavar=metavar,
            help=help_text,
        )


def build_agent_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for ``meshfed agent``; abbreviations are off so ``-d`` is never guessed."""
    parser = argparse.ArgumentParser(
        prog="meshfed agent", description="Run a meshfed server.", allow_abbrev=False
    )
    add_agent_arguments(parser)
    return parser


def _config_files(sources: Sequence[tuple[str, str]]) -> list[str]:
    files: list[str] = []
    for kind, path in sources:
        if kind == "file":
            files.append(path)
            continue
        directory = Path(path)
        if not directory.is_dir():
            raise ConfigError(COMMAND_LINE, "-config-dir", f"{path!r} is not a directory")
        files.extend(
            str(entry)
            for entry in sorted(directory.iterdir(), key=lambda entry: entry.name)
            if entry.suffix.lower() in CONFIG_EXTENSIONS and entry.is_file()
        )
    return files


def config_files(ns: argparse.Namespace) -> list[str]:
    """The files of ``-config-file`` and ``-config-dir``, listed now: reload calls it again, so that
    a file added to a directory since the start is read."""
    return _config_files(getattr(ns, "config_sources", None) or [])


def agent_overrides(ns: argparse.Namespace) -> tuple[list[str], dict[str, Any], bool]:
    """Turn parsed flags into ``(config files, overrides in config-key form, dev)`` for ``config.load``.

    Raises:
        ConfigError: when a ``-config-dir`` is not a directory, or ``-encrypt-file`` is unusable or
            given together with ``-encrypt``.
    """
    overrides: dict[str, Any] = {}
    if getattr(ns, "server", None) is not None:
        overrides["server"] = ns.server
    for flag, key_path, _, _, _, _ in _VALUE_FLAGS:
        value = getattr(ns, _dest(flag), None)
        if value is None:
            continue
        target = overrides
        for part in key_path[:-1]:
            target = target.setdefault(part, {})
        target[key_path[-1]] = list(value) if isinstance(value, list) else value
    key_file = getattr(ns, "encrypt_file", None)
    if key_file is not None:
        if "encrypt" in overrides:
            raise ConfigError(COMMAND_LINE, "encrypt", "-encrypt and -encrypt-file both given; accepted: one of them")
        overrides["encrypt"] = read_key_file(key_file)
    return config_files(ns), overrides, bool(getattr(ns, "dev", False))
