"""`meshfed federation check` against a real two-DC federation (issue #12 item 3).

Green on a healthy federation from both DCs; then, with dc2's gateway killed, red from dc2 naming
its local gateway and from dc1 naming dc2's route, with exit status 2. The CLI runs as operators
run it: a subprocess pointed at one server's HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from meshfed.server.cli.launcher import FederatedDatacenter

from .conftest import running_federation
from .harness import wait_until


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[FederatedDatacenter]]:
    with running_federation(str(tmp_path_factory.mktemp("federation-check"))) as dcs:
        yield dcs


def check(dc: FederatedDatacenter, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshfed.server.cli", "federation", "check", "-http-addr", dc.servers[0].http, *flags],
        capture_output=True, text=True, timeout=60,
    )


def hops(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {hop["Name"]: hop for hop in json.loads(result.stdout)["Hops"]}


def test_healthy_federation_is_green_from_both_sides(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed

    def green(dc: FederatedDatacenter) -> bool:
        return check(dc, "-json").returncode == 0

    wait_until(lambda: green(dc2) and green(dc1), 30, interval=1, what="a green check in both DCs")
    secondary = check(dc2, "-json")
    by_name = hops(secondary)
    assert by_name["primary dc1"]["Status"] == "ok" and "path local" in by_name["primary dc1"]["Detail"]
    assert by_name["server.dc1 SNI route"]["Status"] == "ok"
    assert by_name["server certificate names"]["Detail"] == "includes server.dc2.consul"
    assert any(name.startswith("replication of ") and hop["Status"] == "ok" for name, hop in by_name.items())
    assert by_name["clock skew to dc1"]["Status"] == "ok"
    assert any(name.startswith("local gateway ") for name in by_name)

    text = check(dc2)
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.splitlines()[-1] == "healthy"
    assert "[ OK ] primary dc1: reached in" in text.stdout


def test_a_dead_gateway_is_named_with_its_fix_and_exits_2(fed: list[FederatedDatacenter]) -> None:
    dc1, dc2 = fed
    dc2.gateway.kill()
    try:
        def dc2_names_its_gateway() -> bool:
            result = check(dc2)
            return result.returncode == 2 and any(
                line.startswith("[FAIL] local gateway ") for line in result.stdout.splitlines())

        wait_until(dc2_names_its_gateway, 30, interval=1, what="dc2's check failing on its own gateway")
        result = check(dc2)
        assert "fix: " in result.stdout and result.stdout.splitlines()[-1].startswith("BROKEN")

        def dc1_names_the_route() -> bool:
            result = check(dc1, "-json")
            failed = {name for name, hop in hops(result).items() if hop["Status"] == "fail"}
            return result.returncode == 2 and bool(failed & {"server.dc2 SNI route", "gateways of dc2"})

        wait_until(dc1_names_the_route, 30, interval=1, what="dc1's check failing on the route to dc2")
    finally:
        dc2.gateway.start()
    wait_until(lambda: check(dc2).returncode == 0, 60, interval=1, what="dc2 green again after the gateway restart")


def members(http: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", "members", "-http-addr", http, *flags],
                          capture_output=True, text=True, timeout=60)


def test_members_wan_lists_the_servers_of_every_datacenter(fed: list[FederatedDatacenter]) -> None:
    """`meshfed members -wan`: the servers of every DC, the remote ones asked through the WAN (mesh
    gateways) for their Raft configuration; a DC that cannot answer is named. Runs last on this
    federation: it takes both gateways down."""
    dcs = fed
    dc1, dc2 = dcs
    for asked in (dc1, dc2):
        def every_server_alive(asked: FederatedDatacenter = asked) -> bool:
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


def test_unreachable_server_is_exit_1_not_a_verdict() -> None:
    result = subprocess.run([sys.executable, "-m", "meshfed.server.cli", "federation", "check",
                             "-http-addr", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cannot reach" in result.stderr
