"""One meshfed server process: a short linear lifecycle, as uvicorn's.

startup: state machine -> Raft (binds the Raft port, loads snapshot + journal) -> gRPC server ->
HTTP API -> Raft tick thread -> self-publication and leader routines.
serve: until SIGTERM/SIGINT; SIGHUP reloads the config files (server/reload.py), among them the
service definitions, which are registered once there is a leader (server/service_definitions.py).
shutdown: stop accepting HTTP and RPC, cancel leader routines, stop Raft (journal flushed). A
second signal exits at once.

Failures to start (port in use, unreadable data dir, bad TLS files) end the process with one line
that says what and where, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from meshfed.fsm import StateMachine
from meshfed.fsm.records import ServerInfo
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.errors import RPCError
from meshfed.rpc.header import RequestHeader
from meshfed.server import gc_tuning, gil_tuning
from meshfed.server.acl.peers import ServerPeerCheck
from meshfed.server.acl.resolver import ACLResolver, state_reader
from meshfed.server.acl.rpc_permissions import rpc_authorizer
from meshfed.server.ca.leaf_cache import LeafCache
from meshfed.server.checks.runner import CheckRunner
from meshfed.server.config import Config, ConfigError, config_warnings
from meshfed.server.endpoints.acl import ACLEndpoint
from meshfed.server.endpoints.agent_services import AgentServices
from meshfed.server.endpoints.snapshot import SnapshotEndpoint
from meshfed.server.endpoints.wiring import build_endpoints
from meshfed.server.http import respond
from meshfed.server.http.api import Api
from meshfed.server.http.app import build_app
from meshfed.server.leader.membership import publish_self
from meshfed.server.leader.routines import LeaderRoutines
from meshfed.server.leader.wiring import add_leader_routines
from meshfed.server.listeners import StartupError, channel_credentials, start_http, start_rpc
from meshfed.server.log_stream import LogHub
from meshfed.server.metrics import Metrics, live_metrics, shared_answer_metrics
from meshfed.server.peering.wiring import build_peering
from meshfed.server.raft import JoinError, RaftNode, RaftTimings
from meshfed.server.reload import Reloader
from meshfed.server.requests.blocking import QueryRunner
from meshfed.server.requests.catch_up import CatchUp
from meshfed.server.requests.router import Router
from meshfed.server.requests.watch import WatchHub
from meshfed.server.service_definitions import ServiceDefinitions, caught_up
from meshfed.server.wan.federation import Federation

log = logging.getLogger("meshfed.agent")

WAKE_DELAY = 0.002  # seconds between a change being applied and its blocking queries waking

SHUTDOWN_GRACE = 5.0
JOIN_TIMEOUT = 60.0  # seconds a joining server keeps asking the running DC to add it
LEAVE_TIMEOUT = 15.0  # seconds leave_on_terminate may take before the server stops anyway
LEAVE_STOP_DELAY = 0.2  # seconds between answering PUT /v1/agent/leave and stopping
JOIN_QUIET_START = 3.0  # seconds a new member waits for the leader before it may start an election
# A member restarting with its log waits this long for the leader's heartbeat before it may stand
# for election. Without it, its first election timer (0.2-0.5 s, counted from before the log is
# even loaded) often ran out before the leader, which reconnects every 0.2 s, reached it; with a
# log as long as anyone's it won, and restarting one follower deposed a healthy leader (PySyncObj
# has no pre-vote). It still votes meanwhile, so a datacenter that lost its leader is not held up
# unless every member is restarting, when the first election comes this much later.
RESTART_QUIET_START = 1.5


class Agent:
    def __init__(self, config: Config, *, reloader: Reloader | None = None, logs: LogHub | None = None) -> None:
        self.config = config
        self.reloader = reloader  # PUT /v1/agent/reload; None when started without config sources
        self.logs = logs  # GET /v1/agent/monitor; None when the caller set up logging itself
        self.metrics = Metrics()
        self.machine = StateMachine()
        self.watches = WatchHub()
        self._stop = asyncio.Event()
        self.exit_code = 0
        self._tasks: list[asyncio.Task[None]] = []

    # ---- startup -----------------------------------------------------------------------------

    async def _join_members(self, data_dir: str | None) -> tuple[list[str], float]:
        """The Raft peers to start with, and how long to stay quiet before a first election.
        A server joining a running DC (retry_join without bootstrap_expect) that never joined
        before asks the leader to add it first (server/raft/membership.py); one restarting with
        its log waits for the leader's heartbeat (RESTART_QUIET_START)."""
        cfg = self.config
        if not cfg.joins or RaftNode.saved_members(data_dir) is not None:
            restarting = bool(cfg.retry_join) and RaftNode.has_log(data_dir)
            return list(cfg.retry_join), RESTART_QUIET_START if restarting else 0.0
        log.info("joining the datacenter through %s", ",".join(cfg.retry_join))
        try:
            members = await asyncio.get_running_loop().run_in_executor(
                None, RaftNode.join, cfg.raft_address, list(cfg.retry_join), cfg.encrypt, data_dir, JOIN_TIMEOUT
            )
        except JoinError as exc:
            raise StartupError(str(exc)) from None
        log.info("joined: the Raft members are now %s", ",".join(members))
        return members, JOIN_QUIET_START

    def _build_raft(self, loop: asyncio.AbstractEventLoop, peers: list[str], quiet_start: float) -> RaftNode:
        cfg = self.config
        data_dir = None if cfg.dev and not cfg.data_dir else cfg.data_dir
        if data_dir:
            try:
                os.makedirs(data_dir, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"data_dir {data_dir!r} is not usable: {exc}") from None

        def on_change(tables: frozenset[str], index: int) -> None:
            # Waiters wake WAKE_DELAY later, on a timer: the writer's completion (queued by the Raft
            # callback right after this) then runs all its remaining steps first. A hop or two of
            # deferral was not enough: the loop runs its queue in order, so each writer step that
            # came after the wake-up waited behind ten thousand query re-runs (ack 410x baseline).
            loop.call_soon_threadsafe(loop.call_later, WAKE_DELAY, self.watches.notify, tables, index)

        self.machine.subscribe(on_change)
        try:
            return RaftNode(
                self_address=cfg.raft_address,
                peers=peers,
                quiet_start=quiet_start,
                machine=self.machine,
                cluster_key=cfg.encrypt,
                data_dir=data_dir,
                timings=RaftTimings().scaled(cfg.raft_multiplier),
                snapshot_threshold=cfg.raft_snapshot_threshold,
                snapshot_interval=cfg.raft_snapshot_interval,
                on_leadership=self._on_leadership,
                on_applied=lambda index, count: self.metrics.raft_apply.inc(count),
                on_batch=self.metrics.observe_batch,
                on_fatal=self._fatal,
                bind_address=f"{cfg.bind_addr}:{cfg.ports.raft}",
                sync_mode=cfg.raft_journal_sync,
            )
        except Exception as exc:
            if "BindError" in repr(exc):
                raise StartupError(
                    f"cannot bind the Raft port {cfg.bind_addr}:{cfg.ports.raft} (in use? set ports.raft / -raft-port)"
                ) from None
            raise

    def _step_down(self) -> None:
        self.metrics.zero_replication()
        self.federation_wan.on_step_down()

    def _fatal(self, reason: str) -> None:
        log.error("stopping: %s (data dir %s)", reason, self.config.data_dir)
        self.exit_code = 1
        self._stop.set()

    def _on_leadership(self, is_leader: bool) -> None:
        self.metrics.leader_changes.inc()
        self.routines.on_leadership(is_leader)

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.routines = LeaderRoutines(self._barrier, on_step_down=self._step_down)
        data_dir = None if cfg.dev and not cfg.data_dir else cfg.data_dir
        peers, quiet_start = await self._join_members(data_dir)
        self.raft = raft = self._build_raft(loop, peers, quiet_start)
        state = self.machine.state
        self.pool = ConnectionPool(channel_credentials(cfg))
        self.queries = queries = QueryRunner(raft, self.watches, self.metrics.blocking_delta,
                                             store_version=lambda: state.version)
        self.router = router = Router(
            datacenter=cfg.datacenter, raft=raft, state=state, pool=self.pool, on_forward=self.metrics.forwarded,
            server_name=f"server.{cfg.datacenter}.{cfg.domain.rstrip('.')}" if self.pool.tls else "",
            # Benchmarks switch the sharing off to measure it (tests/bench/bench_waiters.py).
            coalesce=os.environ.get("MESHFED_COALESCE_FORWARDED_QUERIES", "1") != "0",
        )
        self.endpoints = eps = build_endpoints(cfg, state=state, raft=raft, router=router, queries=queries,
                                               observe_federation_state=self.metrics.observe_federation_state)
        self.federation_wan = Federation(
            cfg, state=state, raft=raft, watches=self.watches, pool=self.pool, router=router,
            endpoint=eps.federation, config_entries=eps.config_entries, metrics=self.metrics, acl=eps.acl,
        )
        self.peering = build_peering(cfg, state=state, raft=raft, router=router, leader_streams=router, queries=queries,
                                     watches=self.watches)
        handlers = {**self.peering.handlers(), **eps.handlers(), **self.federation_wan.check.handlers()}

        acl_resolver = (ACLResolver(state_reader(state), cfg.acl, cfg.datacenter, observer=self.metrics)
                        if cfg.acl.enabled else None)
        authorize = rpc_authorizer(cfg, state, self.metrics, acl_resolver).authorize if cfg.acl.enabled else None
        if acl_resolver is not None:
            self._wire_acl(eps.acl, acl_resolver)
            acl_resolver.use_catch_up(CatchUp(raft, observe=self.metrics.acl_caught_up).wait)
        peer_check = ServerPeerCheck(
            cfg.domain, lambda: [cfg.datacenter, *(s.datacenter for s in state.federation_state_list()[1])]
        )
        try:
            self.grpc_server, rpc_bind = await start_rpc(cfg, handlers, observe=self.metrics.observe_rpc,
                                                         authorize=authorize, peer_check=peer_check)
        except StartupError:
            raft.stop()
            raise

        self.api = Api(
            datacenter=cfg.datacenter,
            state=state,
            queries=queries,
            federation=eps.federation,
            catalog=eps.catalog,
            status=eps.status,
            config_entries=eps.config_entries,
            intentions=eps.intentions,
            connect_ca=eps.connect_ca,
            metrics=self.metrics,
            wan=self.federation_wan,
            prometheus_enabled=cfg.telemetry.prometheus_retention_time > 0,
            acl=eps.acl if cfg.acl.enabled else None,
            acl_resolver=acl_resolver,
            agent_services=eps.agent_services,
            leaves=LeafCache(datacenter=cfg.datacenter, state=state, watches=self.watches, sign=eps.connect_ca.sign),
            snapshots=SnapshotEndpoint(datacenter=cfg.datacenter, machine=self.machine, raft=raft,
                                       term=lambda: raft.status().term),
            peering=self.peering.endpoint,
            reloader=self.reloader,
            operator_raft=eps.operator_raft,
            autopilot=eps.autopilot,
            leave=self.leave_and_stop,
            logs=self.logs,
        )
        try:
            self.http_runner, http_bind = await start_http(cfg, build_app(self.api))
        except StartupError:
            await self.grpc_server.stop(None)
            raft.stop()
            raise

        for warning in config_warnings(cfg):
            log.warning("config: %s", warning)
        self.metrics.add_live(lambda: live_metrics(self.raft, self.machine.state, getattr(self, "router", None)))
        self.metrics.add_live(lambda: shared_answer_metrics(self.queries.shared, respond.ENCODED))
        self.metrics.add_live(self.federation_wan.live_metrics)
        self.metrics.add_live(self.peering.live_metrics)
        self.federation_wan.start()
        raft.start(loop)
        add_leader_routines(
            self.routines, cfg, state, raft, watches=self.watches, federation=eps.federation,
            federation_wan=self.federation_wan, connect_ca=eps.connect_ca, peering=self.peering, metrics=self.metrics)
        me = ServerInfo(
            node=cfg.node_name,
            datacenter=cfg.datacenter,
            raft_address=cfg.raft_address,
            rpc_address=cfg.rpc_address,
            http_address=cfg.http_address,
        )
        self._tasks.append(asyncio.create_task(publish_self(state, raft, self.watches, me), name="publish-self"))
        self._start_service_definitions(eps.agent_services, loop)
        # The agent's TCP/HTTP/alias checks of this server's own node: every server, not the leader.
        self.check_runner = CheckRunner(
            node=cfg.node_name, state=state, watches=self.watches, raft=raft,
            on_run=lambda kind, result: self.metrics.agent_checks_run.labels(kind, result).inc(),
            on_write=self.metrics.agent_check_updates.inc)
        self._tasks.append(asyncio.create_task(self.check_runner.run(), name="agent-checks"))
        log.info(
            "meshfed server %s started: datacenter=%s primary=%s raft=%s rpc=%s http=%s peers=%s",
            cfg.node_name, cfg.datacenter, cfg.primary, cfg.raft_address, rpc_bind,
            http_bind, ",".join(cfg.retry_join) or "-",
        )

    def _start_service_definitions(self, agent_services: AgentServices, loop: asyncio.AbstractEventLoop) -> None:
        """Register the config files' services once there is a leader, and let reload re-apply them."""
        cfg = self.config
        self.service_definitions = definitions = ServiceDefinitions(
            agent_services, token=cfg.acl.tokens.default, data_dir=cfg.data_dir or None, ready=lambda: caught_up(self.raft.status))
        self._tasks.append(asyncio.create_task(definitions.apply(cfg.services), name="service-definitions"))
        if self.reloader is not None:
            self.reloader.apply_services = lambda wanted: asyncio.run_coroutine_threadsafe(
                definitions.apply(wanted), loop)

    def _reload_on_signal(self) -> None:
        """SIGHUP, as Consul's agent: the same reload as `PUT /v1/agent/reload`. Runs in a worker
        thread; a refusal is logged by the reloader and the running configuration stays."""
        assert self.reloader is not None
        try:
            self.reloader.reload()
        except ConfigError:
            pass

    def _wire_acl(self, acl: ACLEndpoint, resolver: ACLResolver) -> None:
        """ACL replication's two ends on this server: what the primary reveals to a replication
        token, and how a secondary resolves tokens it does not hold (reference/acl.md §6)."""
        replication = self.federation_wan.replication

        def reveal_secrets_to(token: str) -> bool:
            try:
                return resolver.resolve(token).authorizer.acl_write()
            except RPCError:
                return False

        acl.reveal_secrets_to = reveal_secrets_to  # type: ignore[method-assign]
        acl.replication_status = replication.acl_status  # type: ignore[method-assign]
        if not self.config.is_primary:
            resolver.use_primary(acl.resolve_remote)

    async def _barrier(self) -> int:
        return await self.raft.barrier()

    # ---- leaving the datacenter ------------------------------------------------------------------

    async def leave(self, token: str = "") -> None:
        """Leave the Raft configuration: the leader removes this server (a leader hands its
        leadership over first). Raises RPCError when refused, e.g. it would cost the majority."""
        if self.raft.members() == [self.config.raft_address]:
            return  # the last server: there is no configuration left to leave
        header = RequestHeader(token=token or self.config.acl.tokens.agent)
        await self.endpoints.operator_raft.remove_peer(header, {"address": self.config.raft_address})
        log.info("left the datacenter's Raft configuration")

    async def leave_and_stop(self, token: str = "") -> None:
        """PUT /v1/agent/leave: leave, then stop shortly after the answer went out."""
        await self.leave(token)
        asyncio.get_running_loop().call_later(LEAVE_STOP_DELAY, self._stop.set)

    async def _leave_on_terminate(self) -> None:
        try:
            await asyncio.wait_for(self.leave(), LEAVE_TIMEOUT)
        except (RPCError, TimeoutError) as exc:
            log.error("leave_on_terminate: could not leave the Raft configuration (%s); stopping anyway", exc)
        self._stop.set()

    # ---- serve and shutdown --------------------------------------------------------------------

    async def run(self) -> int:
        """The server process's life (the CLI's `agent`). Process-wide settings live here, not in
        `start`, which tests also call inside their own process."""
        loop = asyncio.get_running_loop()
        # Benchmarks switch the tuning off to measure it (tests/bench/bench_federation_scale.py).
        tuned = os.environ.get("MESHFED_GC_TUNING", "1") != "0"
        if tuned:
            gc_tuning.tune(self.metrics.registry)
        gil_tuning.tune()
        await self.start()
        if tuned:
            self._tasks.append(asyncio.create_task(gc_tuning.freeze_periodically(), name="gc-freeze"))
        signals = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal signals
            signals += 1
            if signals == 1 and sig == signal.SIGTERM and self.config.leave_on_terminate and not self._stop.is_set():
                log.info("leaving the datacenter before shutting down (leave_on_terminate)")
                self._tasks.append(asyncio.create_task(self._leave_on_terminate(), name="leave"))
            elif signals == 1:
                log.info("shutting down (send the signal again to exit at once)")
                self._stop.set()
            else:
                log.warning("second signal: exiting now")
                os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        if self.reloader is not None:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, self._reload_on_signal))
        await self._stop.wait()
        await self.shutdown()
        return self.exit_code

    async def shutdown(self) -> None:
        self.queries.close()  # open blocking queries answer now with what they have
        await asyncio.sleep(0)
        await self.http_runner.shutdown()
        # Streams never finish by themselves: end them with the reason, so a peer redials
        # elsewhere now instead of after the gRPC grace with only "Cancelling all calls". Done
        # right before the stop, which refuses new calls, so no stream starts in between.
        # The reason names the server: a relayed stream's caller is told about the server behind
        # the one it dialed.
        shutting_down = f"server {self.config.node_name} is shutting down"
        self.peering.hub.stop_all(shutting_down)
        self.router.close_streams(shutting_down)
        await self.grpc_server.stop(SHUTDOWN_GRACE / 2)
        await self.routines.stop()
        await self.federation_wan.stop()
        await self.peering.dialer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http_runner.cleanup()
        await self.pool.close()
        await asyncio.get_running_loop().run_in_executor(None, self.raft.stop)
        log.info("meshfed server %s stopped", self.config.node_name)
