"""deploy/prometheus checked by Prometheus' own tools, and the certificate-expiry probe run for real.

`promtool` and the blackbox exporter are not Python packages; where they are not installed these
tests are skipped (Debian's `prometheus` and `prometheus-blackbox-exporter` packages ship them).
The metric names the files use are checked against the code in test_deploy_files.py whatever is
installed.

The probe test answers the question the alerts depend on: can the blackbox exporter complete a
TLS handshake with a meshfed server's RPC port, which requires a client certificate and speaks
gRPC, and does it report that certificate's expiry? The server side is the real gRPC server with
the credentials the agent builds (`rpc.tls.load_server_credentials`), on a loopback address.
"""

from __future__ import annotations

import datetime
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509

from meshfed.rpc.tls import create_ca, create_server_cert, load_server_credentials

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
HOST = "127.0.240.253"

promtool = shutil.which("promtool")
blackbox = shutil.which("blackbox_exporter") or shutil.which("prometheus-blackbox-exporter")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool is not installed")
needs_blackbox = pytest.mark.skipif(blackbox is None, reason="the blackbox exporter is not installed")


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run([promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")],  # type: ignore[list-item]
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d+ rules found", result.stdout)


@needs_promtool
def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    """Debian builds Prometheus without Kubernetes discovery, and its promtool refuses
    kubernetes_sd_configs; with such a promtool the Kubernetes jobs are left out of the check."""
    config = yaml.safe_load((PROMETHEUS / "scrape.yml").read_text())
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    # promtool insists that credential files exist; the operator provides the real one.
    token = tmp_path / "meshfed-token"
    token.write_text("00000000-0000-0000-0000-000000000000\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] == "/etc/prometheus/meshfed-token"
            job["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True,  # type: ignore[list-item]
                            timeout=60)
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        config["scrape_configs"] = [job for job in config["scrape_configs"] if "kubernetes_sd_configs" not in job]
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True,  # type: ignore[list-item]
                                timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(config["scrape_configs"]) >= 4


def test_the_tls_probe_modules_cover_every_datacenter() -> None:
    """The scrape job picks the module meshfed_tls_<datacenter label>; each checks server.<dc>.consul."""
    modules = yaml.safe_load((PROMETHEUS / "blackbox.yml").read_text())["modules"]
    for dc in ("dc1", "dc2"):
        assert modules[f"meshfed_tls_{dc}"]["tcp"]["tls_config"]["server_name"] == f"server.{dc}.consul"
    job = next(j for j in yaml.safe_load((PROMETHEUS / "scrape.yml").read_text())["scrape_configs"]
               if j["job_name"] == "meshfed-tls-servers")
    module_rule = next(rule for rule in job["relabel_configs"] if rule.get("target_label") == "__param_module")
    assert module_rule["source_labels"] == ["datacenter"] and module_rule["replacement"] == "meshfed_tls_$1"


# --- the probe against a real meshfed TLS endpoint ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _client_cert(directory: Path, ca_cert: str, ca_key: str) -> tuple[Path, Path]:
    """A client certificate for Prometheus, made the way deploy/README.md says (openssl)."""
    key, csr, cert = directory / "prometheus-key.pem", directory / "prometheus.csr", directory / "prometheus.pem"
    extensions = directory / "client.ext"
    extensions.write_text("extendedKeyUsage = clientAuth\n")
    for command in (
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-subj", "/CN=prometheus", "-out", str(csr)],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "365", "-extfile", str(extensions), "-out", str(cert)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, datetime.datetime]]:
    """A gRPC server with a dc1 server certificate that requires client certificates, as the agent
    runs it with verify_incoming; yields (address, directory with the CA, earliest expiry)."""
    ca = create_ca(str(tmp_path))
    cert = create_server_cert(str(tmp_path), ca, "dc1", days=30)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_secure_port(f"{HOST}:0", load_server_credentials(ca.cert_file, cert.cert_file, cert.key_file, True))
    server.start()
    expiries = [x509.load_pem_x509_certificate(Path(path).read_bytes()).not_valid_after_utc
                for path in (cert.cert_file, ca.cert_file)]
    (tmp_path / "consul-agent-ca.pem").write_bytes(Path(ca.cert_file).read_bytes())
    _client_cert(tmp_path, ca.cert_file, ca.key_file)
    yield f"{HOST}:{port}", tmp_path, min(expiries)
    server.stop(None)


@pytest.fixture
def exporter(tls_server: tuple[str, Path, datetime.datetime]) -> Iterator[str]:
    _, directory, _ = tls_server
    config = (PROMETHEUS / "blackbox.yml").read_text().replace("/etc/prometheus/meshfed-tls", str(directory))
    (directory / "blackbox.yml").write_text(config)
    check = subprocess.run([blackbox, "--config.file", str(directory / "blackbox.yml"), "--config.check"],  # type: ignore[list-item]
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    listen = f"{HOST}:{_free_port()}"
    process = subprocess.Popen([blackbox, "--config.file", str(directory / "blackbox.yml"),  # type: ignore[list-item]
                                "--web.listen-address", listen], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{listen}/metrics", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "the blackbox exporter did not start"
                time.sleep(0.1)
        yield listen
    finally:
        process.terminate()
        process.wait(timeout=10)


def _probe(exporter: str, module: str, target: str) -> dict[str, float]:
    url = f"http://{exporter}/probe?module={module}&target={target}"
    text = urllib.request.urlopen(url, timeout=15).read().decode()
    return {name: float(value) for name, value in re.findall(r"^(probe_\w+) (\S+)$", text, re.MULTILINE)}


@needs_blackbox
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_probe_reports_the_expiry_of_a_server_certificate(
    tls_server: tuple[str, Path, datetime.datetime], exporter: str
) -> None:
    target, _, expiry = tls_server

    samples = _probe(exporter, "meshfed_tls_dc1", target)

    assert samples["probe_success"] == 1
    assert samples["probe_ssl_earliest_cert_expiry"] == pytest.approx(expiry.timestamp(), abs=1)


@needs_blackbox
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_probe_fails_for_the_wrong_datacenter_name(
    tls_server: tuple[str, Path, datetime.datetime], exporter: str
) -> None:
    """A dc1 certificate checked as server.dc2.consul: the handshake fails, MeshfedTLSHandshakeFailing."""
    target, _, _ = tls_server
    assert _probe(exporter, "meshfed_tls_dc2", target)["probe_success"] == 0
