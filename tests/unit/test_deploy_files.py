"""The operator files in deploy/ and the examples in docs/ against the code they describe.

Files that nothing executes go stale without anyone noticing: a renamed metric leaves an alert that
can never fire, a new validation rule leaves a sample config that no longer starts. So every config
here must pass `server.config.load`, and every metric that an alert or a dashboard panel uses must
be one a server exports. Neither YAML nor PromQL has a parser among the project's dependencies, so
the YAML files are read with the few regular expressions their layout allows (alerts.yml keeps each
`expr` on one line for this).
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshfed.server.agent import Agent
from meshfed.server.cli.flags import agent_overrides
from meshfed.server.cli.main import build_parser
from meshfed.server.config.loader import ConfigError, generate_key, load
from meshfed.server.metrics import Metrics
from meshfed.server.raft.node import RaftStatus

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LOCAL_CONFIGS = sorted((DEPLOY / "local").glob("*.hcl"))
KEY_PLACEHOLDER = "REPLACE_WITH_OUTPUT_OF_meshfed_keygen"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "meshfed.json"
STATEFULSET = DEPLOY / "kubernetes" / "statefulset.yaml"
CONFIGMAP = DEPLOY / "kubernetes" / "configmap.yaml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "meshfed.service"
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])(?:consul|meshfed)_[A-Za-z0-9_]+")
# Sample names prometheus-client derives from one family, by family type.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "summary": ("", "_count", "_sum", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def with_real_key(text: str) -> str:
    return text.replace(KEY_PLACEHOLDER, generate_key())


# --- deploy/local ------------------------------------------------------------------------------


def test_there_is_one_local_config_per_server() -> None:
    assert [path.name for path in LOCAL_CONFIGS] == ["s1.hcl", "s2.hcl", "s3.hcl"]


@pytest.mark.parametrize("path", LOCAL_CONFIGS, ids=lambda path: path.name)
def test_local_config_loads_once_the_key_is_replaced(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    copy.write_text(with_real_key(path.read_text()))

    config = load([str(copy)])

    assert config.datacenter == "dc1"
    assert config.bind_addr.startswith("127.0.1.")
    assert config.data_dir == f"/tmp/meshfed/dc1/{config.node_name}"
    assert config.bootstrap_expect == 3
    assert config.raft_address not in config.retry_join
    assert len(config.retry_join) == 2


@pytest.mark.parametrize("path", LOCAL_CONFIGS, ids=lambda path: path.name)
def test_local_config_with_the_placeholder_key_is_refused(path: Path) -> None:
    """Shipping a valid sample key would give every reader of the repository the Raft port."""
    with pytest.raises(ConfigError) as refused:
        load([str(path)])
    assert refused.value.key == "encrypt"
    assert "meshfed keygen" in refused.value.reason


def test_local_configs_describe_one_cluster(tmp_path: Path) -> None:
    configs = []
    for path in LOCAL_CONFIGS:
        copy = tmp_path / path.name
        copy.write_text(with_real_key(path.read_text()))
        configs.append(load([str(copy)]))

    raft_addresses = {config.raft_address for config in configs}
    assert len({config.node_name for config in configs}) == len(configs)
    assert len({config.data_dir for config in configs}) == len(configs)
    assert len(raft_addresses) == len(configs)
    for config in configs:
        assert set(config.retry_join) == raft_addresses - {config.raft_address}


# --- deploy/kubernetes -------------------------------------------------------------------------


def _quoted_list_after(text: str, key: str) -> list[str]:
    """The items of a block list of double-quoted strings that follows ``key:``."""
    match = re.search(rf"^([ \t]*){key}:[ \t]*\n((?:\1[ \t]*- \"[^\"\n]*\"[ \t]*\n)+)", text, re.MULTILINE)
    assert match, f"no block list of quoted strings under {key}:"
    return re.findall(r'- "([^"\n]*)"', match.group(2))


def _block_scalar(text: str, key: str) -> str:
    """The content of ``key: |`` (a literal block), dedented."""
    match = re.search(rf"^([ \t]*){re.escape(key)}: \|[ \t]*\n((?:(?:\1[ \t]+\S.*)?\n)+)", text, re.MULTILINE)
    assert match, f"no literal block under {key}:"
    return textwrap.dedent(match.group(2))


def _statefulset_shape() -> tuple[str, str, int]:
    text = STATEFULSET.read_text()
    name = re.search(r"^kind: StatefulSet\s*\nmetadata:\s*\n\s+name:\s*(\S+)", text, re.MULTILINE)
    service = re.search(r"^\s+serviceName:\s*(\S+)", text, re.MULTILINE)
    replicas = re.search(r"^\s+replicas:\s*(\d+)", text, re.MULTILINE)
    assert name and service and replicas
    return name.group(1), service.group(1), int(replicas.group(1))


def test_kubernetes_pods_find_each_other_by_stable_names() -> None:
    name, service, replicas = _statefulset_shape()
    args = _quoted_list_after(STATEFULSET.read_text(), "args")
    joins = [args[i + 1] for i, arg in enumerate(args) if arg == "-retry-join"]
    advertise = args[args.index("-advertise") + 1]

    assert advertise.startswith(f"$(POD_NAME).{service}.$(POD_NAMESPACE).")
    assert joins == [advertise.replace("$(POD_NAME)", f"{name}-{i}") for i in range(replicas)]


@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_kubernetes_arguments_make_a_valid_config(ordinal: int, tmp_path: Path) -> None:
    """What one pod runs: the ConfigMap and the Secret in one directory, plus its arguments."""
    name, _, replicas = _statefulset_shape()
    text = STATEFULSET.read_text()
    (tmp_path / "server.hcl").write_text(_block_scalar(CONFIGMAP.read_text(), "server.hcl"))
    (tmp_path / "encrypt.hcl").write_text(f'encrypt = "{generate_key()}"\n')
    pod = f"{name}-{ordinal}"
    args = [
        arg.replace("$(POD_NAME)", pod).replace("$(POD_NAMESPACE)", "prod").replace("/etc/meshfed.d", str(tmp_path))
        for arg in _quoted_list_after(text, "args")
    ]
    assert re.search(r'command: \["meshfed"\]', text)

    files, overrides, dev = agent_overrides(build_parser().parse_args(args))
    config = load(files, overrides, dev=dev)

    assert config.node_name == pod
    assert config.bootstrap_expect == replicas
    assert len(config.retry_join) == replicas - 1
    assert config.raft_address not in config.retry_join
    assert config.data_dir == "/var/lib/meshfed"


def test_kubernetes_settings_a_first_start_depends_on() -> None:
    """Without these, three pods that wait for a leader before being ready wait for each other."""
    statefulset = STATEFULSET.read_text()
    services = (DEPLOY / "kubernetes" / "service.yaml").read_text()
    assert re.search(r"^\s+podManagementPolicy: Parallel$", statefulset, re.MULTILINE)
    assert re.search(r"^\s+clusterIP: None\s*\n\s+publishNotReadyAddresses: true$", services, re.MULTILINE)
    assert "secretName" not in statefulset and "name: meshfed-encrypt" in statefulset
    for port in (8500, 8300, 8301):
        assert f"containerPort: {port}" in statefulset
    assert 'prometheus.io/scrape: "true"' in statefulset


class _LeaderHandler(http.server.BaseHTTPRequestHandler):
    leader = ""

    def do_GET(self) -> None:
        body = json.dumps(self.leader).encode()
        self.send_response(200 if self.path == "/v1/status/leader" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def status_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.240.250", 0), _LeaderHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("leader", "ready"), [("", False), ("10.1.2.3:8301", True)])
def test_readiness_probe_needs_a_known_leader(
    leader: str, ready: bool, status_server: http.server.HTTPServer
) -> None:
    """The API answers 200 with "" while there is no leader, so only the body tells the two apart."""
    _LeaderHandler.leader = leader
    command = _quoted_list_after(STATEFULSET.read_text(), "command")
    assert command[:2] == ["python3", "-c"]
    host, port = status_server.server_address[:2]
    script = command[2].replace("http://127.0.0.1:8500", f"http://{host}:{port}")
    assert script != command[2]

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=10)

    assert (result.returncode == 0) == ready


# --- deploy/systemd ----------------------------------------------------------------------------


def test_systemd_unit_runs_the_agent_the_way_raft_needs() -> None:
    settings: dict[str, str] = {}
    for line in SYSTEMD_UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()

    assert settings["KillMode"] == "control-group"
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["Restart"] == "on-failure"
    assert int(settings["LimitNOFILE"]) >= 65536
    assert settings["User"] == "meshfed"
    assert int(settings["TimeoutStopSec"]) >= 10
    program, *args = settings["ExecStart"].split()
    assert program.endswith("/meshfed")
    namespace = build_parser().parse_args(args)
    assert namespace.config_sources == [("dir", "/etc/meshfed.d")]


# --- metrics used by alerts and the dashboard --------------------------------------------------


class _IdleRaft:
    """Just enough of RaftNode for Agent._live_metrics, with one peer so per-peer gauges appear."""

    tick_errors = 0
    resends_kept = 0

    def status(self) -> RaftStatus:
        return RaftStatus(
            state="follower", leader=None, term=1, commit_index=0, last_applied=0, has_quorum=False,
            last_contact=float("inf"), peers_connected={"127.0.240.2:8301": True}, log_entries=0,
            snapshot_index=0, snapshot_bytes=0, snapshot_age=0.0,
        )


def exported_names() -> set[str]:
    """Every sample name a server can expose: the registered metrics and the live gauges."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    agent = Agent(load([], {"node_name": "s1", "encrypt": generate_key()}, dev=True))
    agent.raft = _IdleRaft()  # type: ignore[assignment]
    names.update(family.name for family in agent._live_metrics())
    return names


