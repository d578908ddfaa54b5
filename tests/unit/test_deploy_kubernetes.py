"""deploy/kubernetes against the Kubernetes schemas and against meshfed's own CLI and config.

The manifests are a kustomize base and one overlay per datacenter (dc1 the primary, dc2 a
secondary). Nothing here needs a cluster or the network:
- every file and every rendered overlay passes ``kubernetes-validate --strict`` (its schemas ship
  in the package);
- the overlays are rendered by the small renderer below, which knows only the kustomize fields
  the overlays use and refuses any other; where ``kubectl`` is installed, its own ``kustomize``
  must give the same objects;
- each ``meshfed`` command line goes through the real parser (``server/cli/main.py``) and each
  server's files and flags through ``config.load``, whose schema (``server/config/schema.py``)
  refuses unknown keys; the keys are also checked against the schema directly;
- secrets reach the processes only as files of mode 0400, never as env values or arguments.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl
import kubernetes_validate
import pytest
import yaml

from meshfed.server.cli.flags import agent_overrides
from meshfed.server.cli.main import build_parser
from meshfed.server.config.loader import generate_key, load
from meshfed.server.config.schema import BLOCKS, SCHEMA
from meshfed.server.dataplane.gateway import parse_address

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = {"dc1": "primary", "dc2": "secondary"}
PRIMARY = "dc1"
# The oldest Kubernetes the manifests promise to work on (policy/v1 PDBs, seccompProfile fields)
# and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# The Secrets an operator creates by hand (deploy/README.md); the manifests hold none of them.
SECRETS = {"meshfed-encrypt", "meshfed-acl", "meshfed-tls", "meshfed-gateway-token"}
SECRET_MODE = 0o400
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches"}


# --- a renderer for the kustomize fields the overlays use ---------------------------------------


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge, as far as the overlays need it: maps merge key by key, lists of named
    objects (containers, env, volumes, ports) merge by name, other lists are replaced."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif _named_list(value) and _named_list(current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZE_FIELDS
    assert not unknown, f"{directory}: this renderer does not implement {sorted(unknown)}; extend it"
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        docs += render(path) if path.is_dir() else _documents(path)
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, f"{directory}: only strategic-merge patch files are rendered"
        body = yaml.safe_load((directory / patch["path"]).read_text())
        targets = [d for d in docs if (d["kind"], d["metadata"]["name"]) == (body["kind"], body["metadata"]["name"])]
        assert len(targets) == 1, f"{patch['path']} matches {len(targets)} objects"
        _merge(targets[0], body)
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


RENDERED = {dc: render(KUBERNETES / dc) for dc in OVERLAYS}
MANIFEST_FILES = sorted(KUBERNETES.glob("*/*.yaml"))


# --- schemas ------------------------------------------------------------------------------------


def _patch_files() -> set[Path]:
    return {
        directory / patch["path"]
        for directory in (KUBERNETES / dc for dc in OVERLAYS)
        for patch in yaml.safe_load((directory / "kustomization.yaml").read_text()).get("patches", [])
    }


# Whole objects are validated as they are; patches are partial objects (no selector, no
# containers), so they are validated as part of the rendered overlays below, where strict mode
# still refuses a misspelt field in them.
WHOLE_OBJECTS = [p for p in MANIFEST_FILES if p.name != "kustomization.yaml" and p not in _patch_files()]


def test_every_manifest_file_is_validated_one_way_or_the_other() -> None:
    kustomizations = {p for p in MANIFEST_FILES if p.name == "kustomization.yaml"}
    assert set(MANIFEST_FILES) == kustomizations | _patch_files() | set(WHOLE_OBJECTS)
    assert len(WHOLE_OBJECTS) >= 8 and len(_patch_files()) >= 4


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", WHOLE_OBJECTS, ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_manifest_file_passes_strict_validation(path: Path, version: str) -> None:
    for doc in _documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("dc", OVERLAYS)
def test_rendered_overlay_passes_strict_validation(dc: str, version: str) -> None:
    for doc in RENDERED[dc]:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_an_unknown_field() -> None:
    """Guards the two tests above: strict mode must really refuse a field Kubernetes lacks."""
    statefulset = copy.deepcopy(one(RENDERED["dc1"], "StatefulSet", "meshfed"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["argz"] = ["agent"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("dc", OVERLAYS)
def test_the_renderer_agrees_with_kubectl_kustomize(dc: str) -> None:
    result = subprocess.run(["kubectl", "kustomize", str(KUBERNETES / dc)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    theirs = {_key(doc): doc for doc in yaml.safe_load_all(result.stdout) if doc}
    ours = {_key(doc): doc for doc in RENDERED[dc]}
    assert theirs == ours


def test_each_datacenter_has_its_servers_and_gateways() -> None:
    for dc, docs in RENDERED.items():
        kinds = {_key(doc) for doc in docs}
        assert {("Namespace", f"meshfed-{dc}"), ("StatefulSet", "meshfed"), ("Service", "meshfed"),
                ("ConfigMap", "meshfed-config"), ("PodDisruptionBudget", "meshfed"),
                ("Deployment", "mesh-gateway"), ("Service", "mesh-gateway")} <= kinds
        assert one(docs, "StatefulSet", "meshfed")["spec"]["replicas"] == 3
        assert all(doc["metadata"].get("namespace") == f"meshfed-{dc}" for doc in docs if doc["kind"] != "Namespace")
        gateway_service = one(docs, "Service", "mesh-gateway")["spec"]
        assert gateway_service["type"] in ("NodePort", "LoadBalancer")
        assert [port["port"] for port in gateway_service["ports"]] == [8443]
        for name in ("meshfed", "mesh-gateway"):
            labels = _pod_labels(docs, name)
            assert labels["meshfed.io/datacenter"] == dc
            assert labels["meshfed.io/datacenter-role"] == OVERLAYS[dc]


def _pod_labels(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    kind = "StatefulSet" if name == "meshfed" else "Deployment"
    return one(docs, kind, name)["spec"]["template"]["metadata"]["labels"]


# --- the server command line and config --------------------------------------------------------


def container_of(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    return container


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion; an unknown variable is a manifest bug, not a literal."""
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in env, f"$({match.group(1)}) is not defined in the container's env"
        return env[match.group(1)]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value, text)


