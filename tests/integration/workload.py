"""A write workload and the durability check shared by the durability tests and the fault runner.

The invariant: every write the API acknowledged is present on every server after recovery, and
the replicas are identical (same records, same index).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import requests

from meshfed.server.cli.launcher import ServerProcess

from .harness import Datacenter, wait_until


class Writers:
    """Threads writing distinct catalog nodes through every live server; records what was acked."""

    def __init__(self, dc: Datacenter, threads: int = 4, prefix: str = "w") -> None:
        self.dc = dc
        self.acked: set[str] = set()
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(f"{prefix}{n}",), daemon=True) for n in range(threads)]

    def _run(self, name: str) -> None:
        session = requests.Session()
        for i in itertools.count():
            if self._stop.is_set():
                return
            servers = [s for s in self.dc.servers if s.alive()]
            if not servers:
                time.sleep(0.01)
                continue
            server = servers[i % len(servers)]
            node = f"{name}-{i}"
            try:
                r = session.put(server.http + "/v1/catalog/register", json={"Node": node, "Address": "127.0.99.1"},
                                timeout=10)
                if r.status_code == 200 and r.json() is True:
                    with self._lock:
                        self.acked.add(node)
                else:
                    self.errors += 1
            except requests.RequestException:
                self.errors += 1

    def start(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> set[str]:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        with self._lock:
            return set(self.acked)


def node_names(dc: Datacenter, server) -> tuple[int, set[str]]:  # type: ignore[no-untyped-def]
    r = dc.get(server, "/v1/catalog/nodes?stale")
    r.raise_for_status()
    return int(r.headers["X-Consul-Index"]), {n["Node"] for n in r.json()}


def assert_all_present_and_identical(dc: Datacenter, acked: set[str], timeout: float = 20.0) -> None:
    def converged() -> bool:
        views = [node_names(dc, s) for s in dc.servers if s.alive()]
        return all(acked <= names for _, names in views) and len({(i, frozenset(n)) for i, n in views}) == 1

    try:
        wait_until(converged, timeout, interval=0.2, what="every acked write on every server, replicas identical")
    except AssertionError:
        for s in dc.servers:
            if s.alive():
                index, names = node_names(dc, s)
                print(f"{s.node}: index {index}, {len(names)} nodes, missing {len(acked - names)} acked: "
                      f"{sorted(acked - names)[:10]}")
        raise


def durability_verdict(dc: Datacenter, acked: set[str], timeout: float = 30.0) -> dict[str, object]:
    """Wait up to `timeout` for convergence, then count what the invariant would call a failure:
    acknowledged writes missing on some live server, and servers whose view differs from the
    first one's (records or index). `lost_names` (a sample) lets a failing run be traced."""
    deadline = time.monotonic() + timeout
    while True:
        views = [node_names(dc, s) for s in dc.servers if s.alive()]
        missing = set().union(*(acked - names for _, names in views)) if views else set(acked)
        diverged = sum(1 for view in views[1:] if (view[0], view[1]) != (views[0][0], views[0][1]))
        if (not missing and diverged == 0) or time.monotonic() >= deadline:
            return {"lost": len(missing), "diverged": diverged, "lost_names": sorted(missing)[:20]}
        time.sleep(0.2)


def first_acked_write(servers: Sequence[ServerProcess], name: str, timeout: float = 30.0) -> float:
    """Seconds until one of the live `servers` acknowledges a new write (the client's view of
    recovery: a client retrying through whichever server it can reach)."""
    session = requests.Session()
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for server in [s for s in servers if s.alive()]:
            try:
                r = session.put(server.http + "/v1/catalog/register", json={"Node": name, "Address": "127.0.99.2"},
                                timeout=2)
                if r.status_code == 200 and r.json() is True:
                    return time.monotonic() - started
            except (requests.RequestException, ValueError):
                pass
        time.sleep(0.02)
    raise AssertionError(f"no write acknowledged within {timeout}s")
