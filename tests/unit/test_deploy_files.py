"""The operator files in deploy/ and the examples in docs/ against the code they describe.

Files that nothing executes go stale without anyone noticing: a renamed metric leaves an alert that
can never fire, a new validation rule leaves a sample config that no longer starts. So every config
here must pass `server.config.load`, and every metric that an alert or a dashboard panel uses must
be one a server exports. Neither YAML nor PromQL has a parser among the project's dependencies, so
the YAML files are read with the few regular expressions their layout allows (alerts.yml keeps each
`expr` on one line for this).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from meshfed.fsm.state import StateStore
from meshfed.replication.loop import ReplicationStatus
from meshfed.server.cli.main import build_parser
from meshfed.server.config.loader import ConfigError, generate_key, load
from meshfed.server.dataplane.gateway import GatewayMetrics
from meshfed.server.metrics import REPLICATED_TYPES, Metrics, live_metrics
from meshfed.server.raft.types import RaftStatus
from meshfed.server.wan.replication import SecondaryReplication

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LOCAL_CONFIGS = sorted((DEPLOY / "local").glob("*.hcl"))
KEY_PLACEHOLDER = "REPLACE_WITH_OUTPUT_OF_meshfed_keygen"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "meshfed.json"
SYSTEMD_UNIT = DEPLOY / "systemd" / "meshfed.service"
GATEWAY_UNIT = DEPLOY / "systemd" / "meshfed-gateway.service"
GATEWAY_ENV_EXAMPLE = DEPLOY / "systemd" / "gateway.env.example"
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


# deploy/kubernetes: tests/unit/test_deploy_kubernetes.py


# --- deploy/systemd ----------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_systemd_unit_runs_the_agent_the_way_raft_needs() -> None:
    settings = unit_settings(SYSTEMD_UNIT)

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


# Hardening options of the server unit that every meshfed unit keeps, with the same values.
HARDENING = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
             "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
             "RestrictAddressFamilies", "RestrictNamespaces", "LockPersonality", "UMask")


def test_gateway_unit_is_hardened_like_the_server_unit() -> None:
    server, gateway = unit_settings(SYSTEMD_UNIT), unit_settings(GATEWAY_UNIT)
    assert {key: gateway.get(key) for key in HARDENING} == {key: server[key] for key in HARDENING}
    assert gateway["User"] == "meshfed" and gateway["KillSignal"] == "SIGTERM"
    assert gateway["KillMode"] == "control-group" and gateway["Restart"] == "on-failure"
    assert int(gateway["TimeoutStopSec"]) >= 10 and int(gateway["LimitNOFILE"]) >= 65536


def test_gateway_unit_command_line_parses_with_the_example_environment() -> None:
    """systemd splits an unbraced $VAR into words; the result must be a gateway command line that
    the real parser takes, each flag spelt out in full, with no token on it."""
    settings = unit_settings(GATEWAY_UNIT)
    assert settings["EnvironmentFile"] == "/etc/meshfed-gateway/gateway.env"
    environment = unit_settings(GATEWAY_ENV_EXAMPLE)
    assert set(environment) == {"MESHFED_GATEWAY_ARGS", "CONSUL_HTTP_TOKEN"}
    program, *words = settings["ExecStart"].split()
    assert program.endswith("/meshfed")
    args = [part for word in words for part in (environment[word[1:]].split() if word.startswith("$") else [word])]

    namespace = build_parser().parse_args(args)

    flags = set(namespace.command_parser._option_string_actions)
    assert [arg for arg in args if arg.startswith("-") and arg not in flags] == []
    assert namespace.command == "gateway" and namespace.expose_servers
    assert not namespace.token and "-token" not in args
    assert not namespace.bind.startswith("0.0.0.0"), "the local servers dial the LAN address"
    assert len(namespace.http_addr) == 3 and namespace.admin_bind


# --- metrics used by alerts and the dashboard --------------------------------------------------


class _IdleRaft:
    """Just enough of RaftNode for `live_metrics`, with one peer so per-peer gauges appear."""

    tick_errors = 0
    resends_kept = 0
    snapshots_written = 0
    tick_stalls = 0
    elections_started = 0
    longest_tick = 0.0
    disk_full = False
    disk_full_refusals = 0
    journal_syncs = 0

    @staticmethod
    def oversized_frames() -> int:
        return 0

    def status(self) -> RaftStatus:
        return RaftStatus(
            state="follower", leader=None, term=1, commit_index=0, last_applied=0, has_quorum=False,
            last_contact=float("inf"), peers_connected={"127.0.240.2:8301": True}, log_entries=0,
            snapshot_index=0, snapshot_bytes=0, snapshot_age=0.0,
        )


def exported_names() -> set[str]:
    """Every sample name a server or a gateway can expose: the registered metrics and the live
    gauges of the agent and of a secondary's replication (with one running loop per type)."""
    names: set[str] = set()
    for registry in (Metrics().registry, GatewayMetrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    names.update(family.name for family in live_metrics(_IdleRaft(), StateStore(), None))
    replication = SimpleNamespace(statuses={name: ReplicationStatus(name, running=True) for name in REPLICATED_TYPES})
    names.update(family.name for family in SecondaryReplication.live_metrics(replication))  # type: ignore[arg-type]
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
    assert {"meshfed_replication_lag_seconds", "meshfed_gateway_connections_total"} <= names


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
        # issue #12: gateway down, replication lag and failing, Raft without leader, autopilot
        # health (from the Raft gauges: there is no autopilot gauge), certificate expiry
        'up{job=~"meshfed-gateways-.*"}',
        "meshfed_gateway_routes",
        "meshfed_replication_lag_seconds",
        "meshfed_replication_consecutive_failures",
        "consul_raft_state_leader",
        "meshfed_raft_last_contact_seconds",
        "probe_ssl_earliest_cert_expiry",
    ):
        assert metric in exprs


# Series that come from Prometheus itself or from exporters deploy/ names, not from meshfed.
EXTERNAL_SERIES = {"up", "node_filesystem_avail_bytes", "node_filesystem_size_bytes", "probe_success",
                   "probe_ssl_earliest_cert_expiry"}
PROMQL_WORDS = {"sum", "max", "min", "count", "by", "on", "and", "or", "unless", "group_right", "group_left",
                "rate", "increase", "delta", "time", "vector", "histogram_quantile", "le", "without", "ignoring"}


def test_every_other_series_is_one_an_exporter_of_deploy_provides() -> None:
    """A series that is neither meshfed's nor in EXTERNAL_SERIES would be a typo that never fires."""
    for rule in alert_rules():
        expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", unquote(rule["expr"]))
        expr = re.sub(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
        names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)) - PROMQL_WORDS
        others = {name for name in names if not METRIC_NAME.fullmatch(name)}
        assert others <= EXTERNAL_SERIES, f"{rule['alert']}: {others - EXTERNAL_SERIES}"


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
