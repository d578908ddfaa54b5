"""The agent's check runner: runs the TCP, HTTP and alias checks of this server's own node and
writes a check's new status through Raft (the `CheckUpdate` command, as TTL updates do).

Every server runs it for its own node, leader or not (a follower's proposal reaches the leader
through Raft, as the server's self-publication does). States of one check:

    registered --(first run: at once, or staggered over one interval at start)--> running
    running: probe, compare with the stored record, write only on a change, sleep one interval
             (a check that has not passed yet retries every second during its first interval)
    definition changed -> restarted as new;  deregistered -> stopped

Alias checks are not probed: their status is a function of the catalog, recomputed on every
change of the checks or services tables. The runner follows the catalog by waiting on those
tables' watches, so a registration or deregistration on any server is picked up when this
replica applies it. The catalog record is the only state that outlives a run: a runner that
restarts (server restart, snapshot restore) starts from the stored statuses.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from meshfed.fsm import CheckUpdate
from meshfed.fsm.records import STATUS_PASSING
from meshfed.fsm.state import StateStore
from meshfed.server.checks.decide import Result, alias_result, first_delay, needs_write, next_delay
from meshfed.server.checks.definition import TYPE_ALIAS, TYPE_HTTP
from meshfed.server.checks.probes import HTTPProber, probe_tcp
from meshfed.server.checks.spec import CheckSpec, spec_of
from meshfed.server.raft import RaftError, RaftNode
from meshfed.server.requests.watch import WatchHub

log = logging.getLogger("meshfed.checks")

WATCHED_TABLES = ("checks", "services")
# Seconds between rescans without a catalog change: a status write that found no leader is
# retried then (for alias checks; probed checks retry at their next run).
RESCAN_INTERVAL = 5.0
WRITE_TIMEOUT = 5.0


class CheckRunner:
    def __init__(self, *, node: str, state: StateStore, watches: WatchHub, raft: RaftNode,
                 on_run: Callable[[str, str], None] | None = None,
                 on_write: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self._node = node
        self._state = state
        self._watches = watches
        self._raft = raft
        self._on_run = on_run  # (type, status) of each run
        self._on_write = on_write  # each status write that landed
        self._clock = clock
        self._rng = rng or random.Random()
        self._http = HTTPProber()
        self._specs: dict[str, CheckSpec] = {}  # probed checks: check id -> what its task runs
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, Result] = {}  # check id -> the latest result of any kind
        self._writing: set[str] = set()  # check ids with a status write in flight
        self._writes: set[asyncio.Task[None]] = set()

    def running(self) -> dict[str, CheckSpec]:
        """The probed checks with a task (for tests and metrics)."""
        return dict(self._specs)

    async def run(self) -> None:
        found_at_start = True
        try:
            while True:
                futures = self._watches.futures(WATCHED_TABLES)
                self._reconcile(found_at_start)
                found_at_start = False
                await self._watches.wait_any(futures, RESCAN_INTERVAL)
        finally:
            for task in [*self._tasks.values(), *self._writes]:
                task.cancel()
            await asyncio.gather(*self._tasks.values(), *self._writes, return_exceptions=True)
            await self._http.close()

    # ---- following the catalog -------------------------------------------------------------------

    def _reconcile(self, found_at_start: bool) -> None:
        _, checks = self._state.health_checks(node=self._node)
        _, _, services = self._state.catalog_node(self._node)
        service_ids = {s.id for s in services}
        wanted: dict[str, CheckSpec] = {}
        for check in checks:
            spec = spec_of(check)
            if spec is None:
                continue
            if spec.kind == TYPE_ALIAS:
                result = alias_result((c for c in checks if c.check_id != check.check_id), spec.alias_service,
                                      spec.alias_service in service_ids, self._node)
                if self._last.get(check.check_id) != result and self._on_run is not None:
                    self._on_run(TYPE_ALIAS, result.status)
                self._last[check.check_id] = result
            else:
                wanted[check.check_id] = spec
        for check_id in [i for i in self._specs if wanted.get(i) != self._specs[i]]:
            self._tasks.pop(check_id).cancel()
            del self._specs[check_id]
            self._last.pop(check_id, None)
        for check_id, spec in wanted.items():
            if check_id not in self._specs:
                delay = first_delay(spec.interval, found_at_start=found_at_start, rng=self._rng)
                self._specs[check_id] = spec
                self._tasks[check_id] = asyncio.create_task(self._run_check(spec, delay), name=f"check:{check_id}")
        live = {c.check_id for c in checks}
        for check_id in [i for i in self._last if i not in live]:
            del self._last[check_id]
        # Writes: alias results, and probed results the catalog lost (a re-registration of the same
        # check resets its status; Consul's agent keeps the last one) or that found no leader.
        stored = {c.check_id: c for c in checks}
        for check_id, result in self._last.items():
            if needs_write(stored.get(check_id), result):
                self._start_write(check_id, result)

    # ---- one probed check ------------------------------------------------------------------------

    async def _probe(self, spec: CheckSpec) -> Result:
        if spec.kind == TYPE_HTTP:
            return await self._http.probe(spec)
        return await probe_tcp(spec)

    async def _run_check(self, spec: CheckSpec, delay: float) -> None:
        added = self._clock()
        ever_passed = False
        await asyncio.sleep(delay)
        while True:
            result = await self._probe(spec)
            if self._on_run is not None:
                self._on_run(spec.kind, result.status)
            self._last[spec.check_id] = result
            if needs_write(self._state.get_check(self._node, spec.check_id), result):
                self._start_write(spec.check_id, result)
            ever_passed = ever_passed or result.status == STATUS_PASSING
            await asyncio.sleep(next_delay(spec.interval, result.status, ever_passed=ever_passed,
                                           age=self._clock() - added))

    # ---- writing a status ------------------------------------------------------------------------

    def _start_write(self, check_id: str, result: Result) -> None:
        if check_id in self._writing:
            return  # the next run or rescan compares again once this one lands
        self._writing.add(check_id)
        task = asyncio.create_task(self._write(check_id, result), name=f"check-write:{check_id}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, check_id: str, result: Result) -> None:
        try:
            stored = self._state.get_check(self._node, check_id)
            if not needs_write(stored, result):
                return
            assert stored is not None
            command = CheckUpdate(node=stored.node, check_id=check_id, status=result.status, output=result.output,
                                  at=time.time())
            try:
                (outcome,) = await self._raft.apply([("", command)], timeout=WRITE_TIMEOUT)
            except RaftError as exc:
                log.debug("check %s: status write failed (%s); retried later", check_id, exc)
                return
            if not outcome.ok:  # deregistered meanwhile: nothing to update
                log.debug("check %s: status write refused: %s", check_id, outcome.error)
                return
            if self._on_write is not None:
                self._on_write()
            if stored.status != result.status:
                log.info("check %r (%s) is now %s (was %s): %s", check_id, stored.name, result.status,
                         stored.status, result.output)
        finally:
            self._writing.discard(check_id)
