"""`meshfed members -wan` on a real two-DC federation: the servers of every DC, the remote ones asked
through the WAN (mesh gateways) for their Raft configuration; a DC that cannot answer is named."""

from __future__ import annotations

import subprocess
import sys

from meshfed.server.cli.launcher import federated_datacenters, processes_of, start_federation

from .conftest import next_block
from .harness import wait_until


def members(http: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", "members", "-http-addr", http, *flags],
                          capture_output=True, text=True, timeout=60)


def test_members_wan_lists_the_servers_of_every_datacenter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dcs = federated_datacenters(str(tmp_path), [f"127.0.{next_block()}", f"127.0.{next_block()}"])
    try:
        start_federation(dcs, timeout=60)
        dc1, dc2 = dcs
        for asked in (dc1, dc2):
            def every_server_alive(asked=asked) -> bool:  # type: ignore[no-untyped-def]
                result = members(asked.servers[0].http, "-wan")
                rows = [line.split() for line in result.stdout.splitlines()[1:]]
                names = {row[0] for row in rows}
                return (result.returncode == 0 and names == {f"{s.node}.{s.datacenter}" for dc in dcs for s in dc.servers}
                        and all(row[2] == "alive" for row in rows))

            wait_until(every_server_alive, 30, interval=1, what=f"members -wan from {asked.name}")
        result = members(dc2.servers[0].http, "-wan")
        rows = [line.split() for line in result.stdout.splitlines()[1:]]
        assert sum(row[5] == "true" for row in rows) == 2  # one leader per DC
        for dc in dcs:  # one kind of address for every DC: the server RPC address
            assert {row[1] for row in rows if row[4] == dc.name} == {f"{s.address}:8300" for s in dc.servers}

        lan = members(dc2.servers[0].http)  # without -wan: this DC only, plain node names
        assert {line.split()[0] for line in lan.stdout.splitlines()[1:]} == {s.node for s in dc2.servers}

        # dc1 unreachable from dc2 (both its gateway and dc2's gone): dc2's servers still listed,
        # dc1 named on stderr, exit 1.
        dc1.gateway.stop()
        dc2.gateway.stop()
        broken = members(dc2.servers[0].http, "-wan")
        assert broken.returncode == 1
        assert "cannot list the servers of dc1" in broken.stderr
        assert {line.split()[0] for line in broken.stdout.splitlines()[1:]} == {f"{s.node}.dc2" for s in dc2.servers}
    finally:
        for process in processes_of(dcs):
            process.stop()
