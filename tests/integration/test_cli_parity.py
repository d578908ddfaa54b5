"""The CLI commands operators reach for (issue #12 item 5), run as subprocesses against real servers:
info, reload (log level live, invalid files refused and the running config kept), monitor (a live
log stream that never carries a token), config write from stdin, intention list/get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from .harness import Datacenter, mesh_gateway_registration, wait_until

FAST_AE = {"federation_state_anti_entropy_sync_interval": "200ms"}


def cli(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def addr(server: Any) -> list[str]:
    return ["-http-addr", f"{server.address}:8500"]


@pytest.fixture
def dc1(make_dc) -> Datacenter:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", count=1, config={**FAST_AE, "log_level": "info", "ui_config": {"enabled": True}})
    dc.start()
    return dc


def poke(dc: Datacenter, server: Any, headers: dict[str, str] | None = None) -> None:
    """A catalog change: the leader's anti-entropy runs a round, and logs it at debug."""
    poke.count = getattr(poke, "count", 0) + 1  # type: ignore[attr-defined]
    body = mesh_gateway_registration(f"gw-{poke.count}", "10.0.0.1", "192.0.2.1")  # type: ignore[attr-defined]
    assert dc.put(server, "/v1/catalog/register", body, headers=headers or {}).status_code == 200


def _extra_file(dc: Datacenter) -> str:
    return next(p for p in dc.servers[0].config_files if p.endswith("-extra.json"))


