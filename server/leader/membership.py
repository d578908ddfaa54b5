"""Each server publishes itself: its addresses (ServerRegister, used to find the leader's RPC
address and to answer members/raft configuration) and its catalog entry, service `consul` on its
node, as Consul's servers appear in the catalog, with Consul's `TaggedAddresses` (`lan`, `wan`,
and `lan_ipv4`/`wan_ipv4` or `_ipv6`; one host for both, since other DCs reach a server through
mesh gateways). Mesh gateways route `<node>.server.<dc>` SNI names to these entries.

Runs on every server, leader or not: a follower's proposal is carried to the leader by Raft.
It re-publishes whenever its own record is missing or differs (e.g. after a restore).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from meshfed.fsm import CatalogRegister, ServerRegister
from meshfed.fsm.records import Node, NodeService, ServerInfo
from meshfed.fsm.state import StateStore
from meshfed.server.raft import RaftNode
from meshfed.server.requests.watch import WatchHub

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0
CONSUL_SERVICE = "consul"


def tagged_addresses(host: str) -> dict[str, str]:
    tagged = {"lan": host, "wan": host}
    try:
        family = "ipv6" if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address) else "ipv4"
    except ValueError:
        return tagged  # a host name: Consul adds the per-family keys only for IP addresses
    return {**tagged, f"lan_{family}": host, f"wan_{family}": host}


def catalog_entry(server: ServerInfo) -> tuple[Node, NodeService]:
    host, _, port = server.rpc_address.rpartition(":")
    node = Node(node=server.node, address=host, datacenter=server.datacenter,
                tagged_addresses=tagged_addresses(host.strip("[]")))
    service = NodeService(
        id=CONSUL_SERVICE,
        service=CONSUL_SERVICE,
        address=host,
        port=int(port),
        meta={"raft_address": server.raft_address, "http_address": server.http_address},
    )
    return node, service


def is_published(state: StateStore, me: ServerInfo) -> bool:
    _, servers = state.servers()
    mine = [s for s in servers if s.node.lower() == me.node.lower()]
    if not mine or (mine[0].raft_address, mine[0].rpc_address, mine[0].http_address, mine[0].datacenter) != (
        me.raft_address, me.rpc_address, me.http_address, me.datacenter
    ):
        return False
    _, node, services = state.catalog_node(me.node)
    # A record published before the tagged addresses existed is published again with them.
    expected, _ = catalog_entry(me)
    return (node is not None and node.tagged_addresses == expected.tagged_addresses
            and any(s.id == CONSUL_SERVICE for s in services))


async def publish_self(state: StateStore, raft: RaftNode, watches: WatchHub, me: ServerInfo) -> None:
    announced = False
    while True:
        if not is_published(state, me):
            node, service = catalog_entry(me)
            try:
                results = await raft.apply(
                    [("", ServerRegister(server=me)), ("", CatalogRegister(node=node, service=service))], timeout=5.0
                )
                if all(r.ok for r in results):
                    if not announced:
                        log.info("published server %s (raft %s, rpc %s)", me.node, me.raft_address, me.rpc_address)
                        announced = True
                else:
                    log.warning("publishing server record failed: %s", [r.error for r in results if not r.ok])
            except Exception as exc:
                log.debug("publishing server record deferred: %s", exc)
            await asyncio.sleep(RETRY_DELAY)
            continue
        await watches.wait_any(watches.futures(("servers", "nodes", "services")), timeout=60.0)
