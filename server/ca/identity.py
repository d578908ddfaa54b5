"""Who a Connect CA is: its cluster id, SPIFFE trust domain and signing URI, and the key ids
Consul prints for its certificates.

The trust domain is a pure function of the cluster id, so it can never drift from what the
certificates carry; the cluster id itself is made once by the primary and stored forever.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshfed.server.ca.config import PROVIDER_CONSUL

TRUST_DOMAIN_SUFFIX = "consul"

_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def new_cluster_id() -> str:
    """A fresh cluster id; made once by the primary's first leader and then stored forever."""
    return str(uuid.uuid4())


def trust_domain(cluster_id: str) -> str:
    """The SPIFFE trust domain of a cluster: a pure function of the id, so it never drifts."""
    if not isinstance(cluster_id, str) or not _CLUSTER_ID_RE.match(cluster_id):
        raise ValueError(f"invalid cluster id {cluster_id!r}: expected a UUID (letters, digits, '-')")
    return f"{cluster_id}.{TRUST_DOMAIN_SUFFIX}".lower()


def signing_uri(cluster_id: str) -> str:
    """The URI a CA certificate of this cluster carries: the trust domain, no path (not a service)."""
    return f"spiffe://{trust_domain(cluster_id)}"


def ca_common_name(role: str, cluster_id: str) -> str:
    # The random part only tells certificates apart when an operator reads them.
    return (
        f"{role}-{secrets.token_hex(4)}.{PROVIDER_CONSUL}.ca.{cluster_id[:8].lower()}.{TRUST_DOMAIN_SUFFIX}"
    )


def single_signing_uri(what: str, extensions: x509.Extensions) -> str:
    """The one `spiffe://<trust domain>` URI (no path: a signing id, not a service id)."""
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError(f"{what}: no SPIFFE URI (subject alternative name missing)") from None
    uris = [
        uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("spiffe://")
    ]
    if len(uris) != 1:
        raise ValueError(f"{what}: expected exactly one spiffe:// URI, found {len(uris)}")
    host = uris[0].removeprefix("spiffe://")
    if not host or "/" in host:
        raise ValueError(
            f"{what}: {uris[0]!r} is not a CA signing URI (expected spiffe://<cluster id>.consul)"
        )
    return uris[0]


def subject_key_id(cert: x509.Certificate) -> bytes:
    """The key id a certificate declares; computed as Consul would when it declares none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return key_id(cert.public_key())


def colon_hex(data: bytes) -> str:
    """Bytes as Consul prints ids and serials: lower-case hex pairs joined by ':'."""
    return ":".join(f"{byte:02x}" for byte in data)


def key_id(public_key: Any) -> bytes:
    """SHA-256 of the whole PKIX public key, as Consul's built-in provider computes key ids
    (not RFC 5280's SHA-1 of the bit string), so SigningKeyIDs compare equal with Consul's tools."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()

