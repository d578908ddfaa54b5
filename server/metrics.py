"""Prometheus metrics of one server (DESIGN §10).

Names Consul has keep Consul's flattened names (prefix `consul_`) so existing dashboards work;
ours use `meshfed_`. prometheus-client appends `_total` to counters and exposes summaries as
`_count`/`_sum`. Values that are cheap to read at scrape time (Raft status, catalog sizes) come
from a collector that asks the live objects, so they can never go stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

FEDERATION_STATE_OPS = ("apply", "get", "list", "list_since", "list_mesh_gateways")
REPLICATED_TYPES = ("federation_state", "config_entry", "ca_roots", "acl_policies", "acl_roles", "acl_tokens")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _LiveCollector(Collector):
    def __init__(self, collect: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            yield from self._collect()
        except Exception:  # a scrape must never fail because one source is mid-restart
            return


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.federation_state = {
            op: Summary(f"consul_federation_state_{op}", f"Time to serve FederationState.{op} (seconds)", registry=r)
            for op in FEDERATION_STATE_OPS
        }
        self.rpc_request = Counter("consul_rpc_request", "RPC requests served", ["method"], registry=r)
        self.rpc_request_error = Counter(
            "consul_rpc_request_error", "RPC requests that failed", ["method", "code"], registry=r
        )
        self.rpc_server_call = Histogram(
            "meshfed_rpc_server_call_seconds", "RPC handling time", ["method"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.rpc_queries_blocking = Gauge("consul_rpc_queries_blocking", "Blocking queries in flight", registry=r)
        self.rpc_cross_dc = Counter("consul_rpc_cross_dc", "RPCs forwarded to another datacenter", ["datacenter"], registry=r)
        self.rpc_forwarded_to_leader = Counter("meshfed_rpc_forwarded_leader", "RPCs forwarded to the local leader", registry=r)
        self.raft_apply = Counter("consul_raft_apply", "Commands applied by the state machine", registry=r)
        self.raft_commit_time = Histogram(
            "meshfed_raft_commit_seconds", "Time from proposal to commit of one log entry (group commit batch)",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.raft_batch_commands = Histogram(
            "meshfed_raft_batch_commands", "Commands per committed log entry (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )
        self.replication_status = {
            t: Gauge(f"consul_leader_replication_{t}_status", f"1 if the last {t} replication round succeeded", registry=r)
            for t in REPLICATED_TYPES
        }
        self.replication_index = {
            t: Gauge(f"consul_leader_replication_{t}_index", f"Last replicated remote index of {t}", registry=r)
            for t in REPLICATED_TYPES
        }
        self.anti_entropy_syncs = Counter(
            "meshfed_anti_entropy_syncs", "Federation-state anti-entropy rounds", ["outcome"], registry=r
        )
        self.anti_entropy_last_sync = Gauge(
            "meshfed_anti_entropy_last_sync_timestamp_seconds", "Unix time of the last successful anti-entropy write",
            registry=r,
        )
        self.locator_picks = Counter(
            "meshfed_gateway_locator_picks", "Gateway picks for cross-DC RPC", ["datacenter", "mode"], registry=r
        )
        self.cross_dc_calls = Counter(
            "meshfed_rpc_cross_dc_calls", "Cross-DC RPC attempts through gateways", ["datacenter", "outcome"], registry=r
        )
        self.agent_checks_run = Counter(
            "meshfed_agent_checks_run", "Agent check runs (alias: re-evaluations that changed the result)",
            ["type", "result"], registry=r)
        self.agent_check_updates = Counter(
            "meshfed_agent_check_updates", "Agent check results written through Raft (status or output changed)",
            registry=r)
        self.ttl_expired = Counter("meshfed_ttl_checks_expired", "TTL checks marked critical for missing updates", registry=r)
        self.leader_changes = Counter("meshfed_raft_leadership_changes", "Times this server gained or lost leadership", registry=r)
        self.acl_resolve_time = Histogram(
            "meshfed_acl_resolve_token_seconds", "Time to resolve a token to an authorizer", buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.acl_cache = Counter("meshfed_acl_token_cache", "Token resolutions by cache outcome", ["outcome"], registry=r)
        self.acl_denials = Counter(
            "meshfed_acl_denials", "Requests refused by an ACL check (403)", ["endpoint"], registry=r
        )
        self.acl_catch_ups = Counter(
            "meshfed_acl_catch_ups", "Read barriers a follower proposed before refusing a token it does not hold",
            ["outcome"], registry=r)

    def acl_caught_up(self, caught_up: bool) -> None:
        """One read barrier a follower proposed before refusing an unknown token (catch_up.py)."""
        self.acl_catch_ups.labels("caught_up" if caught_up else "failed").inc()

    def observe_acl_resolve(self, seconds: float, cache_hit: bool) -> None:
        self.acl_resolve_time.observe(seconds)
        self.acl_cache.labels("hit" if cache_hit else "miss").inc()

    def acl_denied(self, endpoint: str) -> None:
        """`endpoint` is a route pattern or an RPC method, never a concrete path: bounded labels."""
        self.acl_denials.labels(endpoint).inc()

    def observe_rpc(self, method: str, seconds: float, error_code: str) -> None:
        self.rpc_request.labels(method).inc()
        self.rpc_server_call.labels(method).observe(seconds)
        if error_code:
            self.rpc_request_error.labels(method, error_code).inc()

    def observe_federation_state(self, op: str, seconds: float) -> None:
        self.federation_state[op].observe(seconds)

    def observe_batch(self, commands: int, seconds: float) -> None:
        self.raft_commit_time.observe(seconds)
        self.raft_batch_commands.observe(commands)

    def blocking_delta(self, delta: int) -> None:
        self.rpc_queries_blocking.inc(delta)

    def forwarded(self, target: str) -> None:
        if target == "leader":
            self.rpc_forwarded_to_leader.inc()
        else:
            self.rpc_cross_dc.labels(target).inc()

    def zero_replication(self) -> None:
        """On step-down: a former leader must not keep reporting healthy replication (Consul #20665)."""
        for gauge in (*self.replication_status.values(), *self.replication_index.values()):
            gauge.set(0)

    def add_live(self, collect: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self.registry.register(_LiveCollector(collect))


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], value)
    return family