def alert_rules() -> list[dict[str, str]]:
    """Each rule of alerts.yml as {field: raw value} for the one-line fields it has."""
    rules = []
    for chunk in re.split(r"^\s*- alert:", ALERTS.read_text(), flags=re.MULTILINE)[1:]:
        name, _, body = chunk.partition("\n")
        fields = {"alert": name.strip()}
        for key, value in re.findall(r"^\s*(expr|for|severity|summary|description):[ \t]*(.*)$", body, re.MULTILINE):
            fields[key] = value.strip()
        rules.append(fields)
    return rules


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value


def dashboard_exprs() -> list[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield node["expr"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return list(walk(json.loads(DASHBOARD.read_text())))


def test_the_exported_names_include_both_sources() -> None:
    """Guards the helper: a broken stub would make every later comparison vacuous."""
    names = exported_names()
    assert {"meshfed_raft_known_leader", "meshfed_raft_peer_connected", "meshfed_catalog_nodes"} <= names
    assert {"meshfed_raft_leadership_changes_total", "meshfed_raft_commit_seconds_bucket"} <= names
    assert "meshfed_raft_leadership_changes" not in names  # counters are only exposed with _total


def test_every_alert_is_complete_and_actionable() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(rules) >= 10
    assert len(set(names)) == len(names)
    for rule in rules:
        for field in ("expr", "for", "severity", "summary", "description"):
            assert rule.get(field), f"{rule['alert']} has no one-line {field}"
        assert rule["expr"] not in ("|", ">", "|-", ">-"), f"{rule['alert']}: keep expr on one line"
        assert rule["severity"] in ("warning", "critical")
        assert len(unquote(rule["description"])) > 120, f"{rule['alert']}: say what to do"


def test_the_alerts_the_operators_asked_for_exist() -> None:
    exprs = " ".join(unquote(rule["expr"]) for rule in alert_rules())
    for metric in (
        "meshfed_raft_known_leader",
        "meshfed_raft_leadership_changes_total",
        "meshfed_raft_apply_lag",
        "meshfed_raft_tick_errors",
        "meshfed_raft_snapshot_age_seconds",
        "consul_leader_replication_federation_state_status",
        "meshfed_anti_entropy_syncs_total",
        "consul_rpc_queries_blocking",
    ):
        assert metric in exprs


def test_every_metric_in_the_alerts_is_exported() -> None:
    exported = exported_names()
    used = {name for rule in alert_rules() for name in METRIC_NAME.findall(unquote(rule["expr"]))}
    assert used, "no meshfed metric found in alerts.yml"
    assert used - exported == set()


def test_every_metric_on_the_dashboard_is_exported() -> None:
    exported = exported_names()
    exprs = dashboard_exprs()
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert len(exprs) >= 10
    assert used - exported == set()


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"]


# --- docs ----------------------------------------------------------------------------------------


def _complete_examples() -> list[tuple[str, str, str]]:
    """Fenced HCL and JSON blocks that set node_name: complete configs, each of which must load."""
    examples = []
    for path in [ROOT / "docs" / "configuration.md", *sorted(DEPLOY.glob("**/README.md"))]:
        blocks = re.findall(r"```(hcl|json)\n(.*?)```", path.read_text(), re.DOTALL)
        for index, (language, block) in enumerate(blocks):
            if re.search(r'^\s*"?node_name"?\s*[=:]', block, re.MULTILINE):
                examples.append((f"{path.relative_to(ROOT)}#{index}", language, block))
    return examples


def test_the_docs_have_complete_examples() -> None:
    names = [name for name, _, _ in _complete_examples()]
    assert len([name for name in names if name.startswith("docs/configuration.md")]) >= 3
    assert any(name.startswith("deploy/") for name in names)


@pytest.mark.parametrize(("name", "language", "block"), _complete_examples(), ids=lambda value: str(value)[:40])
def test_documented_example_loads(name: str, language: str, block: str, tmp_path: Path) -> None:
    """Examples show a placeholder key; any placeholder is swapped for a real one, nothing else."""
    path = tmp_path / f"example.{language}"
    key = generate_key()
    if language == "hcl":
        text = re.sub(r'(?m)^(\s*encrypt\s*=\s*)"[^"]*"', rf'\1"{key}"', block)
    else:
        text = re.sub(r'("encrypt":\s*)"[^"]*"', rf'\1"{key}"', block)
    path.write_text(text)

    config = load([str(path)])

    assert config.encrypt == key


def test_configuration_doc_names_every_key_and_flag() -> None:
    from meshfed.server.cli import flags as flags_module
    from meshfed.server.config import schema as config_module

    doc = (ROOT / "docs" / "configuration.md").read_text()
    for key in config_module.SCHEMA:
        assert f"`{key}`" in doc, f"docs/configuration.md does not describe {key}"
    for flag, *_ in flags_module._VALUE_FLAGS:
        assert f"`-{flag}`" in doc, f"docs/configuration.md does not mention -{flag}"