def _env(container: dict[str, Any], docs: list[dict[str, Any]], fields: dict[str, str]) -> dict[str, str]:
    """The container's env as the kubelet would resolve it, with `fields` for the downward API."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = _expand(var["value"], env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = one(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            raise AssertionError(f"{var['name']}: only values, fields and ConfigMap keys are allowed in env")
    return env


def _write_config_dir(directory: Path, docs: list[dict[str, Any]], dc: str) -> None:
    """What -config-dir sees in a pod: the ConfigMap's files and the Secrets' files."""
    for name, text in one(docs, "ConfigMap", "meshfed-config")["data"].items():
        (directory / name).write_text(text)
    (directory / "encrypt.hcl").write_text(f'encrypt = "{generate_key()}"\n')
    token_key = "initial_management" if dc == PRIMARY else "replication"
    (directory / "acl-tokens.hcl").write_text(f'acl {{\n  tokens {{\n    {token_key} = "{uuid.uuid4()}"\n  }}\n}}\n')


def _parse(args: list[str]) -> Any:
    """The real `meshfed` parser; every flag must be spelt out in full. argparse (3.11) still takes
    a unique prefix of a single-dash flag despite allow_abbrev=False, so `-expose-server` would
    pass the parser and then break when the parser changes; the manifests never rely on that."""
    namespace = build_parser().parse_args(args)
    known = set(namespace.command_parser._option_string_actions)
    spelt = [arg for arg in args if arg.startswith("-") and not re.fullmatch(r"-?\d+", arg)]
    assert [flag for flag in spelt if flag not in known] == [], "abbreviated or unknown flags"
    return namespace


def _server_config(dc: str, ordinal: int, tmp_path: Path) -> Any:
    docs = RENDERED[dc]
    statefulset = one(docs, "StatefulSet", "meshfed")
    container = container_of(statefulset["spec"]["template"]["spec"])
    assert container["command"] == ["meshfed"]
    _write_config_dir(tmp_path, docs, dc)
    pod = f"{statefulset['metadata']['name']}-{ordinal}"
    env = _env(container, docs, {"metadata.name": pod, "metadata.namespace": f"meshfed-{dc}"})
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    args = [_expand(arg, env).replace(mounts["config"], str(tmp_path)) for arg in container["args"]]
    files, overrides, dev = agent_overrides(_parse(args))
    return load(files, overrides, dev=dev)


@pytest.mark.parametrize("ordinal", [0, 1, 2])
@pytest.mark.parametrize("dc", OVERLAYS)
def test_server_pod_arguments_and_files_make_a_valid_config(dc: str, ordinal: int, tmp_path: Path) -> None:
    config = _server_config(dc, ordinal, tmp_path)

    assert config.node_name == f"meshfed-{ordinal}"
    assert config.datacenter == dc
    assert config.primary_datacenter == PRIMARY
    assert config.bootstrap_expect == 3
    assert len(config.retry_join) == 2 and config.raft_address not in config.retry_join
    assert all(peer.endswith(f".meshfed.meshfed-{dc}.svc.cluster.local:8301") for peer in config.retry_join)
    assert config.data_dir == "/var/lib/meshfed"
    assert config.connect.enable_mesh_gateway_wan_federation and config.tls.verify_server_hostname
    assert config.acl.enabled and config.acl.default_policy == "deny"
    assert bool(config.primary_gateways) == (dc != PRIMARY)
    assert config.acl.enable_token_replication == (dc != PRIMARY), "the gateway's token must reach dc2"


def _hcl_keys(raw: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, value in raw.items():
        key = prefix + name
        if key in BLOCKS:
            for part in value if isinstance(value, list) else [value]:
                yield from _hcl_keys(part, key + ".")
        else:
            yield key


@pytest.mark.parametrize("dc", OVERLAYS)
def test_every_config_key_is_in_the_schema(dc: str) -> None:
    """load() refuses unknown keys today; this stays true if it ever only warns about them."""
    keys = [key for text in one(RENDERED[dc], "ConfigMap", "meshfed-config")["data"].values()
            for key in _hcl_keys(hcl.loads(text))]
    assert "datacenter" in keys and "tls.defaults.cert_file" in keys
    assert [key for key in keys if key not in SCHEMA] == []


def test_the_tls_files_named_in_the_config_are_the_mounted_ones(tmp_path: Path) -> None:
    config = _server_config("dc1", 0, tmp_path)
    spec = one(RENDERED["dc1"], "StatefulSet", "meshfed")["spec"]["template"]["spec"]
    mount = next(m["mountPath"] for m in container_of(spec)["volumeMounts"] if m["name"] == "tls")
    volume = next(v for v in spec["volumes"] if v["name"] == "tls")
    mounted = {f"{mount}/{item['path']}" for item in volume["secret"]["items"]}
    assert {config.tls.ca_file, config.tls.cert_file, config.tls.key_file} == mounted


def test_the_secondary_still_has_the_primary_gateway_placeholder() -> None:
    """dc2 must be told where dc1's gateways are; the shipped value cannot resolve, so a forgotten
    edit fails loudly (deploy/README.md says to replace it)."""
    text = one(RENDERED["dc2"], "ConfigMap", "meshfed-config")["data"]["datacenter.hcl"]
    assert hcl.loads(text)["primary_gateways"] == ["dc1-mesh-gateway.invalid:30443"]


# --- the gateway command line ------------------------------------------------------------------


def gateway(dc: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    docs = RENDERED[dc]
    spec = one(docs, "Deployment", "mesh-gateway")["spec"]["template"]["spec"]
    container = container_of(spec)
    env = _env(container, docs, {"metadata.name": "mesh-gateway-5d8f-abcde", "status.podIP": "10.1.2.3",
                                 "status.hostIP": "192.0.2.7"})
    args = [_expand(arg, env) for arg in container["args"]]
    return _parse(args), container, spec


@pytest.mark.parametrize("dc", OVERLAYS)
def test_gateway_arguments_parse_and_match_the_datacenter(dc: str) -> None:
    ns, container, _ = gateway(dc)
    docs = RENDERED[dc]

    assert ns.command == "gateway" and ns.dc == dc
    assert ns.expose_servers, "without -expose-servers other datacenters cannot reach the servers"
    assert ns.node == "mesh-gateway-5d8f-abcde"
    assert parse_address(ns.bind, "-bind") == ("10.1.2.3", 8443)
    assert parse_address(ns.wan_address, "-wan-address") == ("192.0.2.7", 30443)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["wan"] == 8443
    service_port = one(docs, "Service", "mesh-gateway")["spec"]["ports"][0]
    assert (service_port["targetPort"], service_port["nodePort"]) == ("wan", 30443)
    admin = parse_address(ns.admin_bind, "-admin-bind")
    annotations = one(docs, "Deployment", "mesh-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert admin[1] == ports["admin"] == int(annotations["prometheus.io/port"])
    for addr in ns.http_addr:
        service, port = addr.rsplit(":", 1)
        assert int(port) in [p["port"] for p in one(docs, "Service", service)["spec"]["ports"]]


def test_gateway_command_reads_its_token_from_the_mounted_file_and_execs_meshfed() -> None:
    _, container, spec = gateway("dc1")
    shell, flag, script, argv0 = container["command"]
    assert (shell, flag, argv0) == ("/bin/sh", "-c", "meshfed")
    assert shlex.split(script)[-3:] == ["exec", "meshfed", "$@"]
    token_path = re.search(r'\$\(cat ([^)]+)\)', script).group(1)
    mount = next(m for m in container["volumeMounts"] if token_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert token_path == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}"


def test_gateway_shell_wrapper_passes_arguments_and_token_through(tmp_path: Path) -> None:
    """Runs the manifest's own shell line with `meshfed` replaced by a recorder."""
    _, container, _ = gateway("dc1")
    script = container["command"][2]
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    recorder = tmp_path / "meshfed"
    recorder.write_text(f'#!{sys.executable}\nimport json, os, sys\n'
                        'print(json.dumps([sys.argv[1:], os.environ.get("CONSUL_HTTP_TOKEN")]))\n')
    recorder.chmod(0o755)
    script = script.replace("/etc/meshfed/gateway/token", str(token))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}

    result = subprocess.run(["/bin/sh", "-c", script, "meshfed", "gateway", "-dc", "a b"], env=env,
                            capture_output=True, text=True, timeout=10)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["gateway", "-dc", "a b"], "s3cret-token"]


