"""Leaf certificates for services (reference/mesh-dataplane.md §2): the request a server makes for
a caller, the checks the leader applies to it, and the signature.

The split follows where secrets may live. The server that answers `/v1/agent/connect/ca/leaf`
makes the key pair and a CSR (`new_leaf_request`) and keeps the key in memory only; the CSR alone
travels to the leader, whose `check_leaf_csr` applies Consul's checks and whose `sign_leaf` signs
with this DC's signing certificate (the root in the primary, the DC's intermediate in a
secondary, which is then appended so a peer can build the chain to the shared root). Issued
certificates are not stored in Raft, as in Consul. Pure functions apart from key generation.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshfed.rpc.spiffe import ServiceID, SpiffeError, parse_service_uri
from meshfed.rpc.x509 import certificate_pem, leaf_key_usage, new_private_key, private_key_pem, random_serial
from meshfed.server.ca.identity import colon_hex, key_id, subject_key_id
from meshfed.server.ca.signing import _load_cert, _load_key, _utc, load_csr

# Like intermediates, leaves start a minute early so a peer whose clock lags accepts them at once.
LEAF_BACKDATE = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class LeafRequest:
    key_pem: str  # stays on the server that made it
    csr_pem: str


@dataclass(frozen=True)
class SignedLeaf:
    cert_pem: str  # the leaf, then the intermediate in a secondary
    serial: str  # colon hex, as Consul prints it
    valid_after: datetime.datetime
    valid_before: datetime.datetime


def new_leaf_request(identity: ServiceID, key_type: str = "ec", key_bits: int = 256) -> LeafRequest:
    key = new_private_key(key_type, key_bits)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.service)]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return LeafRequest(private_key_pem(key), csr.public_bytes(serialization.Encoding.PEM).decode())


def _csr_uri(csr: x509.CertificateSigningRequest) -> str:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("CSR: no SPIFFE ID (URI subject alternative name missing)") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise ValueError(f"CSR: expected exactly one URI subject alternative name, found {len(uris)}")
    return uris[0]


def check_leaf_csr(csr_pem: object, trust_domain: str, datacenter: str) -> tuple[x509.CertificateSigningRequest, ServiceID]:
    """Consul's checks on a service CSR. Raises ValueError with Consul's wording."""
    csr = load_csr(csr_pem)
    try:
        identity = parse_service_uri(_csr_uri(csr))
    except SpiffeError as exc:
        raise ValueError(f"CSR: SPIFFE ID is {exc}") from None
    if identity.trust_domain != trust_domain.lower():
        raise ValueError(f"SPIFFE ID in CSR from a different trust domain: {identity.trust_domain} does not match "
                         f"current trust domain {trust_domain.lower()}")
    if identity.datacenter.lower() != datacenter.lower():
        raise ValueError(f"SPIFFE ID in CSR from a different datacenter: {identity.datacenter}, "
                         f"this datacenter is {datacenter}")
    return csr, identity


def sign_leaf(signer: Mapping[str, Any], csr: x509.CertificateSigningRequest, identity: ServiceID,
              now: datetime.datetime, ttl_seconds: float) -> SignedLeaf:
    """Sign with the root record's private `SigningKey`/`SigningCert`; never past the signer's life."""
    signing_cert = _load_cert("SigningCert", signer.get("SigningCert"))
    signing_key = _load_key("SigningKey", signer.get("SigningKey"))
    if signing_key.public_key() != signing_cert.public_key():
        raise ValueError("SigningKey: does not belong to SigningCert")
    not_before = _utc(now) - LEAF_BACKDATE
    not_after = min(_utc(now) + datetime.timedelta(seconds=ttl_seconds), signing_cert.not_valid_after_utc)
    if not_after <= _utc(now):
        raise ValueError("SigningCert: expired; this datacenter's CA cannot sign until it is renewed")
    public_key = csr.public_key()
    serial = random_serial()
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(signing_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier(key_id(public_key)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(subject_key_id(signing_cert), None, None), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    chain = certificate_pem(cert)
    if signer.get("SigningCert") != signer.get("RootCert"):
        chain += certificate_pem(signing_cert)  # a secondary's intermediate: peers trust only the root
    serial_bytes = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
    return SignedLeaf(chain, colon_hex(serial_bytes), cert.not_valid_before_utc, cert.not_valid_after_utc)
