"""Two independent clusters, peered, with socat exported from cluster-01 to cluster-02: the
setup the peering failover test, the long peering fault run (tests/faults/peering.py) and the
peering visibility benchmark share.

Everything here speaks HTTP to real server processes, never to the peering code itself, so it
holds whether the dialer polls its peer or holds a stream open: only what a user can observe
(the `?peer=` answers, the peering rows) is read.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from meshfed.server.cli.launcher import ServerProcess

from .harness import Datacenter, wait_until
from .test_peering import _tls_config

SERVICE = "socat"
ACCEPTOR_PEER = "cluster-01"  # the name cluster-02 gives the peering (it dialed cluster-01)
DIALER_PEER = "cluster-02"  # the name cluster-01 gives it
IMPORTED_PATH = f"/v1/health/service/{SERVICE}?peer={ACCEPTOR_PEER}"


@dataclass
class PeeredClusters:
    acceptor: Datacenter  # cluster-01: generated the token, exports socat
    dialer: Datacenter  # cluster-02: established with the token, imports socat
    registered: list[str] = field(default_factory=list)  # nodes of the socat instances written in cluster-01

    def all_servers(self) -> list[ServerProcess]:
        return [*self.acceptor.servers, *self.dialer.servers]

    def stop(self) -> None:
        self.acceptor.stop()
        self.dialer.stop()

    def logs(self, lines: int = 40) -> str:
        return self.acceptor.logs(lines) + "\n" + self.dialer.logs(lines)


def start_peered(root: str, acceptor_base: str, dialer_base: str, *, count: int = 3,
                 config: dict[str, Any] | None = None, timeout: float = 60.0) -> PeeredClusters:
    """Both clusters booted at once (each its own TLS CA), peered, socat exported with one
    instance, and that instance imported; the clusters are stopped if any step fails."""
    extra = config or {}
    pair = PeeredClusters(
        Datacenter("dc1", acceptor_base, root, count=count, config={**_tls_config(root, "dc1"), **extra}),
        Datacenter("dc2", dialer_base, root, count=count, config={**_tls_config(root, "dc2"), **extra}),
    )
    try:
        for server in pair.all_servers():  # both clusters elect in parallel
            server.start()
        pair.acceptor.wait_leader(timeout)
        pair.dialer.wait_leader(timeout)
        token = _post(pair.acceptor, "/v1/peering/token", {"PeerName": DIALER_PEER})["PeeringToken"]
        _post(pair.dialer, "/v1/peering/establish", {"PeerName": ACCEPTOR_PEER, "PeeringToken": token})
        entry = {"Kind": "exported-services", "Name": "default",
                 "Services": [{"Name": SERVICE, "Consumers": [{"Peer": DIALER_PEER}]}]}
        wait_until(lambda: any_live(pair.acceptor, "PUT", "/v1/config", entry), timeout, interval=0.2,
                   what="the exported-services entry written")
        register_instance(pair, timeout=timeout)
        wait_until(lambda: set(pair.registered) <= imported_nodes(pair.dialer.servers[0]), timeout, interval=0.1,
                   what="the first socat instance imported into cluster-02")
    except BaseException:
        print(pair.logs())
        pair.stop()
        raise
    return pair


def _post(dc: Datacenter, path: str, body: Any) -> Any:
    response = requests.post(dc.leader().http + path, json=body, timeout=15)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response.json()


def any_live(dc: Datacenter, method: str, path: str, body: Any) -> bool:
    """One attempt per live server (a follower forwards to the leader) until one accepts."""
    for server in dc.servers:
        if not server.alive():
            continue
        try:
            if requests.request(method, server.http + path, json=body, timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            continue
    return False


def register_instance(pair: PeeredClusters, timeout: float = 20.0) -> tuple[str, float]:
    """A new socat instance (on a new node) in cluster-01, retried across its live servers until
    one acknowledges it; returns the node and the monotonic time of the acknowledgement."""
    number = len(pair.registered) + 1
    node = f"box{number}"
    body = {"Node": node, "Address": f"10.1.{number // 250}.{number % 250 + 1}",
            "Service": {"ID": f"socat-{number}", "Service": SERVICE, "Port": 5000 + number}}
    wait_until(lambda: any_live(pair.acceptor, "PUT", "/v1/catalog/register", body), timeout, interval=0.1,
               what=f"cluster-01 acknowledging the registration of {node}")
    acknowledged = time.monotonic()
    pair.registered.append(node)
    return node, acknowledged


def imported_nodes(server: ServerProcess, stale: bool = False) -> set[str]:
    """The nodes of socat instances `server` answers for `?peer=cluster-01` (raises on a non-200)."""
    response = requests.get(server.http + IMPORTED_PATH + ("&stale" if stale else ""), timeout=10)
    response.raise_for_status()
    rows = response.json()
    assert all(r["Service"]["PeerName"] == ACCEPTOR_PEER for r in rows), rows
    return {r["Node"]["Node"] for r in rows}


def new_leader(dc: Datacenter, old: ServerProcess, timeout: float = 20.0) -> ServerProcess:
    """The leader elected after `old` died: every live server names the same live server."""

    def agreed() -> ServerProcess | None:
        named = set()
        for server in dc.servers:
            if server.alive():
                named.add(requests.get(server.http + "/v1/status/leader", timeout=2).json())
        if len(named) != 1:
            return None
        leader = next((s for s in dc.servers if named == {s.rpc_address} or named == {s.raft_address}), None)
        return leader if leader is not None and leader is not old and leader.alive() else None

    return wait_until(agreed, timeout, interval=0.1, what=f"a new leader in {dc.name}")


def peering_row(dc: Datacenter, name: str) -> dict[str, Any]:
    """`GET /v1/peering/<name>` from a live server (forwarded to the leader, whose stream status it shows)."""
    server = next(s for s in dc.servers if s.alive())
    response = requests.get(server.http + f"/v1/peering/{name}", timeout=10)
    response.raise_for_status()
    return response.json()


def heard_since(row: dict[str, Any], wall_clock: float) -> bool:
    """ACTIVE, with something received from the peer after `wall_clock` (the status has whole
    seconds, so "after" means a later second than the one `wall_clock` falls in)."""
    received = (row.get("StreamStatus") or {}).get("LastReceive")
    if row.get("State") != "ACTIVE" or not received:
        return False
    return dt.datetime.fromisoformat(received).timestamp() > int(wall_clock)


class ImportWatch(threading.Thread):
    """Reads cluster-02's imported socat instances over and over while a fault plays out, and
    keeps every answer that lacks an instance known before the fault: imports are state, so a
    stream being re-established must never empty or shrink them. `?stale` reads are served by
    any live server and must always answer; default reads need a leader, so during cluster-02's
    own election they may fail (counted, not judged), but an answer they give must be complete."""

    def __init__(self, servers: list[ServerProcess], expected: set[str], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.expected = set(expected)
        self.interval = interval
        self.reads = 0
        self.default_failures = 0
        self.incomplete: list[str] = []  # "<server> <mode>: <what was answered>"
        self.stale_failures: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for server in self.servers:
                for stale in (True, False):
                    mode = "stale" if stale else "default"
                    try:
                        nodes = imported_nodes(server, stale=stale)
                    except (requests.RequestException, ValueError) as exc:
                        if stale:
                            self.stale_failures.append(f"{server.node}: {exc}")
                        else:
                            self.default_failures += 1
                        continue
                    self.reads += 1
                    if not self.expected <= nodes:
                        self.incomplete.append(f"{server.node} {mode}: {sorted(nodes)}")
            self._done.wait(self.interval)

    def finish(self) -> ImportWatch:
        self._done.set()
        self.join(15)
        return self