# --- secrets -----------------------------------------------------------------------------------


def _secret_sources(volume: dict[str, Any]) -> Iterator[tuple[str, int | None]]:
    """(Secret name, mode) of a volume's Secret files."""
    if "secret" in volume:
        yield volume["secret"]["secretName"], volume["secret"].get("defaultMode")
    for source in volume.get("projected", {}).get("sources", []):
        if "secret" in source:
            yield source["secret"]["name"], volume["projected"].get("defaultMode")


@pytest.mark.parametrize("dc", OVERLAYS)
def test_secrets_are_files_of_mode_0400_and_never_env_or_arguments(dc: str) -> None:
    docs = RENDERED[dc]
    assert not [doc for doc in docs if doc["kind"] == "Secret"], "secrets never live in the repository"
    used: set[str] = set()
    for name, spec in pod_specs(docs):
        for volume in spec.get("volumes", []):
            for secret, mode in _secret_sources(volume):
                used.add(secret)
                assert mode == SECRET_MODE, f"{name}: Secret {secret} is mounted with mode {mode!r}"
        for container in spec["containers"]:
            for var in container.get("env", []):
                assert "secretKeyRef" not in var.get("valueFrom", {}), f"{name}: {var['name']} from a Secret"
                assert not re.search(r"TOKEN|KEY|ENCRYPT|PASSWORD", var["name"]), f"{name}: {var['name']}"
            words = " ".join([*container.get("command", []), *container.get("args", [])])
            assert not re.search(r"(^|\s)--?(token|encrypt)(\s|=|$)", words), f"{name}: a secret flag"
    assert used == SECRETS


def test_first_start_settings() -> None:
    """Without these, three pods that wait for a leader before being ready wait for each other."""
    docs = RENDERED["dc1"]
    statefulset = one(docs, "StatefulSet", "meshfed")["spec"]
    headless = one(docs, "Service", "meshfed")["spec"]
    assert statefulset["podManagementPolicy"] == "Parallel"
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert statefulset["serviceName"] == "meshfed"
    ports = {p["containerPort"] for p in container_of(statefulset["template"]["spec"])["ports"]}
    assert ports == {8500, 8300, 8301}
