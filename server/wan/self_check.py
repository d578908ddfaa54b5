"""`meshfed federation check`: walk the WAN path hop by hop and say what is broken and how to fix it.

Consul has no such command; its users debug WAN federation by hand (operators.md). The walk
follows a cross-DC call: this server's TLS identity, the local mesh gateways it dials, each remote
DC's gateways and whether they route `server.<dc>` SNI to a server there, the path to the primary
the locator takes, replication from the primary, and clock skew to it (certificates and
replication timestamps both depend on clocks).

The verdicts are pure functions of gathered facts (unit-tested without sockets); `FederationCheck`
gathers the facts with real probes and serves them as the `Federation/Check` RPC, which the router
runs on the leader by default (the only server that replicates) or in another DC with `?dc=`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from meshfed.fsm.records import CheckServiceNode
from meshfed.replication.loop import ReplicationStatus

OK, WARN, FAIL = "ok", "warn", "fail"
CERT_EXPIRY_WARN_DAYS = 14
CLOCK_SKEW_WARN_S = 0.5  # Raft and TLS tolerate more, but replication lag and TTLs read wrong past this
CLOCK_SKEW_FAIL_S = 30.0  # certificates issued "in the future" start failing around here
REPLICATION_LAG_WARN_S = 30.0


@dataclass(frozen=True)
class Hop:
    name: str
    status: str
    detail: str
    fix: str = ""

    def to_wire(self) -> dict[str, str]:
        return {k.capitalize(): v for k, v in asdict(self).items()}


def healthy(hops: Iterable[Hop]) -> bool:
    return all(hop.status != FAIL for hop in hops)


def _check_output(gateway: CheckServiceNode) -> str:
    critical = [c for c in gateway.checks if c.status == "critical"]
    return (critical[0].output or critical[0].name or critical[0].check_id) if critical else ""


def local_gateway_hops(datacenter: str, gateways: Sequence[CheckServiceNode],
                       reachable: Mapping[str, str]) -> list[Hop]:
    """`reachable` maps each gateway's LAN host:port to "" (connected) or the connect error."""
    if not gateways:
        return [Hop(f"local gateways ({datacenter})", FAIL, "no mesh gateway is registered in this datacenter's catalog",
                    f"start `meshfed gateway -datacenter {datacenter} ...` next to the servers and check its log")]
    hops = []
    for gateway in gateways:
        host, port = gateway.best_address(False)
        address = f"{host}:{port}"
        name = f"local gateway {gateway.node.node} {address}"
        if not gateway.is_wan_federation_gateway():
            hops.append(Hop(name, WARN, "lacks meta consul-wan-federation=1: servers will not route through it",
                            "register the gateway with -wan-federation (or that meta key)"))
        elif gateway.is_critical():
            hops.append(Hop(name, FAIL, f"health check critical: {_check_output(gateway)}",
                            "the gateway stopped heartbeating or failed its check: look at its process and log"))
        elif reachable.get(address):
            hops.append(Hop(name, FAIL, f"cannot connect: {reachable[address]}",
                            "is the gateway process running and listening on that address? firewall?"))
        else:
            hops.append(Hop(name, OK, "registered, passing, accepts connections"))
    return hops


def remote_dc_hops(datacenter: str, usable_gateways: Sequence[str], reachable: Mapping[str, str],
                   rpc_error: str, rpc_ms: float) -> list[Hop]:
    """One remote DC: its gateways (from its federation state) and an RPC that crossed them."""
    if not usable_gateways:
        return [Hop(f"gateways of {datacenter}", FAIL, "its federation state lists no usable mesh gateway",
                    f"run `meshfed federation check` in {datacenter}: its gateways are missing, critical, or its "
                    "anti-entropy cannot reach the primary")]
    hops = []
    for address in usable_gateways:
        error = reachable.get(address, "")
        status = OK if not error else (WARN if not rpc_error else FAIL)
        detail = "accepts connections" if not error else f"cannot connect from this server: {error}"
        fix = "" if not error else "only the local gateways must reach it; check the WAN address and firewall"
        hops.append(Hop(f"gateway of {datacenter} {address}", status, detail, fix))
    if rpc_error:
        hops.append(Hop(f"server.{datacenter} SNI route", FAIL, f"an RPC to {datacenter} failed: {rpc_error}",
                        f"check that {datacenter}'s gateways route server.{datacenter} names to its servers "
                        "(gateway admin /v1/gateway/routes) and that the servers' certificates match"))
    else:
        hops.append(Hop(f"server.{datacenter} SNI route", OK, f"a server in {datacenter} answered in {rpc_ms:.0f} ms"))
    return hops


