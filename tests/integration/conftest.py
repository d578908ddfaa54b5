"""Fixtures: each test gets its own 127.0.<n>.x block, so servers keep Consul's default ports."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from meshfed.server.cli.launcher import (
    FederatedDatacenter,
    federated_datacenters,
    processes_of,
    start_federation,
)
from tests.ports import this_worker

from .harness import Datacenter

# Blocks 127.0.20.x-127.0.199.x; a fresh block per datacenter avoids reusing sockets across tests
# (benchmarks and manual runs use 127.0.200.x and above). Under pytest-xdist the workers share one
# network namespace, so each takes its own slice of the range; a worker that uses up its slice
# starts it again, reusing blocks whose datacenters stopped long before.
_FIRST, _LAST = 20, 199
_worker, _workers = this_worker()
_size = (_LAST + 1 - _FIRST) // _workers
_start = _FIRST + _worker * _size
_offset = (os.getpid() % 30) * 4 % _size if _workers == 1 else 0


def next_block(span: int = 1) -> int:
    """The first of `span` consecutive fresh blocks (a demo puts its second datacenter on the next)."""
    global _offset
    if _offset + span > _size:
        _offset = 0
    _offset += span
    return _start + _offset - span


@contextlib.contextmanager
def running_federation(root: str) -> Iterator[list[FederatedDatacenter]]:
    """dc1 (primary) and dc2 with TLS and one gateway each, up and converged; stopped afterwards,
    with the log tails of processes that died (or of all with MESHFED_KEEP_LOGS)."""
    dcs = federated_datacenters(root, [f"127.0.{next_block()}", f"127.0.{next_block()}"])
    processes: list[Any] = processes_of(dcs)
    try:
        start_federation(dcs, timeout=60)
        yield dcs
    finally:
        for process in processes:
            if os.environ.get("MESHFED_KEEP_LOGS") or not process.alive():
                print(f"--- {getattr(process, 'node', '') or process.datacenter} ---\n{process.log_tail(60)}")
            process.stop()


@pytest.fixture
def make_dc(tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    created: list[Datacenter] = []

    def make(name: str = "dc1", **kwargs: Any) -> Datacenter:
        dc = Datacenter(name, f"127.0.{next_block()}", str(tmp_path), **kwargs)
        created.append(dc)
        return dc

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for dc in created:
        if failed:
            print(dc.logs(60))
        dc.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
