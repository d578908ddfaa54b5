"""`meshfed snapshot save|restore|inspect`: Consul's snapshot commands over `GET|PUT /v1/snapshot`.

`save` checks the downloaded file (frame, checksum, every table) before it keeps it, writes it
0600 (a backup holds every ACL secret and the CA's keys) through a temporary file and a rename, so
a failed save never leaves a truncated backup under the operator's name. `inspect` reads a file
locally, no server needed. Output follows Consul's CLI (`Saved and verified snapshot to index N`,
`Restored snapshot`, an aligned key/value list) so runbooks read the same.

`main.py` owns the address rules and hands in `http_addr` (`add_commands`), so this module does
not import the module that imports it.
"""

from __future__ import annotations

import argparse
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from meshfed.fsm.snapshot_format import BackupError, decode_backup, state_index, table_counts

HTTP_TIMEOUT = 300.0  # a restore of a large state commits hundreds of chunks


class SnapshotCommandError(Exception):
    """A failed snapshot command; main prints it like any CLI error."""


def _token(ns: argparse.Namespace) -> str:
    return getattr(ns, "token", None) or os.environ.get("CONSUL_HTTP_TOKEN") or ""


def _call(url: str, method: str, token: str, data: bytes | None = None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("X-Consul-Token", token)
    if data is not None:
        request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        message = exc.read().decode(errors="replace").strip() or exc.reason
        raise SnapshotCommandError(f"{method} /v1/snapshot: HTTP {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise SnapshotCommandError(f"cannot reach {url}: {exc.reason}") from None


def _write_private(path: str, blob: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SnapshotCommandError(f"cannot write {path}: {exc.strerror}") from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SnapshotCommandError(f"cannot read {path}: {exc.strerror}") from None


def cmd_save(ns: argparse.Namespace, base_url: str) -> int:
    url = base_url.rstrip("/") + "/v1/snapshot" + ("?stale" if ns.stale else "")
    _, blob = _call(url, "GET", _token(ns))
    try:
        backup = decode_backup(blob)
    except BackupError as exc:
        raise SnapshotCommandError(f"the server sent a snapshot that does not verify: {exc}") from None
    _write_private(ns.file, blob)
    print(f"Saved and verified snapshot to index {state_index(backup.machine)}")
    return 0


def cmd_restore(ns: argparse.Namespace, base_url: str) -> int:
    blob = _read(ns.file)
    _call(base_url.rstrip("/") + "/v1/snapshot", "PUT", _token(ns), blob)
    print("Restored snapshot")
    return 0


def inspect_lines(blob: bytes) -> list[str]:
    """What `inspect` prints for a backup file. Raises BackupError for a file that does not verify."""
    backup = decode_backup(blob)
    meta = backup.meta
    created = meta.get("created")
    when = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
            if isinstance(created, (int, float)) and not isinstance(created, bool) else "unknown")
    term = meta.get("term")
    fields: list[tuple[str, Any]] = [
        ("Datacenter", meta.get("datacenter", "unknown")),
        ("Index", state_index(backup.machine)),
        ("Term", term if isinstance(term, int) and term > 0 else "unknown"),
        ("Created", when),
        ("Version", meta.get("meshfed_version", "unknown")),
        ("Size", backup.size),
        ("Checksum", f"sha256:{backup.sha256}"),
    ]
    lines = [f" {label:<12} {value}" for label, value in fields]
    counts = table_counts(backup.machine)
    width = max(len(name) for name in counts)
    lines += ["", f" {'Table':<{width}}  Count", f" {'-' * width}  -----"]
    lines += [f" {name:<{width}}  {count}" for name, count in counts.items()]
    return lines


def cmd_inspect(ns: argparse.Namespace) -> int:
    try:
        lines = inspect_lines(_read(ns.file))
    except BackupError as exc:
        raise SnapshotCommandError(f"{ns.file}: {exc}") from None
    print("\n".join(lines))
    return 0


def add_commands(
    sub: Any, add_http_flags: Callable[[argparse.ArgumentParser], None],
    http_addr: Callable[[argparse.Namespace], str],
) -> None:
    """Register `snapshot ...` under the top-level sub-parsers `sub`."""
    actions = sub.add_parser("snapshot", help="save, restore and inspect backups of a datacenter's state")\
        .add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    save = actions.add_parser("save", help="save the state to FILE (needs a token with acl:write)")
    add_http_flags(save)
    save.add_argument("-stale", "--stale", action="store_true",
                      help="let any server answer from its own state (no leader needed)")
    save.add_argument("file", metavar="FILE")
    save.set_defaults(func=lambda ns: cmd_save(ns, http_addr(ns)))

    restore = actions.add_parser("restore", help="replace the datacenter's state with FILE's")
    add_http_flags(restore)
    restore.add_argument("file", metavar="FILE")
    restore.set_defaults(func=lambda ns: cmd_restore(ns, http_addr(ns)))

    inspect = actions.add_parser("inspect", help="print a backup file's index, term, size, checksum and tables")
    inspect.add_argument("file", metavar="FILE")
    inspect.set_defaults(func=cmd_inspect)