def tls_hops(datacenter: str, domain: str, names: Sequence[str] | None, not_after: datetime.datetime | None,
             now: datetime.datetime, error: str = "") -> list[Hop]:
    """This server's certificate: the names the gateways route and peers verify, and its expiry."""
    expected = f"server.{datacenter}.{domain.rstrip('.')}"
    if error:
        return [Hop("server certificate", FAIL, error, "set tls.defaults cert_file/key_file/ca_file (cross-DC RPC needs TLS)")]
    hops = []
    if names is not None and expected not in names and f"*.server.{datacenter}.{domain.rstrip('.')}" not in names:
        hops.append(Hop("server certificate names", FAIL, f"{expected} is not among its names ({', '.join(names)})",
                        f"re-issue it: `meshfed tls cert create -server -dc {datacenter}`"))
    elif names is not None:
        hops.append(Hop("server certificate names", OK, f"includes {expected}"))
    if not_after is not None:
        days = (not_after - now).total_seconds() / 86400
        if days < 0:
            hops.append(Hop("server certificate expiry", FAIL, f"expired {-days:.0f} days ago ({not_after:%Y-%m-%d})",
                            "issue a new certificate and restart the server"))
        elif days < CERT_EXPIRY_WARN_DAYS:
            hops.append(Hop("server certificate expiry", WARN, f"expires in {days:.1f} days ({not_after:%Y-%m-%d})",
                            "renew it before then"))
        else:
            hops.append(Hop("server certificate expiry", OK, f"valid until {not_after:%Y-%m-%d} ({days:.0f} days)"))
    return hops


def primary_hop(primary: str, is_primary: bool, mode: str, reason: str, rpc_error: str, rpc_ms: float) -> Hop:
    if is_primary:
        return Hop(f"primary {primary}", OK, "this datacenter is the primary")
    if rpc_error:
        fix = ("the locator dials the primary's gateways directly: check primary_gateways and their reachability"
               if mode == "direct" else "the locator dials through the local gateways: check the hops above")
        return Hop(f"primary {primary}", FAIL, f"unreachable ({mode}: {reason}): {rpc_error}", fix)
    return Hop(f"primary {primary}", OK, f"reached in {rpc_ms:.0f} ms, path {mode} ({reason})")


def replication_hops(is_primary: bool, is_leader: bool, statuses: Mapping[str, ReplicationStatus],
                     now: float) -> list[Hop]:
    if is_primary:
        return []
    if not is_leader:
        return [Hop("replication", WARN, "this server is not the leader, and only the leader replicates",
                    "run the check without -stale so the leader answers")]
    hops = []
    for name, status in sorted(statuses.items()):
        label = f"replication of {name}"
        if not status.running:
            hops.append(Hop(label, FAIL, "not running", "look for errors in the leader's log"))
        elif status.consecutive_failures:
            hops.append(Hop(label, FAIL, f"{status.consecutive_failures} failures in a row: {status.last_error_message}",
                            "the primary must be reachable (see the primary hop); with ACLs the replication token "
                            "needs the documented rights"))
        elif status.lag_seconds(now) > REPLICATION_LAG_WARN_S:
            hops.append(Hop(label, WARN, f"last success {status.lag_seconds(now):.0f} s ago", "check the primary's load"))
        else:
            hops.append(Hop(label, OK, f"in sync at remote index {status.last_remote_index}"))
    return hops


def clock_hop(primary: str, skew: float | None, error: str) -> Hop:
    """`skew`: the primary's clock minus ours, in seconds, corrected for half the round trip."""
    if error or skew is None:
        return Hop(f"clock skew to {primary}", WARN, f"not measured: {error or 'no answer'}")
    magnitude = abs(skew)
    detail = f"{skew * 1000:+.0f} ms"
    if magnitude >= CLOCK_SKEW_FAIL_S:
        return Hop(f"clock skew to {primary}", FAIL, detail, "synchronise the clocks (NTP) on both sides")
    if magnitude >= CLOCK_SKEW_WARN_S:
        return Hop(f"clock skew to {primary}", WARN, detail, "check NTP on this server and the primary's")
    return Hop(f"clock skew to {primary}", OK, detail)
