"""Steps both demo walkthroughs take (`meshfed demo`: WAN federation; `meshfed demo -peering`:
two independent clusters), so the two print the same progress lines and fail the same way.

A walkthrough appends every process it creates to the caller's list before starting it: the
caller (server/cli/demo.py) owns stopping them, whatever ends the walkthrough."""

from __future__ import annotations

from collections.abc import Sequence

from meshfed.server.cli import demo_acl, demo_mesh
from meshfed.server.cli.launcher import ChildProcess, FederatedDatacenter, busy_addresses, wait_for_leader


class DemoRefused(Exception):
    """The demo cannot start (e.g. its addresses are busy): reported without any process's log."""


def refuse_busy(processes: Sequence[ChildProcess]) -> None:
    """Every address the demo will bind must be free: a second demo would otherwise report
    success by talking to the first."""
    busy = busy_addresses([address for process in processes for address in process.listen_addresses()])
    if busy:
        raise DemoRefused(f"address in use: {', '.join(busy)}; is another demo or server running? "
                          "Stop it or choose another -base")


def start_servers(dcs: Sequence[FederatedDatacenter], label: dict[str, str] | None = None) -> None:
    """Start every server, then wait for a leader in each DC. `label`: DC name -> how to call it."""
    names = label or {}
    for dc in dcs:
        for server in dc.servers:
            print(f"  starting {names.get(dc.name, dc.name)} server {server.node} on {server.address}")
            server.start()
    for dc in dcs:
        leader = wait_for_leader(dc.servers, timeout=30)
        print(f"  {names.get(dc.name, dc.name)} has a leader: {leader}")


def start_gateway(root: str, dc: FederatedDatacenter, token: str, label: str = "") -> None:
    dc.gateway.extra_args += ["-token-file", demo_acl.write_secret(root, f"gateway-{dc.name}-token", token)]
    print(f"  starting {label or dc.name} mesh gateway on {dc.gateway.bind}")
    dc.gateway.start()


def start_mesh(mesh: Sequence[ChildProcess], web_host: str) -> None:
    """Start the echo service and the sidecars, then wait until bytes come back through web's upstream."""
    for process in mesh:
        print(f"  starting {getattr(process, 'name', '')}")
        process.start()
    demo_mesh.wait_for_echo(web_host, demo_mesh.UPSTREAM_PORT, timeout=60)
