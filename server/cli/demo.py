"""`meshfed demo`: two federated datacenters (or, with `-peering`, two peered clusters:
server/cli/demo_peering.py) of real processes on 127.0.x.y, run until stopped.

States: checking (every address the demo will bind must be free, or it refuses and names the busy
one: a second demo would otherwise report "federation is up" by talking to the first) -> starting
-> up -> stopping. SIGINT, SIGTERM and SIGHUP all lead to stopping, which stops every child: the
children run in their own sessions, so a signal to the demo never reaches them by itself. A signal
that arrives while stopping is ignored; stopping ends with SIGKILL after one grace period.

The demo's files (certificates, keys, data, logs) live in a fresh temporary directory that is
removed on exit unless `-keep-data` is given. A directory the operator names with `-data-dir` is
never removed: the demo did not create it.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

from meshfed.server.cli import demo_acl, demo_mesh, demo_peering
from meshfed.server.cli.demo_steps import DemoRefused, refuse_busy, start_gateway, start_mesh, start_servers
from meshfed.server.cli.launcher import (
    ChildProcess,
    federated_datacenters,
    processes_of,
    stop_all,
    wait_for_federation,
)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DemoStopped(BaseException):
    """Raised by the signal handler. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way can swallow a request to stop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise DemoStopped(signal.Signals(signum).name)


def _failure(message: str, processes: Sequence[ChildProcess] = ()) -> int:
    print(f"error: {message}", file=sys.stderr)
    for process in processes:
        name = getattr(process, "node", "") or getattr(process, "datacenter", "")
        print(f"--- {name} log ---\n{process.log_tail()}", file=sys.stderr)
    return 1


def run_demo(base: str = "127.0.1", data_dir: str = "", keep_data: bool = False, peering: bool = False) -> int:
    """Run a walkthrough (WAN federation, or cluster peering with `peering`) until SIGINT,
    SIGTERM or SIGHUP, then stop every process it started."""
    root = data_dir or tempfile.mkdtemp(prefix="meshfed-demo-")  # mkdtemp makes it 0700
    remove_root = not data_dir and not keep_data
    where = "removed on exit; -keep-data keeps them" if remove_root else "kept on exit"
    walkthrough = demo_peering.walkthrough if peering else _federation
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    everything: list[ChildProcess] = []
    try:
        walkthrough(root, base, where, everything)
        while all(p.alive() for p in everything):
            time.sleep(0.5)
        return _failure("a process exited; stopping the demo", [p for p in everything if not p.alive()])
    except DemoRefused as refused:
        return _failure(str(refused))
    except TimeoutError as exc:
        return _failure(str(exc), everything)
    except (DemoStopped, KeyboardInterrupt) as stop:
        print(f"stopping ({stop or 'SIGINT'})", flush=True)
        return 0
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stop_all(everything)
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
        elif everything:
            print(f"demo files kept in {root}")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _federation(root: str, base: str, where: str, everything: list[ChildProcess]) -> None:
    """A primary dc1 and a secondary dc2 (3 servers each) federated through one mesh gateway per
    DC, with generated TLS certificates; returns once web (dc2) reaches socat (dc1)."""
    prefix, _, third = base.rpartition(".")
    tokens = demo_acl.DemoTokens()
    dcs = federated_datacenters(root, [base, f"{prefix}.{int(third) + 1}"],
                                per_dc=demo_acl.server_acl(("dc1", "dc2"), tokens))
    mesh = demo_mesh.mesh_processes(dcs, root, {
        name: demo_acl.write_secret(root, f"{name}-token", tokens.service(name)) for name in demo_mesh.SERVICES})
    refuse_busy([*processes_of(dcs), *mesh])
    everything += [*processes_of(dcs), *mesh]
    print(f"meshfed demo: data, certificates, keys and logs in {root} ({where})")
    print("  made a CA and server certificates (server.<dc>.consul, <node>.server.<dc>.consul)")
    management_file = demo_acl.write_secret(root, "management-token", tokens.management)
    print(f"  ACLs on, default deny; the management token is in {management_file} (mode 0600)")
    start_servers(dcs)
    print("  creating the replication, mesh-gateway and service tokens in dc1 (reference acl.md §8)")
    demo_mesh.retrying_send(demo_acl.seed_calls(dcs, tokens, demo_mesh.SERVICES), tokens.management)
    for dc in dcs:
        start_gateway(root, dc, tokens.gateway(dc.name))
    print("  waiting for both datacenters to see each other's gateways ...")
    wait_for_federation(dcs, timeout=90, token=tokens.management)
    print("federation is up.")
    print("  registering socat (dc1) and web (dc2) with sidecars; proxy-defaults mode local; intention web => socat")
    demo_mesh.retrying_send(demo_mesh.registrations(dcs), tokens.management)
    web_host = demo_mesh.app_host(dcs[1])
    start_mesh(mesh, web_host)
    print("service mesh is up: web (dc2) reaches socat (dc1) through both mesh gateways.")
    for dc in dcs:
        print(f"  {dc.name}:")
        for server in dc.servers:
            print(f"    {server.node}: HTTP API {server.http}   metrics {server.http}/v1/agent/metrics?format=prometheus")
        print(f"    mesh gateway {dc.gateway.bind}: metrics {dc.gateway.admin}/metrics   "
              f"routes {dc.gateway.admin}/v1/gateway/routes")
    print(f"use the API and CLI with: export CONSUL_HTTP_TOKEN=$(cat {management_file})")
    print(f"try: curl -H \"X-Consul-Token: $CONSUL_HTTP_TOKEN\" {dcs[1].servers[0].http}/v1/internal/federation-states?dc=dc1")
    print(f"try: nc {web_host} {demo_mesh.UPSTREAM_PORT}   (type a line: socat in dc1 echoes it back)")
    print(f"     meshfed intention create -deny -replace web socat -http-addr {dcs[0].servers[0].http}"
          "   (new connections are then closed by socat's sidecar; -allow -replace undoes it)")
    print(f"     meshfed federation check -http-addr {dcs[1].servers[0].http}   (Ctrl-C stops the demo)", flush=True)
