"""Registering the service definitions of the config files (`service { ... }`, config/services.py)
on this server's own node, at start and at every reload, as Consul's agent does.

Each definition goes through the one registration path the HTTP endpoint uses
(server/http/agent_registration.py). The set applied is tracked by ID, as Consul tracks which
services came from files: a reload registers new definitions, re-registers changed ones and
deregisters those gone from the files, and never touches a service a client registered over HTTP.
The catalog is in Raft, so it outlives a restart; the IDs that came from files are kept in the data
dir too, so that a definition removed while the server was down is deregistered at the next start.

Writes need a leader: a write that fails for want of one (at start, during an election) is retried
until it lands. A write the cluster refuses for another reason is logged and not retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server.config.services import ServiceDefinition
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.http.agent_registration import deregister_service, register_service
from meshfed.server.http.decode import DecodeError
from meshfed.server.http.params import BadRequest

log = logging.getLogger("meshfed.service_definitions")

STATE_FILE = "service-definitions.json"
RETRY_DELAY = 0.5  # seconds between attempts while there is no leader
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED)


class ServiceDefinitions:
    """The file-defined services of this server, and the registrations last applied for them."""

    def __init__(self, agent: AgentServices, *, token: str, data_dir: str | None,
                 ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self._agent = agent
        # Awaited before the first apply: until this replica has applied what the leader committed,
        # it does not know the sidecar ports already given out or which services exist.
        self._ready = ready
        self._token = token  # acl.tokens.default, for definitions without a `token` of their own
        self._path = Path(data_dir) / STATE_FILE if data_dir else None
        self._applied: dict[str, dict[str, Any]] = {}  # ID -> registration, as registered by this process
        self._from_files: set[str] = self._read_ids()
        self._lock = asyncio.Lock()  # a reload during the start's retries waits for them

    def _read_ids(self) -> set[str]:
        if self._path is None or not self._path.exists():
            return set()
        try:
            return {str(i) for i in json.loads(self._path.read_text(encoding="utf-8"))["ids"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("service definitions: cannot read %s (%s); no earlier definitions are removed", self._path, exc)
            return set()

    def _write_ids(self) -> None:
        if self._path is None:
            return
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps({"ids": sorted(self._from_files)}), encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError as exc:
            log.warning("service definitions: cannot write %s (%s)", self._path, exc)

    def _header(self, registration: dict[str, Any] | None = None) -> RequestHeader:
        token = (registration or {}).get("Token") or self._token
        return RequestHeader(token=str(token))

    async def _until_written(self, what: str, write: Any) -> bool:
        """Run `write()` until it lands; False when it was refused for a reason other than no leader."""
        waited = False
        while True:
            try:
                await write()
                return True
            except RPCError as exc:
                if not (exc.transport or exc.code in RETRYABLE):
                    log.error("service definitions: %s refused: %s", what, exc.message)
                    return False
                if not waited:
                    log.info("service definitions: %s waits for a leader (%s)", what, exc.message)
                    waited = True
            except (BadRequest, DecodeError) as exc:
                log.error("service definitions: %s refused: %s", what, exc)
                return False
            await asyncio.sleep(RETRY_DELAY)

    async def apply(self, definitions: tuple[ServiceDefinition, ...]) -> None:
        """Make the node's file-defined services match `definitions`."""
        async with self._lock:
            if self._ready is not None:
                await self._ready()
                self._ready = None
            wanted = {d.service_id: d for d in definitions}
            registered, removed, kept = [], [], set()
            for service_id, definition in wanted.items():
                if self._applied.get(service_id) == definition.registration:
                    continue
                where = f"{service_id!r} ({definition.source}: {definition.key})"
                if await self._until_written(f"registering {where}", lambda d=definition: register_service(
                        self._agent, self._header(d.registration), d.registration)):
                    self._applied[service_id] = definition.registration
                    registered.append(service_id)
            for service_id in sorted(self._from_files - set(wanted)):
                self._applied.pop(service_id, None)
                if self._agent.service(service_id) is None:
                    continue
                if await self._until_written(f"deregistering {service_id!r}", lambda i=service_id: deregister_service(
                        self._agent, self._header(), i)):
                    removed.append(service_id)
                else:
                    kept.add(service_id)  # still from a file: the next reload tries again
            self._from_files = set(wanted) | kept
            self._write_ids()
        if registered or removed:
            log.info("service definitions: registered %s; deregistered %s",
                     ", ".join(registered) or "none", ", ".join(removed) or "none")


async def caught_up(status: Callable[[], Any]) -> None:
    """Until there is a leader and this replica has applied every entry it knows committed
    (`status` is the Raft node's: `leader`, `commit_index`, `last_applied`)."""
    while True:
        now = status()
        if now.leader and now.last_applied >= now.commit_index:
            return
        await asyncio.sleep(0.2)
