"""The servers of a datacenter as catalog nodes, as Consul's catalog shows them.

Consul's leader registers every server in the catalog (from serf), so `/v1/catalog/nodes` lists the
servers with `TaggedAddresses` `lan`/`wan` (and `lan_ipv4`/`wan_ipv4` or `_ipv6`) and clients such
as py-consul's tests look for them there. meshfed servers publish a `ServerInfo` record through Raft
instead (`server/leader/membership.py`) and are not catalog nodes, so the catalog reads merge the
two: a pure view, no second copy of the same fact in the state machine.

meshfed servers have one address for LAN and WAN (other DCs reach them through mesh gateways), so
`lan` and `wan` are the same host: the server's RPC address.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from meshfed.fsm.records import Node, ServerInfo

# Consul sets this node meta key on every agent; clients filter on it.
SEGMENT_META = "consul-network-segment"


def _host(address: str) -> str:
    host = address.rpartition(":")[0] if ":" in address else address
    return host.strip("[]")


def server_tagged_addresses(server: ServerInfo) -> dict[str, str]:
    host = _host(server.rpc_address)
    tagged = {"lan": host, "wan": host}
    try:
        family = "ipv6" if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address) else "ipv4"
    except ValueError:
        return tagged  # a host name: Consul adds the per-family keys only for IP addresses
    tagged[f"lan_{family}"] = host
    tagged[f"wan_{family}"] = host
    return tagged


def server_node(server: ServerInfo) -> Node:
    return Node(
        node=server.node,
        address=_host(server.rpc_address),
        datacenter=server.datacenter,
        tagged_addresses=server_tagged_addresses(server),
        meta={SEGMENT_META: ""},
        create_index=server.create_index,
        modify_index=server.modify_index,
    )


def with_server_addresses(node: Node, server: ServerInfo) -> Node:
    """A registered node that is also a server keeps its own tags and gains the missing ones."""
    tagged = {**server_tagged_addresses(server), **node.tagged_addresses}
    return node if tagged == node.tagged_addresses else dataclasses.replace(node, tagged_addresses=tagged)


def merge_server_nodes(nodes: list[Node], servers: list[ServerInfo]) -> list[Node]:
    """Catalog nodes plus the servers (the servers table holds this DC's own), by node name
    (case-insensitive, as the store keys them)."""
    by_key = {node.node.lower(): node for node in nodes}
    for server in servers:
        key = server.node.lower()
        by_key[key] = with_server_addresses(by_key[key], server) if key in by_key else server_node(server)
    return [by_key[key] for key in sorted(by_key)]


def find_node(node: Node | None, servers: list[ServerInfo], name: str) -> Node | None:
    """The catalog's record of `name` (None if unregistered), completed or stood in for by the
    server of that name."""
    server = next((s for s in servers if s.node.lower() == name.lower()), None)
    if server is None:
        return node
    return with_server_addresses(node, server) if node is not None else server_node(server)
