"""What meshfed's Connect proxy knows of its cluster's peers (reference peering.md §3, §4, §7):
their trust bundles, as `/v1/internal/peering/trust-bundles` serves them. Pure: the proxy feeds
it answers and asks it questions.

- `roots`: our roots plus every peer's, the trust anchors of both TLS contexts;
- `vouched_for`: a caller claiming a peer's trust domain must be signed by that peer's roots,
  one claiming ours by none of the peers' (all of them are trusted in the same context);
- `target`: the SNI and the SPIFFE ID of a `DestinationPeer` upstream;
- `gateways`: the peer's mesh gateways (for mode `remote`).
"""

from __future__ import annotations

import ssl
from typing import Any

from meshfed.rpc.spiffe import SpiffeError, parse_service_uri, peered_service_sni, service_uri
from meshfed.server.dataplane.connect_tls import leaf_issued_by

Bundle = dict[str, Any]


class PeerTrust:
    def __init__(self) -> None:
        self.bundles: dict[str, Bundle] = {}  # lower(peer name) -> trust bundle JSON

    def update(self, body: Any) -> bool:
        """Take a new answer; True when it changed what the proxy trusts or dials."""
        bundles = {str(b.get("PeerName", "")).lower(): b for b in body or () if isinstance(b, dict)}
        changed = bundles != self.bundles
        self.bundles = bundles
        return changed

    def describe(self) -> str:
        return ", ".join(f"{name}={b.get('TrustDomain')}" for name, b in sorted(self.bundles.items())) or "-"

    def _peer_roots(self) -> list[str]:
        return [pem for b in self.bundles.values() for pem in b.get("RootPEMs") or ()]

    def roots(self, own: list[str]) -> list[str]:
        return list(dict.fromkeys([*own, *self._peer_roots()]))

    def vouched_for(self, uri: str, ssl_object: ssl.SSLObject | None) -> tuple[bool, str]:
        try:
            domain = parse_service_uri(uri).trust_domain
        except SpiffeError:
            return True, ""  # the authorize call refuses it with the server's reason
        peer = next((b for b in self.bundles.values() if b.get("TrustDomain") == domain), None)
        if peer is not None:
            ok = leaf_issued_by(ssl_object, peer.get("RootPEMs") or ())
            return ok, "" if ok else f"leaf for {domain} not signed by that peer's roots"
        others = self._peer_roots()
        if others and leaf_issued_by(ssl_object, others):
            return False, f"leaf for {domain} signed by a peer's CA"
        return True, ""

    def bundle(self, peer: str) -> Bundle:
        found = self.bundles.get(peer.lower())
        if found is None:
            raise RuntimeError(f"no trust bundle for peer {peer!r} yet")
        return found

    def target(self, peer: str, service: str) -> tuple[str, str]:
        """(SNI to dial, SPIFFE ID the destination must present): the name the peer gives us goes
        in the SNI, so the peer's gateway sees its own trust domain and routes to `service`."""
        bundle = self.bundle(peer)
        domain = str(bundle.get("TrustDomain") or "")
        sni = peered_service_sni(service, str(bundle.get("RemotePeerName") or ""), domain)
        return sni, service_uri(domain, str(bundle.get("Datacenter") or ""), service)

    def gateways(self, peer: str) -> list[tuple[str, int]]:
        parts = [str(a).rpartition(":") for a in self.bundle(peer).get("MeshGateways") or ()]
        return [(host, int(port)) for host, _, port in parts if host and port.isdigit()]
