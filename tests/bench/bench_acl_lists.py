"""The cost of ACL filtering on a long list: the mesh-gateway list of 1,000 DCs x 4 gateways.

With ACLs on, every read of a filtered list used to decode the answer it had just encoded, check
each row against the token and encode it again. The gateways read this list (3.2 MB with 1,000
DCs) on every change, with a token that may read every service and node, so all of that work
dropped nothing. A token that reads every name of what a filter checks now skips it.

One 3-server datacenter with `acl { enabled = true, default_policy = "deny" }` on 127.0.207.x,
1,000 federation states written with the management token, then the list read on the leader
(default consistency, LIST_SAMPLES sequential reads after a first one) by four tokens, in
interleaved rounds so drift hits all alike:

- `management`: never filtered (the same-run baseline);
- `gateway`: Consul's mesh-gateway policy (`service_prefix ""` and `node_prefix ""` read), which
  skips the filter;
- `gateway_with_a_deny`: the same policy plus a deny on one service no gateway uses, so the filter
  runs and keeps every row: what every gateway token cost before the skip;
- `narrow`: `service "web"` read only; the filter runs and drops every row.

`first_ms` is each token's first read: the filter runs (cold). The p50/p99 are repeated reads of
the unchanged list, which the server answers from its remembered filtered body
(server/http/filtered_once.py) for the two filtered tokens.

Run from the repository root: python -m tests.bench.bench_acl_lists [--dcs 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aiohttp

from meshfed.fsm.records import to_wire
from meshfed.rpc.client import ConnectionPool
from meshfed.rpc.header import RequestHeader

from .bench_federation_scale import big_state
from .common import emit, machine, meshfed_datacenter, ratio, stop_cleanly_on_sigterm, summarize_seconds

BASE = "127.0.207"
MANAGEMENT = str(uuid.uuid4())
LIST_PATH = "/v1/internal/federation-states/mesh-gateways"
LIST_SAMPLES = 10
LOAD_CONCURRENCY = 32
GATEWAY_RULES = 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
POLICIES = {
    "gateway": GATEWAY_RULES,
    "gateway_with_a_deny": GATEWAY_RULES + 'service "legacy-billing" { policy = "deny" }\n',
    "narrow": 'service "web" { policy = "read" }\n',
}


async def load(pool: ConnectionPool, address: str, count: int) -> float:
    started = time.perf_counter()
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            state = big_state(queue.pop())
            header = RequestHeader(token=MANAGEMENT, request_id=uuid.uuid4().hex)
            _, reply = await pool.call(address, "FederationState/Apply", header,
                                       {"op": "upsert", "state": to_wire(state)}, timeout=30)
            assert reply is True

    await asyncio.gather(*(worker() for _ in range(LOAD_CONCURRENCY)))
    return time.perf_counter() - started


async def make_tokens(session: aiohttp.ClientSession, http: str) -> dict[str, str]:
    tokens = {"management": MANAGEMENT}
    headers = {"X-Consul-Token": MANAGEMENT}
    for name, rules in POLICIES.items():
        async with session.put(f"{http}/v1/acl/policy", json={"Name": name, "Rules": rules}, headers=headers) as r:
            assert r.status == 200, await r.text()
        secret = str(uuid.uuid4())
        async with session.put(f"{http}/v1/acl/token", headers=headers,
                               json={"SecretID": secret, "Policies": [{"Name": name}]}) as r:
            assert r.status == 200, await r.text()
        tokens[name] = secret
    return tokens


async def read_once(session: aiohttp.ClientSession, http: str, token: str) -> tuple[float, int, bool]:
    started = time.perf_counter()
    async with session.get(http + LIST_PATH, headers={"X-Consul-Token": token}) as response:
        body = await response.read()
        assert response.status == 200, (response.status, body[:200])
        filtered = response.headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    return time.perf_counter() - started, len(body), filtered


async def run(dcs: int, rounds: int) -> dict[str, Any]:
    with meshfed_datacenter(BASE, config={"acl": {"enabled": True, "default_policy": "deny",
                                                  "tokens": {"initial_management": MANAGEMENT}}}) as datacenter:
        leader = datacenter.leader()
        pool = ConnectionPool()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                tokens = await make_tokens(session, leader.http)
                load_seconds = await load(pool, leader.rpc_address, dcs)
                samples: dict[str, list[float]] = {name: [] for name in tokens}
                facts: dict[str, dict[str, Any]] = {}
                for name, token in tokens.items():  # first reads: fill the per-record caches
                    first, size, filtered = await read_once(session, leader.http, token)
                    facts[name] = {"first_ms": round(first * 1000, 1), "bytes": size, "filtered_header": filtered}
                for _ in range(rounds):
                    for name, token in tokens.items():
                        for _ in range(LIST_SAMPLES):
                            seconds, _, _ = await read_once(session, leader.http, token)
                            samples[name].append(seconds)
        finally:
            await pool.close()
    figures = {name: {**summarize_seconds(values), **facts[name]} for name, values in samples.items()}
    return {
        "dcs": dcs,
        "load_seconds": round(load_seconds, 1),
        "list_on_leader": figures,
        "ratios": {
            f"{name}_p50__over__management_p50": ratio(figures[name]["p50_ms"], figures["management"]["p50_ms"])
            for name in POLICIES
        } | {"gateway_with_a_deny_p50__over__gateway_p50": ratio(figures["gateway_with_a_deny"]["p50_ms"],
                                                                    figures["gateway"]["p50_ms"])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dcs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stop_cleanly_on_sigterm()
    started = time.perf_counter()
    figures = asyncio.run(run(args.dcs, args.rounds))
    emit({"benchmark": "acl_lists", "machine": machine(), **figures,
          "wall_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
