"""The federation check's verdicts, from facts alone (server/wan/self_check.py)."""

from __future__ import annotations

import datetime

from meshfed.fsm.records import CheckServiceNode, HealthCheck, Node, NodeService
from meshfed.replication.loop import ReplicationStatus
from meshfed.server.wan import self_check as sc

NOW = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)


def gateway(status: str = "passing", wan_federation: bool = True) -> CheckServiceNode:
    meta = {"consul-wan-federation": "1"} if wan_federation else {}
    return CheckServiceNode(
        node=Node(node="gw1", address="127.0.9.10"),
        service=NodeService(id="mesh-gateway", service="mesh-gateway", kind="mesh-gateway", port=8443, meta=meta),
        checks=(HealthCheck(node="gw1", check_id="alive", status=status, output="ttl expired"),),
    )


def test_no_local_gateway_fails_with_the_command_to_start_one() -> None:
    (hop,) = sc.local_gateway_hops("dc2", [], {})
    assert hop.status == sc.FAIL and "meshfed gateway -datacenter dc2" in hop.fix


def test_local_gateway_verdicts() -> None:
    assert sc.local_gateway_hops("dc1", [gateway()], {"127.0.9.10:8443": ""})[0].status == sc.OK
    critical = sc.local_gateway_hops("dc1", [gateway("critical")], {})[0]
    assert critical.status == sc.FAIL and "ttl expired" in critical.detail
    refused = sc.local_gateway_hops("dc1", [gateway()], {"127.0.9.10:8443": "refused"})[0]
    assert refused.status == sc.FAIL and "refused" in refused.detail
    assert sc.local_gateway_hops("dc1", [gateway(wan_federation=False)], {})[0].status == sc.WARN


def test_an_unreachable_remote_gateway_only_fails_when_the_rpc_failed_too() -> None:
    statuses = lambda rpc_error: [h.status for h in sc.remote_dc_hops("dc2", ["a:1"], {"a:1": "refused"}, rpc_error, 3)]  # noqa: E731
    assert statuses("") == [sc.WARN, sc.OK]
    assert statuses("unavailable") == [sc.FAIL, sc.FAIL]
    assert sc.remote_dc_hops("dc2", [], {}, "", 0)[0].status == sc.FAIL


def test_certificate_names_and_expiry() -> None:
    later = NOW + datetime.timedelta(days=100)
    assert [h.status for h in sc.tls_hops("dc1", "consul.", ["server.dc1.consul"], later, NOW)] == [sc.OK, sc.OK]
    wrong = sc.tls_hops("dc1", "consul", ["server.dc2.consul"], later, NOW)[0]
    assert wrong.status == sc.FAIL and "-dc dc1" in wrong.fix
    assert sc.tls_hops("dc1", "consul", None, NOW + datetime.timedelta(days=3), NOW)[0].status == sc.WARN
    assert sc.tls_hops("dc1", "consul", None, NOW - datetime.timedelta(days=1), NOW)[0].status == sc.FAIL
    assert sc.tls_hops("dc1", "consul", None, None, NOW, "no server certificate configured")[0].status == sc.FAIL


def test_replication_is_judged_only_on_a_secondary_leader() -> None:
    assert sc.replication_hops(True, True, {}, 0) == []
    assert sc.replication_hops(False, False, {}, 0)[0].status == sc.WARN
    failing = ReplicationStatus(name="federation_state", running=True, consecutive_failures=2,
                                last_error_message="boom")
    assert sc.replication_hops(False, True, {"federation_state": failing}, 0)[0].status == sc.FAIL


def test_clock_skew_thresholds() -> None:
    assert sc.clock_hop("dc1", 0.01, "").status == sc.OK
    assert sc.clock_hop("dc1", -1.0, "").status == sc.WARN
    assert sc.clock_hop("dc1", 60.0, "").status == sc.FAIL
    assert sc.clock_hop("dc1", None, "down").status == sc.WARN


def test_healthy_means_no_failed_hop() -> None:
    assert sc.healthy([sc.Hop("a", sc.OK, ""), sc.Hop("b", sc.WARN, "")])
    assert not sc.healthy([sc.Hop("a", sc.FAIL, "")])
