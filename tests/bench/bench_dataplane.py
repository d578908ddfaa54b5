"""Service traffic through the mesh vs plain TCP, in one run (issue #10's benchmark).

Path measured: a client -> web's sidecar (dc2) -> dc2's gateway -> dc1's gateway -> socat's
sidecar (dc1) -> the echo service, with mutual TLS between the sidecars; the baseline is the same
client talking plain TCP to the same echo service. Prints one JSON document:
- bulk throughput (MB/s, echoed back, so each byte crosses the path twice) and its ratio to TCP;
- connect + first byte latency p50/p99 (ms) over sequential new connections, and the ratio;
- new connections per second.
The goal in the issue: a user moving a large file gets at least a third of plain TCP's throughput.

Run from the repository root: python -m tests.bench.bench_dataplane [--megabytes 64] [--connections 200]
(blocks 127.0.222.x and 127.0.223.x, which no test uses).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from typing import Any

from meshfed.server.cli import demo_mesh
from meshfed.server.cli.launcher import federated_datacenters, processes_of, start_federation, stop_all

from .common import emit, machine, ratio, stop_cleanly_on_sigterm, summarize_seconds

BASES = ("127.0.222", "127.0.223")
CHUNK = 256 * 1024


def bulk_mb_per_s(host: str, port: int, megabytes: int) -> float:
    """Send `megabytes` and read them back concurrently; MB/s of payload echoed."""
    total = megabytes * 1024 * 1024
    payload = b"x" * CHUNK
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()

        def send() -> None:
            sent = 0
            while sent < total:
                conn.sendall(payload)
                sent += len(payload)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = 0
        while received < total:
            chunk = conn.recv(CHUNK)
            if not chunk:
                raise RuntimeError(f"connection closed after {received} of {total} bytes")
            received += len(chunk)
        elapsed = time.perf_counter() - started
        sender.join()
    return round(megabytes / elapsed, 2)


def connect_latencies(host: str, port: int, count: int) -> list[float]:
    """Seconds from connect() to the first echoed byte, one new connection at a time."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(b"p")
            if conn.recv(1) != b"p":
                raise RuntimeError("no echo")
        latencies.append(time.perf_counter() - started)
    return latencies


def measure(host: str, port: int, megabytes: int, connections: int) -> dict[str, Any]:
    latencies = connect_latencies(host, port, connections)
    elapsed = sum(latencies)
    return {
        "bulk_mb_per_s": bulk_mb_per_s(host, port, megabytes),
        "connect_first_byte_ms": summarize_seconds(latencies),
        "connections_per_s": round(connections / elapsed, 1) if elapsed else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    root = tempfile.mkdtemp(prefix="meshfed-bench-dataplane-")
    dcs = federated_datacenters(root, list(BASES))
    mesh = demo_mesh.mesh_processes(dcs, root)
    everything = [*processes_of(dcs), *mesh]
    document: dict[str, Any] = {"benchmark": "dataplane", "machine": machine(), "megabytes": args.megabytes,
                                "connections": args.connections}
    try:
        start_federation(dcs, timeout=90)
        demo_mesh.retrying_send(demo_mesh.registrations(dcs))
        for process in mesh:
            process.start()
        web_host = demo_mesh.app_host(dcs[1])
        demo_mesh.wait_for_echo(web_host, demo_mesh.UPSTREAM_PORT, timeout=60)
        document["plain_tcp"] = measure(demo_mesh.app_host(dcs[0]), demo_mesh.ECHO_PORT, args.megabytes, args.connections)
        document["mesh"] = measure(web_host, demo_mesh.UPSTREAM_PORT, args.megabytes, args.connections)
        plain, through = document["plain_tcp"], document["mesh"]
        document["ratios"] = {
            "throughput_mesh_over_tcp": ratio(through["bulk_mb_per_s"], plain["bulk_mb_per_s"]),
            "connect_p50_mesh_over_tcp": ratio(through["connect_first_byte_ms"]["p50_ms"],
                                               plain["connect_first_byte_ms"]["p50_ms"]),
            "connect_p99_mesh_over_tcp": ratio(through["connect_first_byte_ms"]["p99_ms"],
                                               plain["connect_first_byte_ms"]["p99_ms"]),
        }
        document["goal_throughput_at_least_a_third"] = (document["ratios"]["throughput_mesh_over_tcp"] or 0) >= 1 / 3
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        for process in everything:
            print(f"--- {getattr(process, 'name', '') or getattr(process, 'node', '')} ---\n{process.log_tail(20)}",
                  file=sys.stderr)
        return 1
    finally:
        stop_all(everything)
    emit(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
