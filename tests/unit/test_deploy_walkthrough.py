"""deploy/README.md's Kubernetes walkthrough, steps 2 and 3, against the manifests.

Step 2 (the secrets) is run as written, with this checkout's `meshfed` on the PATH; step 3's
`kubectl create secret` lines are read for the keys they create. The files must be exactly the
keys the pods mount, and with the overlay's ConfigMap they must make a server whose
configuration loads and whose TLS certificate, key and CA belong together.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from meshfed.rpc.tls import load_server_credentials
from meshfed.server.config.loader import load
from tests.unit.test_deploy_kubernetes import OVERLAYS, PRIMARY, RENDERED, ROOT, one, pod_specs

README = ROOT / "deploy" / "README.md"


def _readme_block(heading: str) -> str:
    """The first ```sh block after the heading that starts with `heading`."""
    text = README.read_text()
    start = text.index(f"\n### {heading}")
    return re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL).group(1)  # type: ignore[union-attr]


def _readme_secrets() -> dict[str, dict[str, str]]:
    """Step 3: Secret name -> {key in the Secret: file it is made from}, with $dc left in."""
    script = _readme_block("3.").replace("\\\n", " ")
    secrets: dict[str, dict[str, str]] = {}
    for name, rest in re.findall(r"create secret generic (\S+)((?: +--from-file=\S+)+)", script):
        secrets[name] = dict(item.split("=", 1) for item in re.findall(r"--from-file=(\S+)", rest))
    return secrets


def _mounted_keys(dc: str) -> dict[str, set[str]]:
    """Secret name -> the keys the pods of `dc` read from it."""
    keys: dict[str, set[str]] = {}
    for _, spec in pod_specs(RENDERED[dc]):
        for volume in spec.get("volumes", []):
            sources = [volume["secret"] | {"name": volume["secret"]["secretName"]}] if "secret" in volume else [
                source["secret"] for source in volume.get("projected", {}).get("sources", []) if "secret" in source]
            for source in sources:
                keys.setdefault(source["name"], set()).update(item["key"] for item in source["items"])
    return keys


@pytest.mark.parametrize("dc", OVERLAYS)
def test_the_readme_creates_every_secret_key_the_pods_read(dc: str) -> None:
    made = {name: set(files) for name, files in _readme_secrets().items()}
    assert made == _mounted_keys(dc)


@pytest.fixture(scope="module")
def readme_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs step 2 as written, with this checkout's `meshfed` first on the PATH."""
    root = tmp_path_factory.mktemp("readme")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(root)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", _readme_block("2.")], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return root / "meshfed-secrets"


@pytest.mark.parametrize("dc", OVERLAYS)
def test_the_readme_secrets_make_a_server_that_loads(dc: str, readme_secrets: Path, tmp_path: Path) -> None:
    """Step 3's files, where the pods see them, with the overlay's ConfigMap: config.load accepts
    the result and the TLS files are a matching certificate, key and CA for server.<dc>.consul."""
    files = {name: {key: readme_secrets.parent / path.replace("$dc", dc) for key, path in keys.items()}
             for name, keys in _readme_secrets().items()}
    for path in (p for keys in files.values() for p in keys.values()):
        assert path.is_file() and path.stat().st_mode & 0o077 == 0, f"{path} missing or readable by others"
    config_dir, tls_dir = tmp_path / "meshfed.d", tmp_path / "tls"
    config_dir.mkdir()
    tls_dir.mkdir()
    for name, text in one(RENDERED[dc], "ConfigMap", "meshfed-config")["data"].items():
        (config_dir / name).write_text(text.replace("/etc/meshfed/tls", str(tls_dir)))
    for secret in ("meshfed-encrypt", "meshfed-acl"):
        for key, path in files[secret].items():
            shutil.copy(path, config_dir / key)
    for key, path in files["meshfed-tls"].items():
        shutil.copy(path, tls_dir / key)

    config = load([str(p) for p in sorted(config_dir.iterdir())], {"node_name": "meshfed-0", "advertise_addr": "10.0.0.1",
                  "retry_join": ["10.0.0.2", "10.0.0.3"]})

    assert config.datacenter == dc and config.acl.enabled
    assert (config.acl.tokens.initial_management != "") == (dc == PRIMARY)
    assert (config.acl.tokens.replication != "") == (dc != PRIMARY)
    load_server_credentials(config.tls.ca_file, config.tls.cert_file, config.tls.key_file, True)
    cert = x509.load_pem_x509_certificate((tls_dir / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"server.{dc}.consul" in names