def raft_fault_metrics(raft: Any) -> Iterator[GaugeMetricFamily]:
    """Resource-fault signals of the Raft node (issue #8). Counts since start, exported as gauges
    like the other live Raft counts (`meshfed_raft_tick_errors`)."""
    yield gauge("meshfed_raft_oversized_frames", "Raft-port connections dropped for declaring an oversized frame",
                raft.oversized_frames())
    yield gauge("meshfed_raft_disk_full", "1 while the data directory is full and writes are refused",
                1.0 if raft.disk_full else 0.0)
    yield gauge("meshfed_raft_disk_full_refusals", "Proposals refused because the journal could not grow",
                raft.disk_full_refusals)
    yield gauge("meshfed_raft_journal_syncs", "Journal syncs (msync) since start", raft.journal_syncs)
    yield gauge("meshfed_raft_elections_started", "Elections this server stood in since start (a failover "
                "that needs several on the survivors lost votes to a split)", raft.elections_started)
    yield gauge("meshfed_raft_tick_stalls", "Raft ticks longer than half the election timeout (late heartbeats)",
                raft.tick_stalls)
    yield gauge("meshfed_raft_longest_tick_seconds", "Longest Raft tick among the stalls since start", raft.longest_tick)


def json_snapshot(registry: CollectorRegistry) -> dict[str, Any]:
    """Consul's JSON metrics shape for GET /v1/agent/metrics without format=prometheus."""
    gauges: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for family in registry.collect():
        for sample in family.samples:
            entry = {"Name": sample.name, "Labels": dict(sample.labels)}
            if family.type == "counter" and sample.name.endswith("_total"):
                counters.append({**entry, "Count": sample.value, "Sum": sample.value})
            elif family.type in ("summary", "histogram"):
                samples.append({**entry, "Value": sample.value})
            else:
                gauges.append({**entry, "Value": sample.value})
    return {"Gauges": gauges, "Counters": counters, "Samples": samples, "Points": []}


