"""X.509 building blocks shared by the server-RPC TLS generator (`rpc/tls.py`) and the Connect CA
(`server/ca/`): key generation, PEM, serial numbers, key usages and the self-signed CA certificate.

They live in `rpc` because both users need them and `rpc` may not import `server`. What differs
between the two CAs stays with its owner: the RPC CA names its certificates for `consul tls`
habits and uses RFC 5280 key ids; the Connect CA adds SPIFFE URIs and Consul's SHA-256 key ids.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

EC_CURVES: dict[int, type[ec.EllipticCurve]] = {
    224: ec.SECP224R1,
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
RSA_KEY_BITS = (2048, 4096)
RSA_PUBLIC_EXPONENT = 65537


def new_ec_key(key_bits: int = 256) -> ec.EllipticCurvePrivateKey:
    """A fresh EC key on the curve of that size (P-256 by default, as `consul tls` makes)."""
    if key_bits not in EC_CURVES:
        raise ValueError(f"unsupported EC key size {key_bits!r}: accepted {sorted(EC_CURVES)}")
    return ec.generate_private_key(EC_CURVES[key_bits]())


def new_private_key(key_type: str = "ec", key_bits: int = 256) -> PrivateKey:
    """A fresh EC (curve chosen by `key_bits`) or RSA key.

    Raises:
        ValueError: the type or size is not one of EC_CURVES / RSA_KEY_BITS.
    """
    if key_type == "ec" and key_bits in EC_CURVES:
        return new_ec_key(key_bits)
    if key_type == "rsa" and key_bits in RSA_KEY_BITS:
        return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=key_bits)
    raise ValueError(
        f"unsupported key {key_type!r}/{key_bits!r}: accepted ec {sorted(EC_CURVES)} or rsa {list(RSA_KEY_BITS)}"
    )


def private_key_pem(key: PrivateKey) -> str:
    # "EC PRIVATE KEY" / "RSA PRIVATE KEY" like Consul, so keys are interchangeable with its tooling.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def random_serial() -> int:
    # Random 128-bit, kept positive and non-zero as RFC 5280 requires.
    return secrets.randbits(127) | 1


def ca_key_usage() -> x509.KeyUsage:
    """What a CA certificate may do: sign certificates and CRLs (and, like Consul's, signatures)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def leaf_key_usage() -> x509.KeyUsage:
    """What an end-entity certificate may do: sign its side of a TLS handshake, nothing more."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def self_signed_ca(
    key: PrivateKey,
    subject: x509.Name,
    serial: int,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    subject_key_id: x509.SubjectKeyIdentifier,
    subject_alternative_names: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    """A root CA certificate: no path length limit, its own issuer, AKI equal to its SKI.

    The caller picks the key id (the two CAs compute it differently) and the serial (random for the
    RPC CA, a counter for Connect roots, as Consul numbers them).
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(subject_key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key_id), critical=False
        )
    )
    if subject_alternative_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(subject_alternative_names)), critical=False
        )
    return builder.sign(key, hashes.SHA256())
