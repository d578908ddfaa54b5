"""Gathers the facts `self_check.py` judges, with real probes from this server's point of view.

Every probe has a short timeout and runs concurrently, so a check of a broken federation answers
in a few seconds instead of hanging on the first dead hop. Served as the `Federation/Check` RPC:
the router runs it on the leader unless the caller asked for `stale` (any server) or another DC.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509

from meshfed.fsm.state import StateStore
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.config.settings import Config
from meshfed.server.requests.router import Router
from meshfed.server.wan import self_check
from meshfed.server.wan.gateway_locator import GatewayLocator, eligible_addresses
from meshfed.server.wan.replication import SecondaryReplication

PROBE_TIMEOUT = 2.0
RPC_TIMEOUT = 5.0
MESH_GATEWAY = "mesh-gateway"

RemoteCall = Callable[[str, str, RequestHeader, Any, float], Awaitable[tuple[QueryMeta, Any]]]


async def tcp_error(address: str, timeout: float = PROBE_TIMEOUT) -> str:
    """"" when `host:port` accepts a TCP connection, else why not."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout)
    except (OSError, ValueError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    writer.close()
    return ""


def certificate_facts(cert_file: str) -> tuple[list[str] | None, datetime.datetime | None, str]:
    if not cert_file:
        return None, None, "no server certificate configured"
    try:
        with open(cert_file, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError) as exc:
        return None, None, f"cannot read {cert_file}: {exc}"
    try:
        names = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    return names, cert.not_valid_after_utc, ""


class FederationCheck:
    def __init__(self, config: Config, *, state: StateStore, locator: GatewayLocator, router: Router,
                 is_leader: Callable[[], bool], replication: SecondaryReplication) -> None:
        self._config = config
        self._state = state
        self._locator = locator
        self._router = router
        self._is_leader = is_leader
        self._replication = replication

    def handlers(self) -> dict[str, Handler]:
        return {"Federation/Check": self.check}

    async def check(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            hops = await self.run()
            index = max(1, self._state.index("federation_states"))
            meta = QueryMeta(index=index, known_leader=True)
            return meta, {"Datacenter": self._config.datacenter, "Healthy": self_check.healthy(hops),
                          "Hops": [hop.to_wire() for hop in hops]}

        return await self._router.serve("Federation/Check", header, body, local, write=False)

    async def _rpc(self, datacenter: str) -> tuple[str, float, float | None]:
        """(error, round trip ms, remote clock minus ours) of one `Status/Time` call to `datacenter`."""
        remote = self._router.remote
        if remote is None:
            return "WAN federation is not enabled on this server", 0.0, None
        started, wall = time.monotonic(), time.time()
        try:
            _, remote_time = await remote(datacenter, "Status/Time", RequestHeader(datacenter=datacenter), {}, RPC_TIMEOUT)
        except Exception as exc:  # any failure of the hop is the finding itself
            return str(getattr(exc, "message", "") or exc) or type(exc).__name__, 0.0, None
        elapsed = time.monotonic() - started
        skew = float(remote_time) - (wall + elapsed / 2) if isinstance(remote_time, int | float) else None
        return "", elapsed * 1000, skew

    async def run(self) -> list[self_check.Hop]:
        cfg = self._config
        domain = cfg.domain.rstrip(".")
        names, not_after, cert_error = certificate_facts(cfg.tls.cert_file)
        hops = self_check.tls_hops(cfg.datacenter, domain, names, not_after, datetime.datetime.now(datetime.UTC), cert_error)

        _, local = self._state.check_service_nodes_by_kind(MESH_GATEWAY)
        _, states = self._state.federation_state_list()
        remote = {s.datacenter: eligible_addresses(s, wan=True) for s in states if s.datacenter != cfg.datacenter}
        local_addresses = ["{}:{}".format(*g.best_address(False)) for g in local]
        probe_addresses = sorted({*local_addresses, *(a for addrs in remote.values() for a in addrs)})
        targets = sorted(set(remote) | ({cfg.primary} if not cfg.is_primary else set()))

        probes = await asyncio.gather(*(tcp_error(a) for a in probe_addresses))
        reachable = dict(zip(probe_addresses, probes, strict=True))
        rpcs = dict(zip(targets, await asyncio.gather(*(self._rpc(dc) for dc in targets)), strict=True))

        hops += self_check.local_gateway_hops(cfg.datacenter, local, reachable)
        for dc in sorted(remote):
            error, ms, _ = rpcs[dc]
            hops += self_check.remote_dc_hops(dc, remote[dc], reachable, error, ms)
        view = self._locator.view()
        if cfg.is_primary:
            hops.append(self_check.primary_hop(cfg.primary, True, view.mode, view.reason, "", 0.0))
        else:
            error, ms, skew = rpcs[cfg.primary]
            hops.append(self_check.primary_hop(cfg.primary, False, view.mode, view.reason, error, ms))
            hops += self_check.replication_hops(False, self._is_leader(), self._replication.statuses, time.time())
            hops.append(self_check.clock_hop(cfg.primary, skew, error))
        return hops
