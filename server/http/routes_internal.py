"""Every /v1/internal/* route, in one table: the views operators and meshfed's own tools script
against rather than Consul's public API.

- federation-state(s): the records and their mesh gateways (reference/federation.md §4;
  operators.md #13324). GET only, except a meshfed DELETE of a decommissioned DC's record.
- mesh-gateway-mode: which mode applies to one upstream and which level set it (connect-data §B.6).
- gateway-locator, replication: this server's WAN federation state, read from `Api.wan`.
- federation/check: the hop-by-hop walk of `meshfed federation check` (server/wan/self_check.py),
  run by the leader unless `?stale`, in another DC with `?dc=`; 200 whatever the verdict.

Other methods on these paths are 405.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from aiohttp import web

from meshfed.fsm.peering.records import PeeringTrustBundle
from meshfed.fsm.records import csn_from_wire, federation_state_from_wire
from meshfed.server.http.api import api_of, required_query
from meshfed.server.http.params import MAX_INDEX, BadRequest, parse_header
from meshfed.server.http.respond import json_body, meta_headers, with_meta
from meshfed.server.http.shapes import csn_json, federation_state_json


async def list_states(request: web.Request) -> web.Response:
    api = api_of(request)
    meta, states = await api.federation.list(parse_header(request), {})
    return with_meta([federation_state_json(federation_state_from_wire(s)) for s in states], meta)


class GatewayListJson:
    """Each datacenter's gateway list as JSON text, kept while the endpoint hands back the same
    wire list. The endpoint reuses one wire list per federation-state record until a write
    replaces it (server/endpoints/wire_cache.py), so with 1,000 DCs a change re-encodes one DC,
    not 1,000, for every long-poller. A list forwarded from the leader arrives as new objects; it
    is compared with the cached one and encoded only if it differs."""

    def __init__(self) -> None:
        # dc -> (its wire list, its `"dc":[...]` member of the answer object, encoded)
        self._by_dc: dict[str, tuple[Any, bytes]] = {}

    def body(self, by_dc: dict[str, Any]) -> bytes:
        """The answer's bytes: one cached member per DC, joined (issue #13: a 1,000-DC answer costs a
        join, not an encoding). Followers answer from their own store (the endpoint's barrier), so
        the lists are the same objects there too; the equality check is for a list forwarded whole."""
        body = self.members(by_dc)
        cache = self._by_dc
        if len(cache) > len(by_dc):
            for dc in [d for d in cache if d not in by_dc]:
                del cache[dc]
        return body

    def members(self, by_dc: dict[str, Any]) -> bytes:
        """`{"dc":[...],...}` for these DCs only, through the same cache (a delta's changed DCs are
        the records' current lists, which the next full answer reuses); forgets nothing."""
        parts = []
        cache = self._by_dc
        for dc, gateways in by_dc.items():
            cached = cache.get(dc)
            # Same object when served here; an equal list when forwarded from the leader (decoded
            # afresh): comparing nested dicts runs in C and costs far less than re-encoding.
            if cached is None or (cached[0] is not gateways and cached[0] != gateways):
                text = json.dumps([csn_json(csn_from_wire(c)) for c in (gateways or [])], separators=(",", ":"))
                cached = cache[dc] = (gateways, json.dumps(dc).encode() + b":" + text.encode())
            parts.append(cached[1])
        return b"{" + b",".join(parts) + b"}"


GATEWAY_LIST_JSON = web.AppKey("gateway_list_json", GatewayListJson)


CHANGES_SINCE = "changes-since"


def changes_since(request: web.Request) -> int | None:
    """meshfed extension `?changes-since=N` (None without it; Consul clients never send it)."""
    text = request.query.get(CHANGES_SINCE)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_INDEX:
        raise BadRequest(f"Invalid {CHANGES_SINCE}: {text[:40]!r} is not an index (an integer >= 0)")
    return int(text)


async def list_mesh_gateways(request: web.Request) -> web.Response:
    """Consul's `{dc: [CheckServiceNode]}` of every datacenter with gateways. With meshfed's
    `?changes-since=N` (N: the X-Consul-Index of the caller's last answer; the same `index`/`wait`
    blocking), only what changed after N, for meshfed's own mesh gateway (issue #13 goal 1: a
    write no longer costs each gateway a parse of the whole 3 MB list):
    `{"Resync": false, "Changed": {dc: [CheckServiceNode]}, "Deleted": [dc]}`, where a changed DC
    with no gateways left has `[]`; or `{"Resync": true}` when N is 0, behind the servers' change
    log or ahead of the store: read the full list again. Rows are filtered by ACLs exactly as in
    the full list (server/acl/filters.py `mesh_gateways_by_datacenter`)."""
    api = api_of(request)
    since = changes_since(request)
    header = parse_header(request)
    if since is not None:
        meta, delta = await api.federation.mesh_gateways_since(header, since)
        if delta["resync"]:
            body = b'{"Resync":true}'
        else:
            body = b'{"Resync":false,"Changed":%s,"Deleted":%s}' % (
                request.app[GATEWAY_LIST_JSON].members(delta["mesh_gateways"]),
                json.dumps(delta["deleted"], separators=(",", ":")).encode())
        return web.Response(body=body, content_type="application/json", headers=meta_headers(meta))
    meta, by_dc = await api.federation.list_mesh_gateways(header, {})
    body = request.app[GATEWAY_LIST_JSON].body(by_dc)
    return web.Response(body=body, content_type="application/json", headers=meta_headers(meta))


async def get_state(request: web.Request) -> web.Response:
    api = api_of(request)
    name = request.match_info.get("dc", "")
    if not name:
        raise BadRequest("Missing datacenter name")
    meta, body = await api.federation.get(parse_header(request), {"datacenter": name})
    raw = body.get("state") if isinstance(body, dict) else None
    if raw is None:
        return web.Response(status=404, headers=meta_headers(meta))
    return with_meta(
        {
            "State": federation_state_json(federation_state_from_wire(raw)),
            "Index": meta.index,
            "LastContact": int(meta.last_contact * 1e9),
            "KnownLeader": meta.known_leader,
            "ConsistencyLevel": meta.consistency_level,
            "NotModified": False,
            "Backend": 0,
            "ResultsFilteredByACLs": False,
        },
        meta,
    )


async def delete_state(request: web.Request) -> web.Response:
    """meshfed extra (Consul has no HTTP delete): remove a decommissioned DC's record in the primary.
    Re-targeted to the primary wherever it arrives, like every federation-state write."""
    api = api_of(request)
    name = request.match_info.get("dc", "")
    header = parse_header(request, write=True)
    await api.federation.apply(header, {"op": "delete", "state": {"datacenter": name}})
    return json_body(True)


async def missing_name(request: web.Request) -> web.Response:
    raise BadRequest("Missing datacenter name")


async def mesh_gateway_mode(request: web.Request) -> web.Response:
    query = request.query
    body = {
        "service": required_query(request, "service"),
        "upstream": required_query(request, "upstream"),
        "upstream_datacenter": query.get("upstream-datacenter", ""),
        "instance_mode": query.get("instance-mode", ""),
        "upstream_mode": query.get("upstream-mode", ""),
    }
    meta, result = await api_of(request).config_entries.mesh_gateway_mode(parse_header(request), body)
    return with_meta(result, meta)


async def gateway_locator(request: web.Request) -> web.Response:
    wan = api_of(request).wan
    view = wan.locator.view()
    return json_body({
        "Enabled": wan.enabled,
        "Datacenter": view.datacenter,
        "PrimaryDatacenter": view.primary_datacenter,
        "Populated": view.populated,
        "Mode": view.mode,
        "Reason": view.reason,
        "LocalGateways": view.local_gateways,
        "PrimaryGateways": view.primary_gateways,
        "FallbackGateways": view.fallback_gateways,
        "FallbackDisabled": wan.config.disable_primary_gateway_fallback,
        "Replication": view.replication,
    })


async def replication(request: web.Request) -> web.Response:
    wan = api_of(request).wan
    config = wan.config
    now = time.time()
    rows: list[dict[str, Any]] = []
    for status in wan.replication_statuses.values():
        data = dataclasses.asdict(status)
        rows.append({
            "Type": status.name,
            "Enabled": not config.is_primary,
            "Running": data["running"],
            "SourceDatacenter": config.primary,
            "ReplicatedIndex": data["last_remote_index"],
            "LastSuccess": data["last_success"],
            "LastError": data["last_error"],
            "LastErrorMessage": data["last_error_message"],
            "ConsecutiveFailures": data["consecutive_failures"],
            "Rounds": data["rounds"],
            "Applies": data["applies"],
            "LagSeconds": status.lag_seconds(now) if status.running else 0.0,
        })
    return json_body({"Datacenter": config.datacenter, "Primary": config.is_primary, "Types": rows})


async def federation_check(request: web.Request) -> web.Response:
    meta, report = await api_of(request).wan.check.check(parse_header(request), {})
    return with_meta(report, meta)


def trust_bundle_json(bundle: PeeringTrustBundle, server_name: str = "") -> dict[str, Any]:
    """`server_name`: the name the peer's servers answer to, on a peering we dial (our mesh gateway
    routes it to the peer's gateways when we peer through mesh gateways, peering.md §4)."""
    return {
        "PeerName": bundle.peer_name, "TrustDomain": bundle.trust_domain, "RootPEMs": list(bundle.root_pems),
        "RemotePeerName": bundle.remote_peer_name, "Datacenter": bundle.datacenter,
        "MeshGateways": list(bundle.gateway_addresses), "PeerServerName": server_name,
        "ModifyIndex": bundle.modify_index,
    }


async def trust_bundles(request: web.Request) -> web.Response:
    """`/v1/internal/peering/trust-bundles` (blocking): every peer's Connect roots, trust domain,
    the name it gives us and its gateways, for our proxies (verify peer callers and destinations,
    build the SNI they dial) and our mesh gateway (route peered SNIs to the peer's gateways)."""
    api = api_of(request)
    meta, bundles = await api.queries.run(parse_header(request), ("peering_trust_bundles",),
                                          api.state.peering_trust_bundles)
    rows = {b.peer_name: api.state.peering_get(b.peer_name)[1] for b in bundles}
    return with_meta([trust_bundle_json(b, row.peer_server_name if row is not None and row.is_dialer else "")
                      for b, row in ((b, rows[b.peer_name]) for b in bundles)], meta)


def add(app: web.Application) -> None:
    app[GATEWAY_LIST_JSON] = GatewayListJson()
    app.router.add_get("/v1/internal/federation-states", list_states)
    app.router.add_get("/v1/internal/federation-states/mesh-gateways", list_mesh_gateways)
    app.router.add_get("/v1/internal/federation-state/", missing_name)
    app.router.add_get("/v1/internal/federation-state/{dc}", get_state)
    app.router.add_delete("/v1/internal/federation-state/{dc}", delete_state)
    app.router.add_get("/v1/internal/mesh-gateway-mode", mesh_gateway_mode)
    app.router.add_get("/v1/internal/gateway-locator", gateway_locator)
    app.router.add_get("/v1/internal/replication", replication)
    app.router.add_get("/v1/internal/federation/check", federation_check)
    app.router.add_get("/v1/internal/peering/trust-bundles", trust_bundles)
