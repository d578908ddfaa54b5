"""Internal RPCs that only servers may call: the caller must hold a server certificate of a
datacenter this server knows, in addition to a token with the right permission (issue #9 item 4).

A token alone is not enough for these: the replication reads carry every token's secret, and
intermediate signing hands out a CA. A certificate alone is not enough either (any leaf of the CA,
a client certificate, or a server certificate made for a datacenter that does not exist). So the
RPC service asks both: this check on the certificate (`RPCService(peer_check=...)`), the
permission table on the token.

A server certificate names `server.<dc>.<domain>` (rpc/tls.py); a datacenter is known when it is
this server's own or has a federation state here (the primary learns every secondary from the
anti-entropy writes that carry the replication token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc

from meshfed.rpc.errors import RPCError

SERVER_ONLY_METHODS = frozenset({
    "ACL/PolicyReplicate", "ACL/RoleReplicate", "ACL/TokenReplicate", "ConnectCA/SignIntermediate",
})
ERR_NOT_A_SERVER = "Permission denied: this call is only served to a server of a known datacenter"


def server_datacenters(dns_names: Iterable[str], domain: str) -> set[str]:
    """Pure: the datacenters whose any-server name `server.<dc>.<domain>` is among `dns_names`."""
    suffix = "." + domain.strip(".").lower()
    found = set()
    for name in dns_names:
        name = name.lower().rstrip(".")
        if name.startswith("server.") and name.endswith(suffix):
            datacenter = name[len("server."):-len(suffix)]
            if datacenter and "." not in datacenter:
                found.add(datacenter)
    return found


class ServerPeerCheck:
    """`PeerCheck` for the gRPC service: refuses SERVER_ONLY_METHODS to anyone but a known server."""

    methods = SERVER_ONLY_METHODS

    def __init__(self, domain: str, known_datacenters: Callable[[], Iterable[str]]) -> None:
        self._domain = domain
        self._known = known_datacenters

    def __call__(self, method: str, dns_names: list[str]) -> None:
        claimed = server_datacenters(dns_names, self._domain)
        known = {dc.lower() for dc in self._known()}
        if not claimed & known:
            raise RPCError(grpc.StatusCode.PERMISSION_DENIED, ERR_NOT_A_SERVER)
