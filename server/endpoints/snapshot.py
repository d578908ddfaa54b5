"""Snapshot save and restore: Consul's `GET|PUT /v1/snapshot` (the Snapshot endpoint group).

Save. Consul forwards a save to the leader unless `?stale`; here a non-stale save first commits a
Raft barrier and then reads this server's state, which is then at least as fresh as the leader's
at the moment of the request: the same guarantee, without shipping megabytes over server RPC.
The state is copied under the state machine's apply lock, so the file is one point in time even
under write load; encoding and hashing run in a worker thread, off the event loop.

Restore. The whole file is checked here first (frame, checksum, version, tables, every record),
so a corrupt or incompatible backup is a 400 before anything reaches the log. It then goes through
Raft as chunk commands and one commit (fsm/restore.py explains why not one entry), so every
server of the datacenter takes it and it survives restarts like any write. The state machine
checks the assembled file again: a restore that fails there changes nothing either.

Who may: both need a token with `acl:write`, as Consul's SnapshotAllowed asks, because a backup
holds every ACL token's secret and the CA's private keys: reading one is as strong as management.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any, Protocol

import grpc

from meshfed.fsm import Command, Result
from meshfed.fsm.machine_data import parse_machine_data
from meshfed.fsm.restore import SnapshotRestoreChunk, SnapshotRestoreCommit, chunk_commands
from meshfed.fsm.snapshot_format import BackupError, decode_backup, encode_backup, state_index
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import RPCError, invalid
from meshfed.server.endpoints.writes import raise_for
from meshfed.server.raft.types import RaftError

# Chunk proposals in flight at once: enough to fill the group commit's two in-flight batches
# (two chunks each), few enough that a failing restore stops quickly.
CHUNK_WINDOW = 4
PROPOSE_ATTEMPTS = 4
RETRY_DELAY = 0.2


class SnapshotRaft(Protocol):
    """What save and restore need from Raft: proposals (for the chunks), a barrier (for a
    non-stale save) and the current term (for the file's metadata)."""

    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = ...) -> list[Result]: ...

    async def barrier(self, timeout: float = ...) -> int: ...


class SnapshotSource(Protocol):
    def snapshot_data(self) -> dict[str, Any]: ...


def _version() -> str:
    try:
        return metadata.version("meshfed")
    except metadata.PackageNotFoundError:
        return "unknown"


def check_backup(blob: bytes) -> dict[str, Any]:
    """Everything a restore will check, before anything is proposed; returns the backup's meta.

    Raises:
        RPCError: INVALID_ARGUMENT naming the problem (HTTP 400).
    """
    try:
        backup = decode_backup(blob)
        parse_machine_data(backup.machine)
        StateStore().load(backup.machine["tables"])  # every record, as the state machine will
    except (BackupError, ValueError) as exc:
        raise invalid(f"snapshot restore refused: {exc}") from None
    return {**backup.meta, "index": state_index(backup.machine), "sha256": backup.sha256}


class SnapshotEndpoint:
    def __init__(
        self,
        *,
        datacenter: str,
        machine: SnapshotSource,
        raft: SnapshotRaft,
        term: Callable[[], int],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._datacenter = datacenter
        self._machine = machine
        self._raft = raft
        self._term = term
        self._clock = clock
        self._sleep = sleep

    async def save(self, *, stale: bool) -> tuple[int, bytes]:
        """(the state's index, the backup file). Raises RPCError UNAVAILABLE without a leader
        (unless `stale`)."""
        if not stale:
            try:
                await self._raft.barrier()
            except RaftError as exc:
                raise RPCError(grpc.StatusCode.UNAVAILABLE, f"snapshot save needs a leader: {exc}") from None
        term = self._term()
        return await asyncio.to_thread(self._encode, term)

    def _encode(self, term: int) -> tuple[int, bytes]:
        data = self._machine.snapshot_data()
        index = state_index(data)
        meta = {"datacenter": self._datacenter, "index": index, "term": term, "created": self._clock(),
                "meshfed_version": _version()}
        return index, encode_backup(data, meta)

    async def restore(self, blob: bytes) -> int:
        """Replace the datacenter's state with the backup's; returns the index of the restore.

        Raises:
            RPCError: INVALID_ARGUMENT for a backup that is corrupt or incompatible (nothing changed),
                UNAVAILABLE when Raft could not take the chunks (nothing changed: a restore replaces
                the state only in its final commit).
        """
        await asyncio.to_thread(check_backup, blob)
        restore_id = uuid.uuid4().hex
        chunks, commit = chunk_commands(restore_id, blob)
        try:
            # Chunk 0 opens the staging on every replica; the rest may then arrive in any order.
            await self._propose(f"{restore_id}/0", chunks[0])
            await self._send_rest(restore_id, chunks)
            result = await self._propose(f"{restore_id}/commit", commit)
        except BaseException:
            # Safe whatever happened: an abort matches only this upload's staging, and a commit
            # that did land has cleared it already.
            await self._abandon(restore_id, commit.total)
            raise
        return int(result.value)

    async def _send_rest(self, restore_id: str, chunks: Sequence[SnapshotRestoreChunk]) -> None:
        window = asyncio.Semaphore(CHUNK_WINDOW)

        async def send(seq: int) -> None:
            async with window:
                await self._propose(f"{restore_id}/{seq}", chunks[seq])

        tasks = [asyncio.ensure_future(send(seq)) for seq in range(1, len(chunks))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _abandon(self, restore_id: str, total: int) -> None:
        """Best effort: drop the staged chunks of a failed upload on every replica. If this fails
        too, they stay staged until the next restore replaces them."""
        abort = SnapshotRestoreCommit(restore_id, total, "", abort=True)
        try:
            await self._raft.apply([(f"{restore_id}/abort", abort)], timeout=5.0)
        except RaftError:
            pass

    async def _propose(self, rid: str, command: Command) -> Result:
        """Propose with retries under the same request id (the state machine applies it once)."""
        for attempt in range(1, PROPOSE_ATTEMPTS + 1):
            try:
                (result,) = await self._raft.apply([(rid, command)], timeout=30.0)
                return raise_for(result)
            except RaftError as exc:
                if attempt == PROPOSE_ATTEMPTS:
                    raise RPCError(grpc.StatusCode.UNAVAILABLE, f"snapshot restore: Raft did not take "
                                   f"{type(command).__name__} {rid} ({exc}); retry the restore") from None
                await self._sleep(RETRY_DELAY * attempt)
        raise AssertionError("unreachable")
