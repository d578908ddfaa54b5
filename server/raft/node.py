"""The Raft node: drives PySyncObj (only the server/raft package imports it).

States: a node is created (port bound, journal and snapshot loaded on the first tick), then runs
its own tick thread until `stop()`. It is a follower, candidate or leader as PySyncObj decides;
leadership changes are handed to the event loop through `on_leadership`.

What this adapter adds to the library (reference/pysyncobj.md §6):
- safety: the cluster key is mandatory (the port speaks pickle); apply never raises (the state
  machine returns error values, and a last-resort guard here turns anything else into one);
  a follower neither drops entries it acknowledged nor commits entries no leader message anchored,
  e.g. on a snapshot chunk (server/raft/log_matching.py);
- durability: no forked dump writer, fsynced snapshots, a dump-loading step that keeps the journal
  tail, crash-safe journal compaction (server/raft/storage.py); by default an acknowledgement
  means applied on the leader and synced to the disk of a majority (server/raft/durability.py,
  `raft_journal_sync`); a full disk refuses writes instead of killing the process;
- a bounded frame size on the Raft port, checked before decryption (server/raft/transport.py);
- latency and throughput: `appendEntriesUseBatch=False` (sub-millisecond commits) plus group
  commit: proposals arriving while `MAX_INFLIGHT_BATCHES` entries are in flight are packed into the
  next log entry, each command keeping its own result;
- leadership truth: tuned timeouts, a short `leaderFallbackTimeout`, the time of the last message
  from the leader (for KnownLeader/LastContact), and barriers for consistent reads.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pysyncobj import SyncObjConf
from pysyncobj.config import FAIL_REASON
from pysyncobj.monotonic import monotonic as library_clock

from meshfed.fsm import Command, Noop, Result, StateMachine, encode_entry, join_entries
from meshfed.server.raft import storage as raft_storage
from meshfed.server.raft.changes import MAYBE_APPLIED, NOT_APPLIED, MembershipOps
from meshfed.server.raft.durability import JOURNAL_SYNC_INTERVAL, SYNC_ALWAYS, SYNC_INTERVAL, DiskFullError
from meshfed.server.raft.status import NodeStatus
from meshfed.server.raft.syncobj import FsmConsumer, GuardedSyncObj
from meshfed.server.raft.trace import TRACE
from meshfed.server.raft.transport import REPLICATION_CHUNK_BYTES, GuardedTransport
from meshfed.server.raft.types import RaftError, RaftTimings

log = logging.getLogger(__name__)

TICK_PERIOD = 0.05  # poll timeout of the tick loop; commits wake it earlier through a pipe
DEADLINE_MARGIN = 0.0005  # wake just after the election deadline, so the check finds it passed


def tick_wait(now: float, deadline: float, waiting_for_election: bool) -> float:
    """How long one tick may sleep in its poll. A follower or candidate sleeps no later than its
    own election deadline: the fixed period is phase-locked to the leader's heartbeats on every
    follower, so once the leader died all of them checked their deadlines at the same instants,
    and two deadlines in one period made two candidates at once (a split vote costs another
    election timeout). Waking at its own random deadline, the first candidate's request reaches
    the others while they sleep, and they vote for it."""
    if not waiting_for_election or deadline <= now:
        # Overdue: the check at the start of this very tick stands for election (or cannot, with
        # no peer connected); either way its poll must not spin.
        return TICK_PERIOD
    return min(TICK_PERIOD, deadline - now + DEADLINE_MARGIN)
MAX_INFLIGHT_BATCHES = 2
MAX_BATCH_COMMANDS = 256
MAX_BATCH_BYTES = 48 * 1024
# A batch whose commit callback never came back (PySyncObj gives async calls no timeout, issue
# #75) stops holding a group-commit slot after this long. Callers wait 5 s by default, so by then
# nobody waits for it; a slot held longer would only stall every later proposal on this node.
LOST_BATCH_TIMEOUT = 10.0
DEFAULT_TIMINGS = RaftTimings()
DNS_CACHE_TIME = 5.0
DNS_FAIL_CACHE_TIME = 1.0  # stay clear of PySyncObj's 64 KiB chunking edge (reference §3)

FAILED_AFTER_MIN = 1.0  # seconds
FAILED_AFTER_ELECTIONS = 3  # election timeouts of silence before a member is reported failed


class RaftNode(NodeStatus, MembershipOps):
    """One Raft member. Thread model: PySyncObj state is touched only by our tick thread;
    asyncio callers go through `apply`/`barrier`, whose completions come back with
    `loop.call_soon_threadsafe`. Nothing on the event loop ever blocks on Raft.
    """

    def __init__(
        self,
        *,
        self_address: str,
        peers: Sequence[str],
        machine: StateMachine,
        cluster_key: str,
        data_dir: str | None,
        timings: RaftTimings = DEFAULT_TIMINGS,
        snapshot_threshold: int = 8192,
        snapshot_interval: float = 300.0,
        on_leadership: Callable[[bool], None] | None = None,
        on_applied: Callable[[int, int], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_fatal: Callable[[str], None] | None = None,
        bind_address: str | None = None,
        sync_mode: str = SYNC_ALWAYS,
        quiet_start: float = 0.0,
    ) -> None:
        if not cluster_key:
            raise ValueError("a cluster key is required: the Raft port speaks pickle")
        self.self_address = self_address
        raft_dir = os.path.join(data_dir, "raft") if data_dir else None
        saved = self.saved_members(data_dir)
        if saved is not None:
            # The membership this server last applied wins over the configured peers: after a
            # live change the config no longer says who the members are.
            if sorted(set(saved) - {self_address}) != sorted(set(peers) - {self_address}):
                log.info("raft: starting with the saved members %s (not the configured peers)", ",".join(saved))
            peers = saved
        initial_peers = [p for p in peers if p != self_address]
        # Silence after which a member counts as failed: several missed heartbeat rounds, and more
        # than an election takes, so a slow tick does not flap it.
        self.failed_after = max(FAILED_AFTER_MIN, FAILED_AFTER_ELECTIONS * timings.election_max)
        self._machine = machine
        self._on_leadership = on_leadership
        self._on_batch = on_batch
        self._on_fatal = on_fatal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_errors = 0
        self._tick_calls: collections.deque[Callable[[], None]] = collections.deque()  # run on the tick thread
        # Proposals not yet in a log entry: (request id, the command encoded once, its future).
        self._pending: list[tuple[str, bytes, asyncio.Future[Result]]] = []
        self._inflight: dict[int, tuple[float, list[asyncio.Future[Result]]]] = {}
        self._batch_ids = itertools.count(1)
        self._flush_scheduled = False
        # While a leadership transfer is under way, new proposals wait (monotonic deadline): an
        # entry appended after TimeoutNow leaves the target's log behind and voters refuse it.
        self._hold_until = 0.0
        self.snapshot_index = 0
        self.snapshot_bytes = 0
        self.snapshots_written = 0
        self.tick_stalls = 0
        self.longest_tick = 0.0
        self._stall_after = timings.election_min / 2
        self._snapshot_time = time.monotonic()

        journal_path = dump_path = None
        if raft_dir:
            os.makedirs(raft_dir, exist_ok=True)
            journal_path = os.path.join(raft_dir, "journal")
            dump_path = os.path.join(raft_dir, "snapshot")
        self._snapshots = raft_storage.SnapshotWriter(
            dump_path or "",
            machine.snapshot_capture,
            machine.restore_data,
            on_written=self._snapshot_written,
        )
        self._consumer = FsmConsumer(machine, on_applied or (lambda index, count: None))
        conf = SyncObjConf(
            password=cluster_key,
            autoTick=False,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=timings.heartbeat,
            # Both bound the largest frame a peer sends (server/raft/transport.py MAX_FRAME_BYTES).
            appendEntriesBatchSizeBytes=REPLICATION_CHUNK_BYTES,
            logCompactionBatchSize=REPLICATION_CHUNK_BYTES,
            raftMinTimeout=timings.election_min,
            raftMaxTimeout=timings.election_max,
            leaderFallbackTimeout=timings.leader_fallback,
            connectionTimeout=timings.connection_timeout,
            connectionRetryTime=timings.connection_retry,
            journalFile=journal_path,
            fullDumpFile=dump_path,
            serializer=self._snapshots.serialize if dump_path else None,
            deserializer=self._snapshots.deserialize if dump_path else None,
            serializeChecker=self._snapshots.check if dump_path else None,
            logCompactionMinEntries=snapshot_threshold,  # jittered below
            logCompactionMinTime=snapshot_interval,
            dynamicMembershipChange=True,  # server/raft/membership.py
            onStateChanged=self._state_changed,
            bindAddress=bind_address,
            # Peers named by DNS (e.g. Kubernetes pods) get new addresses on restart; the library's
            # default caches a resolution for 600 s, leaving peers dialing dead IPs that long.
            dnsCacheTime=DNS_CACHE_TIME,
            dnsFailCacheTime=DNS_FAIL_CACHE_TIME,
            maxBindRetries=3,
            bindRetryTime=0.5,
        )
        self._conf, self._snapshot_every, self._rng = conf, (snapshot_threshold, snapshot_interval), random.Random()
        self._jitter_snapshots()
        self._sync = GuardedSyncObj(
            self_address, initial_peers, conf, consumers=[self._consumer], journal_path=journal_path,
            sync_mode=sync_mode, transportClass=GuardedTransport,
        )
        self._guard = self._sync.meshfed_guard
        self._sync.meshfed_raft_dir = raft_dir
        self._sync.meshfed_check_add = self._addition_refusal
        if quiet_start > 0:
            # A server that just joined, or restarts with its log, waits for the leader's first
            # heartbeat instead of starting an election (server/agent.py says why each).
            self._sync._SyncObj__raftElectionDeadline = library_clock() + quiet_start  # the library's clock
        if journal_path:
            raft_storage.make_compaction_safe(self._sync._SyncObj__raftLog, journal_path)
        if TRACE is not None:
            TRACE.record("start", raft=self_address, pid=os.getpid())

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="raft-tick", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_sync = time.monotonic() + JOURNAL_SYNC_INTERVAL
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                sync = self._sync
                self._sync.doTick(tick_wait(library_clock(), sync._SyncObj__raftElectionDeadline,
                                            not sync._isLeader()))
                while self._tick_calls:
                    self._tick_calls.popleft()()
            except Exception:
                if self._sync.meshfed_fatal:
                    log.error("raft: %s", self._sync.meshfed_fatal)
                    if self._on_fatal is not None and self._loop is not None:
                        self._loop.call_soon_threadsafe(self._on_fatal, self._sync.meshfed_fatal)
                    break
                self._tick_errors += 1
                if self._tick_errors in (1, 10, 100) or self._tick_errors % 1000 == 0:
                    log.exception("raft tick failed (%d times so far)", self._tick_errors)
                time.sleep(TICK_PERIOD)
            now = time.monotonic()
            self._tick_took(now - started)
            if now >= next_sync and self._guard.mode == SYNC_INTERVAL:
                next_sync = now + JOURNAL_SYNC_INTERVAL
                self._sync_journal()
        self._sync_journal()
        self._sync.destroy()
        self._guard.close()

    def _tick_took(self, seconds: float) -> None:
        """A tick longer than half the election timeout means heartbeats went out late (the GIL
        held elsewhere, a slow disk): the cause of an election nobody asked for shows here first."""
        if seconds > self._stall_after:
            self.tick_stalls += 1
            self.longest_tick = max(self.longest_tick, seconds)

    def _sync_journal(self) -> None:
        try:
            self._sync.meshfed_sync()
        except (OSError, ValueError):
            pass  # logged by the guard; the next sync retries

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- proposals (event loop side) --------------------------------------------------------------

    async def apply(self, commands: Sequence[tuple[str, Command]], timeout: float = 5.0) -> list[Result]:
        """Propose commands (request_id, command); returns one Result each, in order.

        Raises RaftError on failure or timeout; `maybe_applied` tells whether a retry must reuse
        the same request ids (the state machine applies a request id once).
        """
        loop = asyncio.get_running_loop()
        futures = []
        encoded = [(request_id, encode_entry(request_id, command)) for request_id, command in commands]
        for request_id, item in encoded:
            future: asyncio.Future[Result] = loop.create_future()
            self._pending.append((request_id, item, future))
            futures.append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)  # let proposals from the same loop iteration join this batch
        gathered = asyncio.gather(*futures)
        # A proposer cancelled while waiting (a leader routine stopping) leaves the gather
        # holding a CancelledError nobody reads; read it so asyncio does not log it as lost.
        gathered.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            return list(await asyncio.wait_for(gathered, timeout))
        except TimeoutError:
            raise RaftError("timed out waiting for the raft commit", maybe_applied=True) from None

    async def barrier(self, timeout: float = 5.0) -> int:
        """Commit a no-op through the log; once it returns, local state is at least that fresh."""
        (result,) = await self.apply([("", Noop())], timeout)
        return int(result.value or 0)

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = self._loop or asyncio.get_running_loop()
        held = self._hold_until - time.monotonic()
        if held > 0:
            self._flush_scheduled = True
            loop.call_later(held, self._flush)
            return
        self._expire_lost_batches()
        while self._pending and len(self._inflight) < MAX_INFLIGHT_BATCHES:
            batch = self._take_batch()
            payload = join_entries([item for _, item, _ in batch])
            try:
                self._guard.reserve(len(payload))
            except DiskFullError as exc:
                refused = RaftError(
                    f"write refused: {exc.strerror}; free space in the data directory", False, disk_full=True
                )
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(refused)
                continue
            batch_id = next(self._batch_ids)
            started = time.perf_counter()
            self._inflight[batch_id] = (started, [f for _, _, f in batch])

            def done(results: Any, error: int, batch_id: int = batch_id) -> None:
                if TRACE is not None:
                    self._trace_commit(batch_id, error)
                if error == FAIL_REASON.SUCCESS:
                    self._guard.trace("ack", self._sync.raftCommitIndex)
                loop.call_soon_threadsafe(self._complete, batch_id, results, error)

            if TRACE is not None:
                TRACE.record("propose", batch=batch_id, rids=[rid for rid, _, _ in batch])

            self._consumer.apply_batch(payload, callback=done)

    def _trace_commit(self, batch_id: int, error: int) -> None:
        """On the tick thread: a SUCCESS or DISCARDED callback fires while its entry is applied,
        before the library counts it, so `raftLastApplied + 1` is that entry's index."""
        assert TRACE is not None
        sync = self._sync
        index = sync.raftLastApplied + 1
        TRACE.record("commit", batch=batch_id, error=int(error), index=index, term=sync._term_at(index),
                     current_term=sync.raftCurrentTerm, commit=sync.raftCommitIndex, leader=sync._isLeader())

    def _expire_lost_batches(self) -> None:
        now = time.perf_counter()
        for batch_id, (started, futures) in list(self._inflight.items()):
            if now - started > LOST_BATCH_TIMEOUT:
                del self._inflight[batch_id]
                log.error("raft: no commit callback for a batch after %.0fs; releasing its slot", now - started)
                exc = RaftError("commit outcome lost", maybe_applied=True)
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)

    def _take_batch(self) -> list[tuple[str, bytes, asyncio.Future[Result]]]:
        """The oldest pending proposals that fit one entry (at least one, whatever its size)."""
        size, count = 3, 0  # the payload's array header takes up to 3 bytes (join_entries)
        for _, item, _ in self._pending[:MAX_BATCH_COMMANDS]:
            size += len(item)
            if count and size > MAX_BATCH_BYTES:
                break
            count += 1
        batch = self._pending[:count]
        del self._pending[:count]
        return batch

    def _complete(self, batch_id: int, results: Any, error: int) -> None:
        entry = self._inflight.pop(batch_id, None)
        if entry is None:
            return  # expired as lost; its callers were already answered
        started, futures = entry
        if self._on_batch is not None:
            self._on_batch(len(futures), time.perf_counter() - started)
        if error == FAIL_REASON.SUCCESS and isinstance(results, list) and len(results) == len(futures):
            for future, result in zip(futures, results, strict=True):
                if not future.done():
                    future.set_result(result)
        else:
            if error == FAIL_REASON.SUCCESS:
                exc = RaftError("state machine returned a malformed batch result", maybe_applied=True)
            elif error in NOT_APPLIED:
                exc = RaftError(NOT_APPLIED[error], maybe_applied=False)
            elif error in MAYBE_APPLIED:
                exc = RaftError(MAYBE_APPLIED[error], maybe_applied=True)
            else:
                exc = RaftError(f"leadership changed during commit (reason {error})", maybe_applied=True)
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        if self._pending:
            self._flush()

    # ---- callbacks from the tick thread ----------------------------------------------------------

    def _state_changed(self, old: int, new: int) -> None:
        was_leader, is_leader = old == 2, new == 2
        if was_leader != is_leader and self._on_leadership is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_leadership, is_leader)

    def _jitter_snapshots(self) -> None:
        """The library reads these on every tick, so a new draw applies to the next snapshot."""
        entries, seconds = raft_storage.jittered_schedule(*self._snapshot_every, self._rng)
        self._conf.logCompactionMinEntries, self._conf.logCompactionMinTime = entries, seconds

    def _snapshot_written(self, index: int, size: int) -> None:
        self._jitter_snapshots()
        self.snapshots_written += 1
        self.snapshot_index = index
        self.snapshot_bytes = size
        self._snapshot_time = time.monotonic()
        log.info("raft: snapshot at index %d written (%d bytes)", index, size)
