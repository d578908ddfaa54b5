"""Gateway locator: which mesh-gateway address a cross-DC RPC dials (reference/federation.md §7).

Inputs: the federation states this server holds (refreshed by a blocking query on the local
store), the `primary_gateways` fallback addresses from config (re-resolved every
`primary_gateways_interval`, DNS names allowed), and the replication signal (successes and
failures of the federation-state fetch from the primary, reported by the replicator).

Modes, for a secondary dialing the primary:
- *local*: through our own mesh gateways (steady state: two hops, local gateway then the
  primary's gateway; operators.md #7931);
- *direct*: straight to the primary's gateways, picking from the union of the replicated list and
  the fallback list (operators.md #7339), once replication has failed
  FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY times in a row, or when we have no local gateway yet.
Any other datacenter is always reached through our local gateways. In the primary, targets in
other DCs also go through the local gateways, and "the primary" is ourselves.

Eligible gateways carry `consul-wan-federation = "1"` and have no critical check. Choices are
random among the eligible list. Decisions are pure functions below; each change of lists or mode
is logged once and exported as metrics.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meshfed.fsm.records import FederationState
from meshfed.fsm.state import StateStore
from meshfed.server.requests.watch import WatchHub

log = logging.getLogger(__name__)

FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY = 3
REFRESH_WAIT = 300.0

MODE_PRIMARY = "primary"  # we are the primary: nothing to decide
MODE_LOCAL = "local"
MODE_DIRECT = "direct"


def render(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def eligible_addresses(state: FederationState | None, wan: bool) -> list[str]:
    """Sorted host:port of the usable gateways of one federation state."""
    if state is None:
        return []
    addresses = set()
    for csn in state.mesh_gateways:
        if not csn.is_wan_federation_gateway() or csn.is_critical():
            continue
        host, port = csn.best_address(wan)
        if host and port:
            addresses.add(render(host, port))
    return sorted(addresses)


@dataclass
class ReplicationSignal:
    """What the replicator last told us (Consul's SetLastFederationStateReplicationError)."""

    use_replication_signal: bool = False
    last_success: float = 0.0
    last_failure: float = 0.0
    consecutive_failures: int = 0


def dial_primary_through_local(signal: ReplicationSignal, is_primary: bool) -> bool:
    """Consul's DialPrimaryThroughLocalGateway (§7.4)."""
    if is_primary:
        return False
    if not signal.use_replication_signal:
        return True  # followers trust local gateways
    if signal.last_success == 0 and signal.last_failure == 0:
        return False
    if signal.last_success > signal.last_failure:
        return True
    return signal.consecutive_failures < FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY


def candidates(
    target_dc: str,
    *,
    primary_dc: str,
    is_primary: bool,
    populated: bool,
    local_gateways: Sequence[str],
    primary_gateways: Sequence[str],
    fallback_gateways: Sequence[str],
    through_local: bool,
    fallback_disabled: bool = False,
) -> tuple[str, list[str]]:
    """(mode, addresses) for a call to `target_dc` (§7.5 with meshfed's fallback switch)."""
    if target_dc.lower() != primary_dc.lower():
        return MODE_LOCAL, list(local_gateways)
    if is_primary:
        return MODE_PRIMARY, list(primary_gateways)
    if populated and through_local and local_gateways:
        return MODE_LOCAL, list(local_gateways)
    direct = sorted(set(primary_gateways) | (set() if fallback_disabled else set(fallback_gateways)))
    return MODE_DIRECT, direct


@dataclass
class LocatorView:
    """What /v1/internal/gateway-locator shows."""

    datacenter: str
    primary_datacenter: str
    populated: bool
    mode: str
    reason: str
    local_gateways: list[str]
    primary_gateways: list[str]
    fallback_gateways: list[str]
    replication: dict[str, object] = field(default_factory=dict)


class GatewayLocator:
    def __init__(
        self,
        *,
        datacenter: str,
        primary_datacenter: str,
        state: StateStore,
        watches: WatchHub,
        configured_fallbacks: Sequence[str] = (),
        fallback_interval: float = 30.0,
        fallback_disabled: bool = False,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_pick: Callable[[str, str], None] | None = None,
    ) -> None:
        self.datacenter = datacenter
        self.primary_datacenter = primary_datacenter
        self.is_primary = datacenter.lower() == primary_datacenter.lower()
        self._state = state
        self._watches = watches
        self._configured = list(configured_fallbacks)
        self._fallback_interval = fallback_interval
        self._fallback_disabled = fallback_disabled
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_pick = on_pick
        self.populated = False
        self.local_gateways: list[str] = []
        self.primary_gateways: list[str] = []
        self.fallback_gateways: list[str] = []
        self.signal = ReplicationSignal()
        self._last_decision: tuple[str, str] | None = None
        self.set_replication_result(None, from_replication=False)

    # ---- inputs ----------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the lists from local state; returns the federation-states index read."""
        index, states = self._state.federation_state_list()
        by_dc = {s.datacenter.lower(): s for s in states}
        local = eligible_addresses(by_dc.get(self.datacenter.lower()), wan=False)
        primary = eligible_addresses(by_dc.get(self.primary_datacenter.lower()), wan=True)
        if local != self.local_gateways or primary != self.primary_gateways or not self.populated:
            log.info("new cached locations of mesh gateways: primary=%s local=%s", primary or "-", local or "-")
        self.local_gateways, self.primary_gateways = local, primary
        self.populated = True
        self._log_decision()
        return index

    def set_replication_result(self, error: Exception | None, from_replication: bool) -> None:
        now = self._clock()
        if error is None:
            self.signal.last_success = now
            self.signal.consecutive_failures = 0
            if from_replication:
                self.signal.use_replication_signal = True
        else:
            self.signal.last_failure = now
            self.signal.consecutive_failures += 1
        self._log_decision()

    def reset_replication_signal(self) -> None:
        """On losing leadership (or when replication stops), followers trust local gateways."""
        self.signal = ReplicationSignal()
        self.set_replication_result(None, from_replication=False)

    def set_fallbacks(self, addresses: Sequence[str]) -> None:
        addresses = sorted(set(addresses))
        if addresses != self.fallback_gateways:
            log.info("updated fallback list of primary mesh gateways: %s", addresses or "-")
        self.fallback_gateways = addresses

    # ---- decisions -------------------------------------------------------------------------------

    def decide(self, target_dc: str) -> tuple[str, list[str], str]:
        """(mode, candidate addresses, reason)."""
        through_local = dial_primary_through_local(self.signal, self.is_primary)
        mode, addresses = candidates(
            target_dc,
            primary_dc=self.primary_datacenter,
            is_primary=self.is_primary,
            populated=self.populated,
            local_gateways=self.local_gateways,
            primary_gateways=self.primary_gateways,
            fallback_gateways=self.fallback_gateways,
            through_local=through_local,
            fallback_disabled=self._fallback_disabled,
        )
        return mode, addresses, self._reason(target_dc, mode, through_local)

    def _reason(self, target_dc: str, mode: str, through_local: bool) -> str:
        if mode == MODE_PRIMARY:
            return "this is the primary datacenter"
        if target_dc.lower() != self.primary_datacenter.lower():
            return "datacenters other than the primary are always reached through local gateways"
        if mode == MODE_LOCAL:
            return "federation-state replication is healthy: dialing the primary through local gateways"
        if not self.local_gateways:
            return "no eligible local mesh gateway yet: dialing the primary's gateways directly"
        return (
            f"federation-state replication failed {self.signal.consecutive_failures} times in a row "
            f"(threshold {FAILURES_BEFORE_DIALING_PRIMARY_DIRECTLY}): dialing the primary's gateways directly"
        )

    def knows(self, datacenter: str) -> bool:
        """A datacenter we can route to: the primary, or one with a federation state here."""
        if datacenter.lower() == self.primary_datacenter.lower():
            return True
        _, states = self._state.federation_state_list()
        return any(s.datacenter.lower() == datacenter.lower() for s in states)

    def pick(self, target_dc: str) -> str:
        """One address to dial for `target_dc`, or "" when none is known."""
        mode, addresses, _ = self.decide(target_dc)
        if not addresses:
            return ""
        choice = addresses[0] if len(addresses) == 1 else self._rng.choice(addresses)
        if self._on_pick:
            self._on_pick(target_dc, mode)
        return choice

    def _log_decision(self) -> None:
        if self.is_primary:
            return
        mode, _, reason = self.decide(self.primary_datacenter)
        if (mode, reason) != self._last_decision:
            if self._last_decision is not None or mode != MODE_LOCAL:
                log.info("gateway locator: %s (%s)", mode, reason)
            self._last_decision = (mode, reason)

    def view(self) -> LocatorView:
        mode, _, reason = self.decide(self.primary_datacenter)
        return LocatorView(
            datacenter=self.datacenter,
            primary_datacenter=self.primary_datacenter,
            populated=self.populated,
            mode=mode,
            reason=reason,
            local_gateways=list(self.local_gateways),
            primary_gateways=list(self.primary_gateways),
            fallback_gateways=list(self.fallback_gateways),
            replication={
                "UseReplicationSignal": self.signal.use_replication_signal,
                "LastSuccess": self.signal.last_success,
                "LastFailure": self.signal.last_failure,
                "ConsecutiveFailures": self.signal.consecutive_failures,
            },
        )

    # ---- loops -----------------------------------------------------------------------------------

    async def run_refresh(self) -> None:
        """Follow the local federation states (no polling: woken by table changes)."""
        while True:
            futures = self._watches.futures(("federation_states",))
            index = self.refresh()
            if self._state.index("federation_states") == index:
                await self._watches.wait_any(futures, REFRESH_WAIT)

    async def run_fallback_resolver(self) -> None:
        """Re-resolve `primary_gateways` (DNS names allowed) every `primary_gateways_interval`."""
        if not self._configured:
            return
        while True:
            self.set_fallbacks(await resolve_addresses(self._configured))
            await asyncio.sleep(self._fallback_interval)


async def resolve_addresses(entries: Sequence[str]) -> list[str]:
    """host:port entries -> ip:port; names that do not resolve now are skipped (and logged)."""
    loop = asyncio.get_running_loop()
    resolved: set[str] = set()
    for entry in entries:
        host, _, port_text = entry.rpartition(":")
        host = host.strip("[]")
        try:
            port = int(port_text)
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (ValueError, OSError) as exc:
            log.warning("cannot resolve primary gateway %r: %s", entry, exc)
            continue
        for info in infos:
            resolved.add(render(info[4][0], port))
    return sorted(resolved)
