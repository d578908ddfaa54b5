"""The mesh gateway's table of other datacenters' gateways (issue #13 goal 1), pure functions:
build it from the full `/v1/internal/federation-states/mesh-gateways` list, merge a meshfed
`?changes-since=` delta into it, and say in one log line what changed.

With 1,000 DCs x 4 gateways the full list is 3.2 MB; parsing it on every change took 150-500 ms
of the gateway's event loop, the loop that also splices the DCs' replication calls. A delta
carries only the DCs that changed, so a write costs the gateway what it changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshfed.rpc.gateway_routes import Address

GATEWAY_CHANGES_LOGGED = 10


def describe_gateway_changes(old: dict[str, list[Address]], new: dict[str, list[Address]]) -> str:
    """One log line of what changed between two remote-gateway tables: datacenters added, removed
    or with a new gateway count, at most GATEWAY_CHANGES_LOGGED of them, then how many more.

    Logging the whole table on every change grew with the square of the DC count (476 lines,
    1.8 MB in one run with 1,000 DCs, issue #13); a change now costs one short line."""
    changes = []
    for dc in sorted(old.keys() | new.keys()):
        before, after = old.get(dc), new.get(dc)
        if before == after:
            continue
        if before is None:
            changes.append(f"+{dc}={len(after or [])}")
        elif after is None:
            changes.append(f"-{dc}")
        else:
            changes.append(f"{dc}={len(before)}->{len(after)}" if len(before) != len(after) else f"{dc} addresses changed")
    shown = "; ".join(changes[:GATEWAY_CHANGES_LOGGED])
    more = len(changes) - GATEWAY_CHANGES_LOGGED
    return f"{shown}; and {more} more" if more > 0 else shown


def remote_gateways(by_dc: dict[str, list[dict[str, Any]]], own_dc: str) -> dict[str, list[Address]]:
    """`/v1/internal/federation-states/mesh-gateways` -> dc -> eligible WAN addresses."""
    result: dict[str, list[Address]] = {}
    for dc, gateways in by_dc.items():
        if dc.lower() == own_dc.lower():
            continue
        addresses = set()
        for csn in gateways or []:
            service, node = csn.get("Service") or {}, csn.get("Node") or {}
            if (service.get("Meta") or {}).get("consul-wan-federation") != "1":
                continue
            if any(c.get("Status") == "critical" for c in csn.get("Checks") or []):
                continue
            wan = (service.get("TaggedAddresses") or {}).get("wan") or {}
            host = wan.get("Address") or service.get("Address") or (node.get("TaggedAddresses") or {}).get("wan") or node.get("Address")
            port = wan.get("Port") or service.get("Port")
            if host and port:
                addresses.add((host, int(port)))
        if addresses:
            result[dc.lower()] = sorted(addresses)
    return result


def is_delta(body: Any) -> bool:
    """A `?changes-since=` answer (`{"Resync": bool, ...}`), not a full `{dc: [gateways]}` list,
    whose values are all lists."""
    return isinstance(body, dict) and isinstance(body.get("Resync"), bool)


def merge_gateway_delta(known: Mapping[str, Sequence[Address]], delta: dict[str, Any],
                        own_dc: str) -> tuple[dict[str, list[Address]], set[str]]:
    """The remote-gateway table after a `?changes-since=` answer, and the datacenters it touched.

    A changed DC takes what `remote_gateways` makes of its new list (none eligible, e.g. all
    critical or an empty list: it is dropped, as a full read would); a deleted DC is dropped.
    Raises ValueError on a malformed delta, or on a resync marker (the caller re-reads in full)."""
    if delta.get("Resync") is not False:
        raise ValueError("the servers asked for a full resync")
    changed, deleted = delta.get("Changed") or {}, delta.get("Deleted") or []
    if not isinstance(changed, dict) or not isinstance(deleted, list) or not all(isinstance(d, str) for d in deleted):
        raise ValueError("malformed gateway delta")
    try:
        fresh = remote_gateways(changed, own_dc)
    except (AttributeError, TypeError) as exc:  # a row that is not a map
        raise ValueError(f"malformed gateway delta: {exc}") from None
    merged = {dc: list(addresses) for dc, addresses in known.items()}
    touched = {dc.lower() for dc in changed} | {dc.lower() for dc in deleted}
    touched.discard(own_dc.lower())
    for dc in touched:
        if dc in fresh:
            merged[dc] = fresh[dc]
        else:
            merged.pop(dc, None)
    return merged, touched