def shared_answer_metrics(shared_reads: Any, encoded: Any) -> Iterator[GaugeMetricFamily]:
    """How often identical blocking queries shared one read and one encoding (issue #13, goal 2):
    counts since start. A hit rate near zero with many waiters says the sharing is not reached
    (different parameters per waiter, or a route without a share key)."""
    if shared_reads is not None:
        family = GaugeMetricFamily("meshfed_shared_reads", "Reads answered from a shared result (hit) or run (miss), since start",
                                   labels=["outcome"])
        family.add_metric(["hit"], shared_reads.hits)
        family.add_metric(["miss"], shared_reads.misses)
        yield family
    yield gauge("meshfed_http_shared_encodings_reused", "HTTP answers that reused a shared answer's JSON, since start",
                encoded.hits)


def live_metrics(raft: Any, state: Any, router: Any) -> Iterator[GaugeMetricFamily]:
    """The gauges read from the live Raft node, state store and router at each scrape.
    `router` is None while the agent is still being wired."""
    status = raft.status()
    yield gauge("consul_raft_state_leader", "1 if this server is the Raft leader", 1.0 if status.state == "leader" else 0.0)
    yield gauge("consul_server_isLeader", "1 if this server is the Raft leader, 0 elsewhere", 1.0 if status.state == "leader" else 0.0)
    yield gauge("meshfed_raft_term", "Current Raft term", status.term)
    yield gauge("meshfed_raft_commit_index", "Raft commit index", status.commit_index)
    yield gauge("meshfed_raft_last_applied", "Last applied Raft index", status.last_applied)
    yield gauge("meshfed_raft_apply_lag", "Committed entries not yet applied", status.commit_index - status.last_applied)
    yield gauge("meshfed_raft_log_entries", "Entries in the Raft log since the last snapshot", status.log_entries)
    yield gauge("meshfed_raft_last_contact_seconds", "Seconds since the last leader contact",
                0.0 if status.last_contact == float("inf") else status.last_contact)
    yield gauge("meshfed_raft_known_leader", "1 if a leader is known", 1.0 if status.leader else 0.0)
    yield gauge("meshfed_raft_snapshot_age_seconds", "Seconds since the last snapshot", status.snapshot_age)
    yield gauge("meshfed_raft_snapshot_bytes", "Size of the last snapshot", status.snapshot_bytes)
    yield gauge("meshfed_raft_snapshots_written", "Snapshots this server wrote since it started", raft.snapshots_written)
    yield gauge("meshfed_raft_tick_errors", "Raft tick failures (a wedged state machine shows here)", raft.tick_errors)
    yield gauge("meshfed_raft_resends_kept", "Re-sent AppendEntries whose held entries were kept, not truncated",
                raft.resends_kept)
    yield from raft_fault_metrics(raft)
    for peer, connected in status.peers_connected.items():
        yield gauge("meshfed_raft_peer_connected", "1 if the Raft link to a peer is up", 1.0 if connected else 0.0, {"peer": peer})
    _, nodes = state.catalog_nodes()
    _, services = state.catalog_services()
    _, fed_states = state.federation_state_list()
    yield gauge("meshfed_catalog_nodes", "Nodes in the catalog", len(nodes))
    yield gauge("meshfed_catalog_services", "Distinct services in the catalog", len(services))
    yield gauge("meshfed_federation_states", "Federation states stored", len(fed_states))
    yield gauge("meshfed_rpc_forwarded_blocking_callers", "Blocking reads waiting here on the leader's answer",
                router.forwarded_blocking_callers if router else 0)
    yield gauge("meshfed_rpc_forwarded_blocking_upstream", "Calls to the leader carrying those reads (shared)",
                router.forwarded_blocking_upstream if router else 0)
    # Counts since start, as gauges like the other live counts.
    retries = GaugeMetricFamily("meshfed_rpc_hold_retries", "Calls retried while holding for a usable leader, "
                                "by reason", labels=["reason"])
    for reason, count in (router.hold_retries.items() if router else ()):
        retries.add_metric([reason], count)
    yield retries
    yield gauge("meshfed_rpc_holds_exhausted", "Calls that found no usable leader within the hold (answered 503)",
                router.holds_exhausted if router else 0)
