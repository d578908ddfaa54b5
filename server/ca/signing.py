"""The built-in Connect CA's ("consul" provider) certificates: the primary's root, a secondary's
intermediate, and the set of roots as it rotates and is pruned (reference connect-data.md §C.2, §C.3).

Everything here is a pure function of its arguments, apart from fresh key material, serial numbers
of intermediates and the random part of certificate names: the leader routine that calls it owns the
clock, the Raft writes and the retries. That keeps the crypto testable without a cluster and keeps
decisions (rotate, prune, re-key) out of the loops. The records it returns are described in
`roots.py`.

A root's life: generated (Active) -> rotated out (inactive, `RotatedOutAt` set, still trusted so
leaves it signed keep validating) -> pruned once 2 x LeafCertTTL has passed since rotation, when no
leaf it signed can still be valid.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from meshfed.fsm.consul_formats.timestamps import as_utc, format_rfc3339, parse_rfc3339
from meshfed.rpc.x509 import (
    PrivateKey,
    ca_key_usage,
    certificate_pem,
    new_private_key,
    private_key_pem,
    random_serial,
    self_signed_ca,
)
from meshfed.server.ca.config import CAConfig, check_key, duration_ns, validate_config
from meshfed.server.ca.identity import (
    ca_common_name,
    colon_hex,
    key_id,
    signing_uri,
    single_signing_uri,
    subject_key_id,
)
from meshfed.server.ca.roots import PUBLIC_ROOT_FIELDS

ROOT_NAME = "Consul CA Primary Cert"
# Intermediates start a minute in the past so a secondary whose clock lags the primary's can use
# one at once (Consul does the same).
INTERMEDIATE_BACKDATE = datetime.timedelta(minutes=1)
# A rotated-out root stays trusted this many leaf lifetimes, so every leaf it signed expires first.
ROTATED_ROOT_RETENTION_LEAF_TTLS = 2


def _new_private_key(key_type: str, key_bits: int) -> PrivateKey:
    check_key(key_type, key_bits)  # a refusal names Consul's field, not just the key size
    return new_private_key(key_type, key_bits)


def _load_cert(what: str, pem: object) -> x509.Certificate:
    if not isinstance(pem, str) or not pem.strip():
        raise ValueError(f"{what}: missing PEM certificate")
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ValueError(f"{what}: not a valid PEM certificate") from None


def _load_key(what: str, pem: object) -> PrivateKey:
    if not isinstance(pem, str) or not pem.strip():
        raise ValueError(f"{what}: missing PEM private key")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: not a valid unencrypted PEM private key") from None
    if not isinstance(key, PrivateKey):
        raise ValueError(f"{what}: only EC and RSA keys are supported")
    return key


def load_csr(pem: object) -> x509.CertificateSigningRequest:
    """A certificate request whose own signature verifies (it proves the key's holder made it)."""
    if not isinstance(pem, str) or not pem.strip():
        raise ValueError("CSR: missing PEM certificate request")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise ValueError("CSR: not a valid PEM certificate request") from None
    if not csr.is_signature_valid:
        raise ValueError("CSR: signature does not verify")
    return csr


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """Aware UTC, whole seconds: X.509 times carry no fraction, and records must equal the cert."""
    return as_utc(moment).replace(microsecond=0)


def _copy_root(root: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose intermediate list is its own, so callers may edit results without touching input."""
    copy = dict(root)
    if isinstance(copy.get("IntermediateCerts"), list | tuple):
        copy["IntermediateCerts"] = list(copy["IntermediateCerts"])
    return copy


# --------------------------------------------------------------------------------------------------
# Root, intermediate, secondary copy


def generate_root(cluster_id: str, now: datetime.datetime, config: CAConfig, serial: int) -> dict[str, Any]:
    """A new self-signed root for the primary (§C.2 step 3), as a root record with its private key.

    Args:
        serial: the provider's counter (Consul numbers roots 1, 2, ...); becomes the cert's serial.

    Raises:
        CAConfigError: `config` is invalid (key type/bits, TTLs).
        ValueError: bad cluster id or serial.
    """
    uri = signing_uri(cluster_id)
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < 2**64:
        raise ValueError(f"invalid serial {serial!r}: expected an integer from 1 to 2^64-1")
    validate_config(config)
    key = _new_private_key(config.private_key_type, config.private_key_bits)
    not_before = _utc(now)
    not_after = not_before + datetime.timedelta(
        microseconds=duration_ns("RootCertTTL", config.root_cert_ttl) // 1000
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_common_name("pri", cluster_id))])
    root_key_id = x509.SubjectKeyIdentifier(key_id(key.public_key()))
    cert = self_signed_ca(
        key, subject, serial, not_before, not_after, root_key_id, [x509.UniformResourceIdentifier(uri)]
    )
    pem = certificate_pem(cert)
    return {
        "ID": colon_hex(
            hashlib.sha1(cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False).digest()
        ),
        "Name": ROOT_NAME,
        "SerialNumber": serial,
        "SigningKeyID": colon_hex(root_key_id.digest),
        "ExternalTrustDomain": cluster_id,
        "NotBefore": format_rfc3339(cert.not_valid_before_utc),
        "NotAfter": format_rfc3339(cert.not_valid_after_utc),
        "RootCert": pem,
        "IntermediateCerts": None,
        "Active": True,
        "PrivateKeyType": config.private_key_type,
        "PrivateKeyBits": config.private_key_bits,
        # PRIVATE: stored and replicated with the record, never served (see public_view).
        "SigningCert": pem,
        "SigningKey": private_key_pem(key),
    }


def make_intermediate_csr(
    cluster_id: str, datacenter: str, config: CAConfig | None = None
) -> tuple[str, str]:
    """A secondary's request for an intermediate (§C.3): returns `(csr_pem, key_pem)`.

    The key never leaves the secondary; only the CSR goes to the primary. The datacenter is written
    as the subject's OU so an operator reading the served chain can tell whose intermediate it is.
    """
    config = config or CAConfig()
    uri = signing_uri(cluster_id)
    if not isinstance(datacenter, str) or not datacenter:
        raise ValueError(f"invalid datacenter {datacenter!r}: must not be empty")
    key = _new_private_key(config.private_key_type, config.private_key_bits)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, ca_common_name("sec", cluster_id)),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, datacenter),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), private_key_pem(key)


def sign_intermediate(
    root: Mapping[str, Any], csr_pem: str, now: datetime.datetime, ttl_seconds: float
) -> str:
    """The primary signs a secondary's CSR with `root` (§C.3): a CA cert with path length 0.

    Validity runs from now-1min for `ttl_seconds`, but never past the root: a longer claim would
    only hide, from the secondary's renew-at-half-life check, that the chain dies with the root.

    Raises:
        ValueError: the CSR is unparseable, badly signed, has no signing SPIFFE URI, or names another
            trust domain; `root` has no usable signing key for its own certificate; ttl not positive.
    """
    root_cert = _load_cert("RootCert", root.get("RootCert"))
    root_key = _load_key("SigningKey", root.get("SigningKey"))
    if root_key.public_key() != root_cert.public_key():
        raise ValueError(
            "SigningKey: does not belong to RootCert (only the primary's root signs intermediates)"
        )
    if not isinstance(ttl_seconds, int | float) or not ttl_seconds > 0:
        raise ValueError(f"invalid intermediate TTL {ttl_seconds!r}: must be positive seconds")
    csr = load_csr(csr_pem)
    csr_uri = single_signing_uri("CSR", csr.extensions)
    root_domain = single_signing_uri("RootCert", root_cert.extensions)
    if csr_uri.lower() != root_domain.lower():
        raise ValueError(
            f"CSR: trust domain {csr_uri.removeprefix('spiffe://')!r} is not this CA's trust domain "
            f"{root_domain.removeprefix('spiffe://')!r}"
        )

    not_before = _utc(now) - INTERMEDIATE_BACKDATE
    not_after = min(_utc(now) + datetime.timedelta(seconds=ttl_seconds), root_cert.not_valid_after_utc)
    if not_after <= _utc(now):
        raise ValueError(f"RootCert: expired at {format_rfc3339(root_cert.not_valid_after_utc)}; it cannot sign")
    root_key_id = subject_key_id(root_cert)
    public_key = csr.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_id(public_key)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(root_key_id, None, None), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(csr_uri)]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    cert.verify_directly_issued_by(root_cert)
    return certificate_pem(cert)


def secondary_root(
    primary_root: Mapping[str, Any], intermediate_pem: str, intermediate_key_pem: str
) -> dict[str, Any]:
    """The secondary's own copy of the primary's active root (§C.3), signing with its intermediate.

    Only the primary's public fields are copied: its signing key must not reach a secondary's store
    even if the caller passes a full record.

    Raises:
        ValueError: the key does not match the intermediate, or the intermediate is not signed by the root.
    """
    root_cert = _load_cert("RootCert", primary_root.get("RootCert"))
    intermediate = _load_cert("intermediate", intermediate_pem)
    key = _load_key("intermediate key", intermediate_key_pem)
    if key.public_key() != intermediate.public_key():
        raise ValueError("intermediate key: does not match the intermediate certificate")
    try:
        intermediate.verify_directly_issued_by(root_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError("intermediate: not signed by the primary's root") from None
    record = {field: primary_root.get(field) for field in PUBLIC_ROOT_FIELDS}
    intermediate_text = certificate_pem(intermediate)
    record["IntermediateCerts"] = [*list(primary_root.get("IntermediateCerts") or ()), intermediate_text]
    record["SigningKeyID"] = colon_hex(subject_key_id(intermediate))
    record["Active"] = True
    # PRIVATE: what signs leaves in this DC; never served.
    record["SigningCert"] = intermediate_text
    record["SigningKey"] = private_key_pem(key)
    return record


# --------------------------------------------------------------------------------------------------
# The set of roots: rotation and pruning (decisions only; the caller writes the result via Raft)


def rotate(
    roots: Sequence[Mapping[str, Any]], new_root: Mapping[str, Any], now: datetime.datetime
) -> list[dict[str, Any]]:
    """Make `new_root` the one active root; the previous active one stays listed, rotated out at `now`.

    A root whose ID is already listed is replaced in place (no second copy of an ID): re-running
    bootstrap with the same root is a no-op, and a secondary's fresh intermediate for the same
    primary root updates that root instead of rotating it.
    """
    if not new_root.get("ID"):
        raise ValueError("new root: missing ID")
    incoming = {**_copy_root(new_root), "Active": True}
    incoming.pop("RotatedOutAt", None)
    rotated_out_at = format_rfc3339(now)
    result: list[dict[str, Any]] = []
    replaced = False
    for root in roots:
        if root.get("ID") == incoming["ID"]:
            result.append(_copy_root(incoming))
            replaced = True
            continue
        kept = _copy_root(root)
        if kept.get("Active"):
            kept["Active"] = False
            kept["RotatedOutAt"] = rotated_out_at
        result.append(kept)
    if not replaced:
        result.append(incoming)
    return result


def prune(
    roots: Sequence[Mapping[str, Any]], now: datetime.datetime, leaf_ttl_seconds: float
) -> list[dict[str, Any]]:
    """Drop inactive roots rotated out more than 2 x LeafCertTTL ago (§C.2 step 7).

    A root without a readable `RotatedOutAt` is kept: dropping a root too early breaks live leaves,
    keeping it too long only costs bytes.
    """
    horizon = datetime.timedelta(seconds=ROTATED_ROOT_RETENTION_LEAF_TTLS * leaf_ttl_seconds)
    moment = _utc(now)
    kept: list[dict[str, Any]] = []
    for root in roots:
        rotated_out_at = root.get("RotatedOutAt")
        if not root.get("Active") and isinstance(rotated_out_at, str):
            try:
                if moment - parse_rfc3339(rotated_out_at) > horizon:
                    continue
            except ValueError:
                pass
        kept.append(_copy_root(root))
    return kept
