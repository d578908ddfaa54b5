"""Removing decommissioned datacenters (issue #3 step 8; DESIGN §8, replacing Consul's serf rule).

A record is written the way a secondary's anti-entropy writes it (FederationState/Apply over
gRPC to the primary), then left to age past `federation_state_ttl`, or deleted by the operator.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from meshfed.fsm.records import FederationState, to_wire
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import RequestHeader

from .harness import Datacenter, wait_until


def write_state(server_address: str, datacenter: str) -> None:
    async def call() -> None:
        pool = ConnectionPool()
        try:
            _, reply = await pool.call(
                f"{server_address}:8300", "FederationState/Apply",
                RequestHeader(request_id=uuid.uuid4().hex),
                {"op": "upsert", "state": to_wire(FederationState(datacenter=datacenter))},
                timeout=10,
            )
            assert reply is True
        finally:
            await pool.close()

    asyncio.run(call())


def datacenters(dc: Datacenter) -> list[str]:
    return [s["Datacenter"] for s in dc.get(dc.servers[0], "/v1/internal/federation-states").json()]


def test_operator_delete_and_ttl_pruning(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", count=1, config={"federation_state_ttl": "3s", "federation_state_refresh_interval": "1s",
                                         "federation_state_anti_entropy_sync_interval": "200ms"})
    dc.start()
    server = dc.servers[0]
    wait_until(lambda: datacenters(dc) == ["dc1"], 5, what="own federation state")

    write_state(server.address, "dc3")
    assert datacenters(dc) == ["dc1", "dc3"]
    result = subprocess.run(
        [sys.executable, "-m", "meshfed.server.cli", "operator", "federation-state", "delete", "dc3",
         "-http-addr", f"{server.address}:8500"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert datacenters(dc) == ["dc1"]

    write_state(server.address, "dc4")
    assert "dc4" in datacenters(dc)
    # Not refreshed: pruned after the 3 s TTL; our own record is refreshed every second and stays.
    wait_until(lambda: datacenters(dc) == ["dc1"], 10, interval=0.2, what="dc4 pruned after its TTL")
    assert "pruned federation state of dc4" in server.log_tail(200)
