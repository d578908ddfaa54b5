"""The agent check runner's pure parts: check definitions from registrations, the spec read back
from the catalog record, statuses and Consul's output texts, alias worst-of, and the schedule."""

from __future__ import annotations

import random

import pytest

from meshfed.fsm.acl import Authorizer, DefaultPolicy, parse_rules
from meshfed.fsm.records import STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING, HealthCheck
from meshfed.server.acl.filters import agent_checks
from meshfed.server.acl.resolver import Identity
from meshfed.server.checks.decide import (
    NEW_CHECK_RETRY,
    Result,
    alias_result,
    first_delay,
    http_error,
    http_result,
    http_status,
    needs_write,
    next_delay,
    tcp_result,
)
from meshfed.server.checks.definition import CheckDefinitionError, agent_check_fields, tcp_address
from meshfed.server.checks.spec import DEFAULT_TIMEOUT, MIN_INTERVAL, spec_of
from meshfed.server.http.agent_registration import registration_rows
from meshfed.server.http.params import BadRequest


def check(check_id: str, status: str = STATUS_PASSING, service_id: str = "", name: str = "", output: str = "",
          **fields: object) -> HealthCheck:
    return HealthCheck(node="n1", check_id=check_id, name=name or check_id, status=status, service_id=service_id,
                       output=output, **fields)  # type: ignore[arg-type]


# ---- definitions -------------------------------------------------------------------------------


def test_tcp_http_and_alias_checks_keep_what_the_runner_needs() -> None:
    assert agent_check_fields({"TCP": "127.0.0.1:80", "Interval": "5s"}, "n1") == {
        "Type": "tcp", "Interval": "5s", "Definition": {"TCP": "127.0.0.1:80", "Interval": "5s"}}
    http = agent_check_fields({"http": "http://x/h", "interval": "2s", "Timeout": "1s", "Method": "POST",
                               "Header": {"X-A": ["b"]}, "TLSSkipVerify": True}, "n1")
    assert http["Type"] == "http" and http["Timeout"] == "1s"
    assert http["Definition"] == {"HTTP": "http://x/h", "Interval": "2s", "Timeout": "1s", "Method": "POST",
                                  "Header": {"X-A": ["b"]}, "TLSSkipVerify": True}
    assert agent_check_fields({"AliasService": "web"}, "n1") == {"Type": "alias", "Definition": {"AliasService": "web"}}
    assert agent_check_fields({"TTL": "10s"}, "n1") == {}  # TTL checks keep their own path
    assert agent_check_fields({"Args": ["true"], "Interval": "1s"}, "n1") == {}  # not run by meshfed


@pytest.mark.parametrize(("body", "message"), [
    ({"TCP": "a:1"}, "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks"),
    ({"HTTP": "http://a", "Interval": "0s"}, "Interval must be > 0"),
    ({"TCP": "a:1", "Interval": "1s", "TTL": "5s"}, "Interval and TTL cannot both be specified"),
    ({"AliasService": "web", "Interval": "1s"}, "Interval cannot be set for Alias checks"),
    ({"AliasService": "web", "TTL": "1s"}, "TTL must be not be set for Alias checks"),
    ({"TCP": "a:1", "Interval": "soon"}, "Interval: expected a duration"),
    ({"TCP": 5, "Interval": "1s"}, "TCP: expected a string"),
    ({"HTTP": "http://a", "Interval": "1s", "Header": {"X": "y"}}, "Header: expected a map of lists"),
    ({"AliasService": "web", "AliasNode": "other"}, "AliasNode: only services of this agent's node"),
])
def test_definitions_consul_refuses_are_refused_naming_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(CheckDefinitionError, match=message):
        agent_check_fields(body, "n1")


def test_a_registration_with_a_bad_check_is_a_400() -> None:
    with pytest.raises(BadRequest, match="Invalid check: Interval must be > 0"):
        registration_rows({"Name": "web", "Check": {"TCP": "127.0.0.1:1"}}, node="n1", address="127.0.0.1",
                          datacenter="dc1", taken_ports=(), previous_sidecar_port=None)


