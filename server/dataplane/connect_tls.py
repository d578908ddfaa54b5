"""Mutual TLS for Connect proxies: contexts built from a leaf and the CA roots, and the peer's
SPIFFE identity (reference/mesh-dataplane.md §4.2-4.4).

Both sides require the other's certificate and verify it against every current root (a rotated-
out root stays trusted until its leaves expire); intermediates a peer sends in its chain are used
to build the path, so a dc2 leaf (leaf + dc2 intermediate) verifies against the shared root.
Hostname checking is off: Connect identities are SPIFFE URIs, checked by `peer_uri` against the
expected service after the handshake.

Python's ssl loads keys only from files: the key is written to a private temporary directory
(mode 0700, file 0600) for the instant of loading and removed at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature


@dataclass(frozen=True)
class ConnectContexts:
    server: ssl.SSLContext  # inbound: presents the leaf, requires a client leaf
    client: ssl.SSLContext  # outbound: presents the leaf, verifies the destination's chain


def _write_private(directory: str, name: str, data: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    return path


def build_contexts(cert_pem: str, key_pem: str, roots_pem: Sequence[str]) -> ConnectContexts:
    if not roots_pem:
        raise ValueError("no CA roots: cannot verify peers")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    with tempfile.TemporaryDirectory(prefix="meshfed-leaf-") as directory:
        cert_file = _write_private(directory, "leaf.pem", cert_pem)
        key_file = _write_private(directory, "leaf-key.pem", key_pem)
        for context in (server, client):
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata="\n".join(roots_pem))
            context.load_cert_chain(cert_file, key_file)
    return ConnectContexts(server, client)


def peer_uri(ssl_object: ssl.SSLObject | None) -> tuple[str, str]:
    """(SPIFFE URI, serial as colon hex) of the verified peer certificate; ("", "") if none."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return "", ""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "", ""
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8, "big")
    return (uris[0] if len(uris) == 1 else ""), ":".join(f"{b:02x}" for b in serial)


def leaf_issued_by(ssl_object: ssl.SSLObject | None, roots_pem: Sequence[str]) -> bool:
    """Whether the verified peer leaf was signed directly by one of `roots_pem`.

    A proxy that trusts its own roots and its peers' in one context must still tie a caller's
    trust domain to the CA that vouches for it: otherwise a peer's CA could issue a leaf that
    claims our trust domain (or another peer's). Python's ssl does not expose the verified chain
    before 3.13, so this looks only at the leaf's direct issuer (a leaf signed through an
    intermediate does not pass for a peer)."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return False
    leaf = x509.load_der_x509_certificate(der)
    for pem in roots_pem:
        try:
            leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(pem.encode()))
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False
