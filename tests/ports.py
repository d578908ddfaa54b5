"""Addresses for tests that run side by side: pytest-xdist workers share one network namespace,
so anything a test binds must differ between workers (or come from the kernel)."""

from __future__ import annotations

import os
import socket


def this_worker() -> tuple[int, int]:
    """(this worker's number, how many workers) under pytest-xdist; (0, 1) in a plain run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return index % max(count, 1), max(count, 1)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on right now, chosen by the kernel (so no two workers
    share one); the probes stay bound until all are chosen, so the kernel cannot repeat a port."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def local_port(slot: int) -> int:
    """A fixed port on 127.0.0.1 for a listener that must sit there (a proxy's upstream): below
    the ephemeral range, so no client connection holds it, and distinct per worker and slot."""
    index, _ = this_worker()
    return 30000 + index * 100 + slot