def test_a_sidecar_without_checks_gets_consuls_two_default_checks() -> None:
    """mesh-dataplane §9 case 3: `Connect Sidecar Listening` (TCP on the sidecar's port, 10s) and
    `Connect Sidecar Aliasing <parent id>`, ids service:<sidecar>:1 and :2, both critical at first."""
    rows = registration_rows({"Name": "web", "ID": "web1", "Port": 8080, "Connect": {"SidecarService": {}}},
                             node="n1", address="127.0.0.1", datacenter="dc1", taken_ports=(),
                             previous_sidecar_port=None)
    listening, aliasing = rows[1]["checks"]
    assert (listening["check_id"], listening["name"], listening["type"], listening["interval"]) == (
        "service:web1-sidecar-proxy:1", "Connect Sidecar Listening", "tcp", "10s")
    assert listening["definition"]["TCP"] == "127.0.0.1:21000"
    assert (aliasing["check_id"], aliasing["name"], aliasing["definition"]) == (
        "service:web1-sidecar-proxy:2", "Connect Sidecar Aliasing web1", {"AliasService": "web1"})
    assert {c["status"] for c in (listening, aliasing)} == {STATUS_CRITICAL}
    assert {c["service_id"] for c in (listening, aliasing)} == {"web1-sidecar-proxy"}
    assert rows[0]["checks"] == []


def test_a_sidecar_checks_its_own_address_and_its_own_checks_replace_the_defaults() -> None:
    def sidecar_checks(spec: dict[str, object]) -> list[dict[str, object]]:
        rows = registration_rows({"Name": "web", "Connect": {"SidecarService": spec}}, node="n1",
                                 address="127.0.0.1", datacenter="dc1", taken_ports=(), previous_sidecar_port=None)
        return rows[1]["checks"]

    assert sidecar_checks({"Address": "10.0.0.5", "Port": 2222})[0]["definition"]["TCP"] == "10.0.0.5:2222"
    assert sidecar_checks({"Address": "::1", "Port": 2222})[0]["definition"]["TCP"] == "[::1]:2222"
    own = sidecar_checks({"Check": {"TCP": "127.0.0.1:9", "Interval": "3s"}})
    assert [(c["check_id"], c["name"]) for c in own] == [("service:web-sidecar-proxy", "Service 'web-sidecar-proxy' check")]


# ---- spec read back from the record -------------------------------------------------------------


def test_spec_defaults_and_unrunnable_records() -> None:
    tcp = spec_of(check("c", type="tcp", definition={"TCP": "h:1", "Interval": "10s"}))
    assert tcp is not None and (tcp.kind, tcp.target, tcp.interval, tcp.timeout) == ("tcp", "h:1", 10.0, DEFAULT_TIMEOUT)
    fast = spec_of(check("c", definition={"HTTP": "http://h", "Interval": "100ms", "Timeout": "2s"}))
    assert fast is not None and (fast.kind, fast.interval, fast.timeout, fast.method) == ("http", MIN_INTERVAL, 2.0, "GET")
    assert spec_of(check("c", definition={"TCP": "h:1"})) is None  # no interval: nothing to schedule
    assert spec_of(check("c", definition={"TCP": "h:1", "Interval": "x"})) is None
    assert spec_of(check("c", type="ttl", ttl="10s")) is None
    alias = spec_of(check("c", definition={"AliasService": "web"}))
    assert alias is not None and (alias.kind, alias.alias_service) == ("alias", "web")


# ---- statuses and outputs ------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), [
    (200, STATUS_PASSING), (204, STATUS_PASSING), (299, STATUS_PASSING), (429, STATUS_WARNING),
    (301, STATUS_CRITICAL), (404, STATUS_CRITICAL), (500, STATUS_CRITICAL), (503, STATUS_CRITICAL)])
def test_http_status_follows_consul(code: int, status: str) -> None:
    assert http_status(code) == status


def test_outputs_read_as_consuls() -> None:
    assert tcp_result("127.0.0.1:80", None) == Result(STATUS_PASSING, "TCP connect 127.0.0.1:80: Success")
    assert tcp_result("127.0.0.1:80", "connect: connection refused") == Result(
        STATUS_CRITICAL, "dial tcp 127.0.0.1:80: connect: connection refused")
    assert http_result("GET", "http://h/x", 200, "OK", b"fine") == Result(
        STATUS_PASSING, "HTTP GET http://h/x: 200 OK Output: fine")
    assert http_result("GET", "http://h/x", 429, "", b"x" * 10_000).output.startswith(
        "HTTP GET http://h/x: 429 Too Many Requests Output: xxx")
    assert len(http_result("GET", "u", 200, "OK", b"x" * 10_000).output) < 4200  # body capped at 4 KiB
    assert http_error("GET", "http://h", "dial tcp h:80: i/o timeout").output == 'Get "http://h": dial tcp h:80: i/o timeout'
    assert tcp_address("::1", 5) == "[::1]:5"


