"""Each federation state's wire form, computed once per record (issue #13, goal 1).

With 1,000 datacenters x 4 gateways, every change to the table woke each long-poller (the
secondaries' replicators, the gateways' mesh-gateways watches), and each answer re-encoded all
1,000 records: about 0.5 CPU-seconds per write on each side. Records are frozen dataclasses and
the state store keeps the same object until a write replaces it, so one record's wire dict can be
reused until then; a write re-encodes only the record it changed.

Hits are decided by identity (`cached record is current record`), not by (datacenter,
modify_index): identity cannot be fooled by a snapshot restore that brings back a different record
under an index seen before, and it costs nothing to compare. The cached dicts are shared by every
answer, so consumers must treat them as read-only (the codec and the HTTP shapes only read).
"""

from __future__ import annotations

from typing import Any

from meshfed.fsm.records import FederationState, to_wire


class FederationStateWire:
    def __init__(self) -> None:
        self._by_dc: dict[str, tuple[FederationState, dict[str, Any]]] = {}
        self.encoded = 0  # records encoded (misses), for tests and benchmarks

    def wire(self, state: FederationState) -> dict[str, Any]:
        key = state.datacenter.lower()
        cached = self._by_dc.get(key)
        if cached is not None and cached[0] is state:
            return cached[1]
        encoded = to_wire(state)
        self._by_dc[key] = (state, encoded)
        self.encoded += 1
        return encoded

    def wire_list(self, states: list[FederationState]) -> list[dict[str, Any]]:
        """All states' wire forms; forgets datacenters no longer in the table."""
        out = [self.wire(s) for s in states]
        if len(self._by_dc) > len(states):
            present = {s.datacenter.lower() for s in states}
            for key in [k for k in self._by_dc if k not in present]:
                del self._by_dc[key]
        return out

    def mesh_gateways(self, states: list[FederationState]) -> dict[str, list[dict[str, Any]]]:
        """`{datacenter: [gateway wire]}` for the states that have gateways (the ListMeshGateways shape)."""
        return {w["datacenter"]: w["mesh_gateways"] for w in self.wire_list(states) if w["mesh_gateways"]}
