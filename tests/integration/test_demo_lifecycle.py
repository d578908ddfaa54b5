"""`meshfed demo` as an operator runs it (issue #8 item 9): every stop signal stops every child,
a second demo on busy addresses refuses, the cluster key is on no command line, and the demo's
files are removed on exit unless kept. Processes are observed through /proc, as `ps` would."""

from __future__ import annotations

import glob
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from .conftest import next_block
from .test_federation import tcp_peers


class Demo:
    """A `meshfed demo` subprocess whose output is collected line by line."""

    def __init__(self, base: str, tmp: Path, *args: str) -> None:
        env = {**os.environ, "TMPDIR": str(tmp)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "meshfed.server.cli", "demo", "-base", base, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None or text in self.output(), f"demo exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.output()}"
            time.sleep(0.1)

    def root(self) -> str:
        match = re.search(r"keys and logs in (\S+) \(", self.output())
        assert match, self.output()
        return match.group(1)

    def children(self) -> list[int]:
        return [pid for pid in _pids() if _field(pid, "PPid") == str(self.process.pid)]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _field(pid: int, name: str) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return line.split()[1]
    except OSError:
        pass
    return ""


def _alive(pid: int) -> bool:
    return _field(pid, "State") not in ("", "Z")


def _cmdlines() -> dict[int, bytes]:
    result = {}
    for pid in _pids():
        try:
            result[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            pass
    return result


def _assert_everything_stopped(demo: Demo, children: list[int], root: str) -> None:
    assert demo.process.wait(30) == 0, demo.output()
    survivors = [pid for pid in children if _alive(pid)]
    survivors += [pid for pid, cmdline in _cmdlines().items() if root.encode() in cmdline and _alive(pid)]
    assert survivors == [], f"processes outlived the demo: {survivors}"


def test_sigterm_stops_every_child_busy_addresses_refuse_a_second_demo_and_keys_stay_private(tmp_path: Path) -> None:
    base = f"127.0.{next_block(2)}"  # the demo's second datacenter uses the next block
    demo = Demo(base, tmp_path)
    try:
        demo.wait_for("federation is up.")
        demo.wait_for("service mesh is up")
        root = demo.root()
        children = demo.children()
        assert len(children) == 11, demo.output()  # 6 servers, 2 gateways, echo and two sidecars
        web_host = f"{base.rsplit('.', 1)[0]}.{int(base.rsplit('.', 1)[1]) + 1}.30"
        assert f"try: nc {web_host} 8181" in demo.output()
        with socket.create_connection((web_host, 8181), timeout=5) as conn:  # what the printed command does
            conn.sendall(b"hello\n")
            assert conn.recv(64) == b"hello\n"

        # ACLs on with default deny: the management token is in a 0600 file the output names.
        token_file = os.path.join(root, "management-token")
        assert f"export CONSUL_HTTP_TOKEN=$(cat {token_file})" in demo.output()
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        management = Path(token_file).read_text().strip()
        secrets = [Path(p).read_text().strip() for p in glob.glob(os.path.join(root, "*-token"))]
        assert len(secrets) == 5 and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600
                                         for p in glob.glob(os.path.join(root, "*-token")))
        assert not [pid for pid, cmdline in _cmdlines().items() for secret in secrets if secret.encode() in cmdline]
        register = {"Node": "n1", "Address": "127.0.0.9"}
        url = f"http://{base}.1:8500/v1/catalog/register"
        assert requests.put(url, json=register, timeout=10).status_code == 403
        assert requests.put(url, json=register, headers={"X-Consul-Token": management}, timeout=10).status_code == 200

        key_files = glob.glob(os.path.join(root, "*", "*-encrypt.json"))
        assert len(key_files) == 6
        assert {stat.S_IMODE(os.stat(path).st_mode) for path in key_files} == {0o600}
        keys = {Path(path).read_text().split('"')[3] for path in key_files}
        assert len(keys) == 2  # one per datacenter
        leaked = [pid for pid, cmdline in _cmdlines().items() for key in keys if key.encode() in cmdline]
        assert leaked == [], "the cluster key is on a command line"

        second = Demo(base, tmp_path)
        assert second.process.wait(60) == 1, second.output()
        time.sleep(0.2)  # let the reader thread take the last lines
        assert f"address in use: {base}.1:8500" in second.output()
        assert "federation is up" not in second.output()
        assert os.listdir(tmp_path) == [os.path.basename(root)], "the refused demo left its files"

        demo.process.send_signal(signal.SIGTERM)
        _assert_everything_stopped(demo, children, root)
        assert not os.path.exists(root), "the demo's files (with keys) outlived it"
    finally:
        if demo.process.poll() is None:
            demo.process.kill()


def test_sighup_while_starting_stops_every_child_and_keep_data_keeps_the_files(tmp_path: Path) -> None:
    base = f"127.0.{next_block(2)}"
    demo = Demo(base, tmp_path, "-keep-data")
    try:
        demo.wait_for("dc2 has a leader")  # the servers run; the gateways start after the ACL setup
        root = demo.root()
        children = demo.children()
        assert len(children) in (6, 8), demo.output()  # the gateways may have started by now
        assert "service mesh is up" not in demo.output()
        demo.process.send_signal(signal.SIGHUP)
        _assert_everything_stopped(demo, children, root)
        assert "stopping (SIGHUP)" in demo.output()
        assert glob.glob(os.path.join(root, "dc1", "dc1-s1.log")), "-keep-data did not keep the files"
    finally:
        if demo.process.poll() is None:
            demo.process.kill()


def test_peering_demo_echoes_through_the_peering_and_sigterm_stops_every_child(tmp_path: Path) -> None:
    """`meshfed demo -peering` (issue #11 item 7): two independent clusters, peered by the
    walkthrough's own calls; the printed command reaches socat in cluster-01 from cluster-02."""
    base = f"127.0.{next_block(2)}"
    second = f"{base.rsplit('.', 1)[0]}.{int(base.rsplit('.', 1)[1]) + 1}"
    started = time.monotonic()
    demo = Demo(base, tmp_path, "-peering")
    try:
        demo.wait_for("peering is up", timeout=60)
        ready = time.monotonic() - started
        root = demo.root()
        children = demo.children()
        assert len(children) == 11, demo.output()  # 3 + 3 servers, 2 gateways, echo and two sidecars
        match = re.search(r"try: nc (\S+) (\d+)", demo.output())
        assert match, demo.output()
        with socket.create_connection((match.group(1), int(match.group(2))), timeout=5) as conn:
            conn.sendall(b"through the peering\n")
            assert conn.recv(64) == b"through the peering\n"

        # Independent clusters: each has its own management token (the other's is refused there),
        # and each reads the peering ACTIVE.
        tokens = {name: Path(root, f"{name}-management-token").read_text().strip()
                  for name in ("cluster-01", "cluster-02")}
        peerings = {"cluster-01": (f"http://{base}.1:8500", "cluster-02"),
                    "cluster-02": (f"http://{second}.1:8500", "cluster-01")}
        for name, (http, peer) in peerings.items():
            other = tokens["cluster-02" if name == "cluster-01" else "cluster-01"]
            url = f"{http}/v1/peering/{peer}"
            assert requests.get(url, headers={"X-Consul-Token": tokens[name]}, timeout=10).json()["State"] == "ACTIVE"
            assert requests.get(url, headers={"X-Consul-Token": other}, timeout=10).status_code == 403
        # The bytes went through both gateways: cluster-02's towards the peer, cluster-01's to socat;
        # the servers peer through them too (the demo's mesh entries).
        assert 'route="peer-remote:' in requests.get(f"http://{second}.10:19000/metrics", timeout=5).text
        assert 'route="service:socat"' in requests.get(f"http://{base}.10:19000/metrics", timeout=5).text
        assert 'route="local:any"' in requests.get(f"http://{base}.10:19000/metrics", timeout=5).text
        deadline = time.monotonic() + 15
        while 'route="peer-server:server.dc1.consul"' not in requests.get(f"http://{second}.10:19000/metrics",
                                                                          timeout=5).text:
            assert time.monotonic() < deadline, "cluster-02's leader does not call cluster-01 through its gateway"
            time.sleep(0.3)

        # Socket audit: no server of one cluster holds a connection to a server of the other.
        servers = {1: f"{base}.", 2: f"{second}."}
        audited = 0
        for pid, cmdline in _cmdlines().items():
            if pid in children and b"\0-server\0" in cmdline:
                audited += 1
                other = servers[2 if b"\0dc1\0" in cmdline else 1]
                assert not [(h, p) for h, p in tcp_peers(pid) if h.startswith(other) and h != other + "10"], cmdline
        assert audited == 6

        demo.process.send_signal(signal.SIGTERM)
        _assert_everything_stopped(demo, children, root)
        assert "stopping (SIGTERM)" in demo.output()
        assert not os.path.exists(root)
        print(f"peering demo ready after {ready:.1f}s, stopped after {time.monotonic() - started:.1f}s")
    finally:
        if demo.process.poll() is None:
            demo.process.kill()