# ---- alias ----------------------------------------------------------------------------------------


def test_alias_is_the_worst_of_the_service_and_node_checks() -> None:
    ok = check("a", service_id="web")
    warn = check("b", STATUS_WARNING, service_id="web", name="slow", output="meh")
    crit = check("c", STATUS_CRITICAL, service_id="web", name="down", output="refused")
    other = check("d", STATUS_CRITICAL, service_id="api")
    node_level = check("serfHealth", STATUS_CRITICAL, name="Serf")
    assert alias_result([], "web", True, "n1") == Result(STATUS_PASSING, "No checks found.")
    assert alias_result([ok, other], "web", True, "n1") == Result(STATUS_PASSING, "All checks passing.")
    assert alias_result([ok, warn], "web", True, "n1") == Result(STATUS_WARNING, "Aliased check 'slow' failing: meh")
    assert alias_result([warn, crit, ok], "web", True, "n1").status == STATUS_CRITICAL  # a later critical wins
    assert alias_result([crit, warn], "web", True, "n1") == Result(STATUS_CRITICAL, "Aliased check 'down' failing: refused")
    assert alias_result([ok, node_level], "web", True, "n1").status == STATUS_CRITICAL  # node checks count
    assert alias_result([], "gone", False, "n1") == Result(STATUS_CRITICAL, "Service gone could not be found on node n1")


# ---- schedule and writes --------------------------------------------------------------------------


def test_new_checks_run_at_once_and_checks_found_at_start_are_staggered() -> None:
    assert first_delay(10.0, found_at_start=False) == 0.0
    delays = {first_delay(10.0, found_at_start=True, rng=random.Random(seed)) for seed in range(20)}
    assert all(0.0 <= d <= 10.0 for d in delays) and len(delays) > 1


def test_a_check_that_has_not_passed_retries_quickly_during_its_first_interval_only() -> None:
    assert next_delay(10.0, STATUS_CRITICAL, ever_passed=False, age=2.0) == NEW_CHECK_RETRY
    assert next_delay(10.0, STATUS_CRITICAL, ever_passed=False, age=10.0) == 10.0
    assert next_delay(10.0, STATUS_CRITICAL, ever_passed=True, age=2.0) == 10.0
    assert next_delay(10.0, STATUS_PASSING, ever_passed=True, age=2.0) == 10.0
    assert next_delay(0.5, STATUS_CRITICAL, ever_passed=False, age=0.1) == 0.5


def test_a_write_only_when_status_or_output_changed() -> None:
    stored = check("c", STATUS_PASSING, output="TCP connect h:1: Success")
    assert not needs_write(stored, Result(STATUS_PASSING, "TCP connect h:1: Success"))
    assert needs_write(stored, Result(STATUS_PASSING, "other"))
    assert needs_write(stored, Result(STATUS_CRITICAL, "TCP connect h:1: Success"))
    assert not needs_write(None, Result(STATUS_CRITICAL, "x"))  # deregistered: nothing to update


# ---- /v1/agent/checks ACL filter ---------------------------------------------------------------


def test_agent_checks_are_filtered_as_consuls_agent_filters_them() -> None:
    """service:read alone shows a service's checks (no node:read needed); a node-level check needs
    node:read on the node."""
    rules = parse_rules('service "web" { policy = "read" }')
    identity = Identity("a-1", Authorizer.from_rules([rules], DefaultPolicy.DENY))
    answer = {"service:web": {"Node": "n1", "ServiceName": "web"}, "service:db": {"Node": "n1", "ServiceName": "db"},
              "maintenance": {"Node": "n1", "ServiceName": ""}}
    assert agent_checks(identity, answer) == ({"service:web": answer["service:web"]}, True)
    reader = Identity("a-2", Authorizer.from_rules([parse_rules('node "n1" { policy = "read" }')], DefaultPolicy.DENY))
    assert agent_checks(reader, answer) == ({"maintenance": answer["maintenance"]}, True)
