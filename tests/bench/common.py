"""What every benchmark script shares: latency summaries, process memory, Prometheus scraping, and a
3-server meshfed datacenter started through the real launcher.

Numbers from a 2-core machine shared with other work drift by tens of percent from run to run, so
every script measures its own baseline in the same run and reports ratios; the helpers here keep
the reporting identical across scripts (milliseconds, nearest-rank percentiles, KiB of RSS) so a
figure means the same thing wherever it appears.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from meshfed.server.cli.launcher import (
    ServerProcess,
    datacenter_servers,
    get_json,
    wait_for_leader,
    write_private_file,
)
from meshfed.server.config.loader import generate_key

# Loopback blocks reserved for the benchmarks (other work on the same host uses other blocks).
WRITES_MESHFED_BASE = "127.0.200"
WRITES_RAW_BASE = "127.0.201"
FANOUT_MESHFED_BASE = "127.0.202"
SYNC_MODES_BASES = {"interval": "127.0.204", "always": "127.0.205"}  # 203 is bench_federation_scale
BENCH_DATACENTER = "bench"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: always a value that was really observed, never an interpolation."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_seconds(latencies: Sequence[float]) -> dict[str, Any]:
    """Latency summary in milliseconds (what the issue's "< 10 ms p50" is stated in)."""
    ordered = sorted(latencies)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def process_memory_kib(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, from /proc."""
    wanted = {"VmRSS": "rss_kib", "VmHWM": "peak_rss_kib"}
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in wanted:
                    found[wanted[key]] = int(value.split()[0])
    except OSError:
        pass
    return found


def parse_prometheus(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition, keyed by the sample line's name-and-labels part."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def histogram_mean(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    """Mean of the observations a histogram received between two scrapes (None if it received none)."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return total / count if count > 0 else None


def scrape(server: ServerProcess) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(server.http + "/metrics", timeout=5) as response:
        return parse_prometheus(response.read().decode())


def machine() -> dict[str, Any]:
    """Enough about the host to judge whether two documents can be compared."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = []
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pysyncobj": _version("pysyncobj"),
        "aiohttp": _version("aiohttp"),
        "grpcio": _version("grpcio"),
        "loadavg_at_start": load,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def emit(document: dict[str, Any]) -> None:
    """Print the one JSON document, with the load at the end so a disturbed run can be recognised."""
    try:
        document["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    print(json.dumps(document, indent=2, sort_keys=False))


def registration(node: str, address: str, service: str | None = None) -> dict[str, Any]:
    """A Consul-shaped `PUT /v1/catalog/register` body; a service makes the write wake catalog watchers."""
    body: dict[str, Any] = {"Datacenter": BENCH_DATACENTER, "Node": node, "Address": address}
    if service:
        body["Service"] = {"ID": service, "Service": service, "Port": 8080}
    return body


@dataclass
class Datacenter:
    servers: list[ServerProcess]
    root: str

    def by_rpc_address(self, address: str) -> ServerProcess:
        return next(s for s in self.servers if s.rpc_address == address)

    def leader(self) -> ServerProcess:
        status, _, leader = get_json(self.servers[0].http + "/v1/status/leader")
        if status != 200 or not leader:
            raise RuntimeError(f"no leader reported by {self.servers[0].node}: {status} {leader!r}")
        return self.by_rpc_address(leader)

    def followers(self) -> list[ServerProcess]:
        leader = self.leader()
        return [s for s in self.servers if s is not leader]

    def memory(self) -> dict[str, dict[str, int]]:
        return {s.node: process_memory_kib(s.process.pid) for s in self.servers if s.process is not None}

    def alive(self) -> bool:
        return all(s.alive() for s in self.servers)

    def logs(self, lines: int = 20) -> str:
        return "\n".join(f"--- {s.node} ({s.log_path}) ---\n{s.log_tail(lines)}" for s in self.servers)


@contextmanager
def meshfed_datacenter(base: str, keep_data: bool = False, config: dict[str, Any] | None = None) -> Iterator[Datacenter]:
    """A fresh 3-server datacenter on `base`.1-3, stopped (SIGTERM, then SIGKILL) whatever happens.
    `config` goes into an extra config file (0600: it may hold a token).

    Data and logs live in a temporary directory removed afterwards unless `keep_data`, which is
    what you want when a run misbehaves and the server logs are the evidence.
    """
    root = tempfile.mkdtemp(prefix="meshfed-bench-")
    servers = datacenter_servers(BENCH_DATACENTER, base, root, generate_key())
    if config is not None:
        path = os.path.join(root, f"{base}-extra.json")
        write_private_file(path, json.dumps(config))
        for server in servers:
            server.config_files.append(path)
    datacenter = Datacenter(servers, root)
    try:
        for server in servers:
            server.start()
        try:
            wait_for_leader(servers, timeout=30)
        except TimeoutError:
            print(datacenter.logs(), file=sys.stderr)
            raise
        yield datacenter
    finally:
        for server in servers:
            server.stop()
        if keep_data:
            print(f"bench: server data and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


class Deadline:
    """A phase's time budget, so every phase of a script stays bounded whatever the server does."""

    def __init__(self, seconds: float) -> None:
        self.started = time.perf_counter()
        self.ends = self.started + seconds

    def open(self) -> bool:
        return time.perf_counter() < self.ends

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def process_cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds a process has used so far (from /proc), to see who saturates a core."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def servers_cpu_seconds(servers: Iterable[ServerProcess]) -> float:
    """User+system CPU seconds the running ones among `servers` have used so far, together."""
    return sum(process_cpu_seconds(s.process.pid) or 0.0 for s in servers if s.process)


def listen_overflows() -> int | None:
    """Host-wide count of connections dropped because a listen queue was full (TcpExt
    ListenOverflows). Host-wide, so other work can move it too; a jump while 1,000 clients connect
    at once says the server's accept backlog, not the server, set the pace (SYN retried after 1 s)."""
    try:
        with open("/proc/net/netstat") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return None
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        if header.startswith("TcpExt:"):
            fields = dict(zip(header.split()[1:], values.split()[1:], strict=False))
            return int(fields["ListenOverflows"]) if "ListenOverflows" in fields else None
    return None


def stop_cleanly_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from `timeout`) into SystemExit so the `finally` blocks stop the servers;
    the launcher starts them in their own sessions, so nothing else would."""

    def exit_now(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)


def cpu_seconds() -> float:
    """CPU time used by this (client) process: on 2 cores the client competes with the servers."""
    times = os.times()
    return times.user + times.system