class Monitor:
    """`meshfed monitor` in the background, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "meshfed.server.cli", "monitor", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(10)
        return "".join(self.lines)


def test_info_reports_consul_sections(dc1: Datacenter) -> None:
    result = cli("info", *addr(dc1.servers[0]))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for section in ("agent:", "build:", "consul:"):
        assert f"\n{section}\n" in f"\n{out}"
    assert "\tleader = true" in out and "\tserver = true" in out
    version = cli("version").stdout.strip()
    assert version.startswith("meshfed v") and f"\tversion = {version.removeprefix('meshfed v')}" in out


def test_reload_changes_the_log_level_live_and_refuses_invalid_files(dc1: Datacenter) -> None:
    server = dc1.servers[0]
    path = _extra_file(dc1)
    with open(path) as f:
        good = json.load(f)
    poke(dc1, server)
    time.sleep(1)
    assert "anti-entropy round" not in server.log_tail(500)  # a debug line, at info

    with open(path, "w") as f:
        json.dump({**good, "log_level": "debug"}, f)
    result = cli("reload", *addr(server))
    assert result.returncode == 0, result.stderr
    assert "Configuration reload triggered" in result.stdout
    wait_until(lambda: poke(dc1, server) or "anti-entropy round" in server.log_tail(500), 10, interval=0.5,
               what="debug lines after reload")
    assert "reload: applied log_level=debug" in server.log_tail(500)

    with open(path, "w") as f:
        json.dump({**good, "log_level": "debug", "leave_on_terminat": True}, f)
    bad = cli("reload", *addr(server))
    assert bad.returncode == 1
    assert path in bad.stderr and "leave_on_terminat" in bad.stderr and "did you mean leave_on_terminate?" in bad.stderr
    assert "HTTP 400" in bad.stderr
    assert dc1.get(server, "/v1/status/leader").status_code == 200  # still serving, config kept

    with open(path, "w") as f:
        json.dump(good, f)  # back to info: debug lines stop
    assert cli("reload", *addr(server)).returncode == 0
    time.sleep(0.5)
    marker = len(open(server.log_path).read())  # noqa: SIM115
    poke(dc1, server)
    time.sleep(1.5)
    assert "anti-entropy round" not in open(server.log_path).read()[marker:]  # noqa: SIM115


def test_monitor_streams_log_lines_at_its_level_and_never_a_token(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", count=1, config={**FAST_AE, "acl": {"enabled": True, "default_policy": "deny"}})
    dc.start()
    server = dc.servers[0]
    # Bootstrapped, not from the config file: the monitor's redaction of configured secrets must not
    # be what keeps this one out of the stream.
    management = wait_until(lambda: dc.put(server, "/v1/acl/bootstrap").json()["SecretID"], 20, what="bootstrap")

    denied = cli("monitor", *addr(server))  # no token: agent:read is missing
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr

    debug = Monitor("-log-level", "debug", "-token", management, *addr(server))
    info = Monitor("-log-level", "info", "-http-addr", f"{server.address}:8500", "-token", management)
    try:
        mgmt = {"X-Consul-Token": management}
        wait_until(lambda: poke(dc, server, mgmt) or debug.saw("anti-entropy round"), 15, interval=0.5,
                   what="a debug line on the debug monitor")
        # Requests carrying secrets, good and bad, and a reload that logs at info.
        for token, status in ((management, 200), ("00000000-1111-2222-3333-444444444444", 403)):
            dc.get(server, "/v1/catalog/services", headers={"X-Consul-Token": token})
            assert dc.put(server, "/v1/agent/reload", headers={"X-Consul-Token": token}).status_code == status
        assert dc.put(server, "/v1/agent/reload").status_code == 403  # anonymous: no agent:write
        # The info monitor is a second process that may connect after that reload on a loaded
        # host: reload again until its stream shows one.
        wait_until(lambda: info.saw("reload: applied")
                   or dc.put(server, "/v1/agent/reload", headers=mgmt).status_code == 0, 15, interval=0.5,
                   what="the reload line on the info monitor")
        assert not info.saw("anti-entropy round")  # below its level
        assert "anti-entropy round" not in server.log_tail(500)  # the server's own log stays at info
    finally:
        streamed = debug.stop() + info.stop()
    assert management not in streamed and "00000000-1111-2222-3333-444444444444" not in streamed
    assert management not in open(server.log_path).read()  # noqa: SIM115
    # The server dropped both streams: the root logger is back to the configured level.
    assert dc.get(server, "/v1/status/leader").status_code == 200
    bad_level = dc.get(server, "/v1/agent/monitor?loglevel=loud", headers={"X-Consul-Token": management})
    assert bad_level.status_code == 400 and "loglevel" in bad_level.text


def test_config_write_from_stdin_and_intention_list_get(dc1: Datacenter) -> None:
    server = dc1.servers[0]
    entry = 'Kind = "service-defaults"\nName = "web"\nProtocol = "http"\n'
    written = cli("config", "write", *addr(server), "-", stdin=entry)
    assert written.returncode == 0, written.stderr
    assert "Config entry written: service-defaults/web" in written.stdout
    read = cli("config", "read", "-kind", "service-defaults", "-name", "web", *addr(server))
    assert json.loads(read.stdout)["Protocol"] == "http"
    broken = cli("config", "write", *addr(server), "-", stdin="Kind = \n")
    assert broken.returncode == 1 and "stdin" in broken.stderr

    assert "There are no intentions." in cli("intention", "list", *addr(server)).stdout
    assert cli("intention", "create", "-deny", "web", "db", *addr(server)).returncode == 0
    assert cli("intention", "create", "api", "db", *addr(server)).returncode == 0
    listing = cli("intention", "list", *addr(server)).stdout.splitlines()
    assert listing[0].split() == ["ID", "Source", "Action", "Destination", "Precedence"]
    rows = {tuple(line.split()[-4:-1]) for line in listing[1:]}  # exact-match intentions have no ID
    assert rows == {("web", "deny", "db"), ("api", "allow", "db")}

    by_names = cli("intention", "get", "web", "db", *addr(server))
    assert by_names.returncode == 0, by_names.stderr
    fields = dict((line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in by_names.stdout.splitlines())
    assert fields["Source"] == "web" and fields["Destination"] == "db" and fields["Action"] == "deny"
    # The legacy API gives an intention an ID; `get` takes it alone.
    created = dc1.session.post(server.http + "/v1/connect/intentions",
                               json={"SourceName": "old", "DestinationName": "legacy", "Action": "allow"}, timeout=10)
    assert created.status_code == 200, created.text
    by_id = cli("intention", "get", created.json()["ID"], *addr(server))
    assert by_id.returncode == 0, by_id.stderr
    fields = dict((line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in by_id.stdout.splitlines())
    assert (fields["Source"], fields["Destination"], fields["ID"]) == ("old", "legacy", created.json()["ID"])
    missing = cli("intention", "get", "nobody", "db", *addr(server))
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr


def test_validate_uses_the_agents_loader(tmp_path: Any) -> None:
    key = cli("keygen").stdout.strip()
    good = tmp_path / "conf"
    good.mkdir()
    (good / "server.hcl").write_text(f'node_name = "s1"\ndata_dir = "{tmp_path}/data"\nencrypt = "{key}"\n'
                                     'ports { grpc = 8502 }\nui_config { enabled = true }\n')
    ok = cli("validate", str(good))
    assert ok.returncode == 0 and ok.stdout.strip() == "Configuration is valid!"
    assert ok.stderr.count("not used") == 1 and "ports.grpc, ui_config" in ok.stderr
    (good / "typo.json").write_text('{"ports": {"htp": 8500}}')
    bad = cli("validate", str(good / "server.hcl"), str(good / "typo.json"))
    assert bad.returncode == 1 and "Configuration is valid!" not in bad.stdout
    assert f"{good / 'typo.json'}: ports.htp: unknown key (did you mean ports.http?)" in bad.stderr
    assert cli("validate", str(tmp_path / "nothing.hcl")).returncode == 1


def test_tls_cert_create_client_uses_consuls_file_names(tmp_path: Any) -> None:
    from cryptography import x509

    assert cli("tls", "ca", "create", "-dir", str(tmp_path)).returncode == 0
    for n in (0, 1):
        made = cli("tls", "cert", "create", "-client", "-dc", "dc2", "-dir", str(tmp_path))
        assert made.returncode == 0, made.stderr
        assert f"dc2-client-consul-{n}.pem" in made.stdout and f"dc2-client-consul-{n}-key.pem" in made.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / "dc2-client-consul-0.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=client.dc2.consul"
    ca = x509.load_pem_x509_certificate((tmp_path / "consul-agent-ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert os.stat(tmp_path / "dc2-client-consul-0-key.pem").st_mode & 0o077 == 0
    both = cli("tls", "cert", "create", "-client", "-server", "-dir", str(tmp_path))
    assert both.returncode == 1 and "one of -server or -client" in both.stderr
