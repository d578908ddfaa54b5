"""X.509 building blocks shared by the server-RPC TLS generator and the Connect CA."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from meshfed.rpc.x509 import (
    EC_CURVES,
    ca_key_usage,
    certificate_pem,
    leaf_key_usage,
    new_ec_key,
    new_private_key,
    private_key_pem,
    random_serial,
    self_signed_ca,
)

NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC)
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])


@pytest.mark.parametrize("bits", sorted(EC_CURVES))
def test_ec_keys_use_the_curve_of_their_size(bits: int) -> None:
    key = new_private_key("ec", bits)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.key_size == bits


def test_default_key_is_p256_like_consul_tls() -> None:
    assert new_ec_key().curve.name == "secp256r1"


def test_rsa_key_has_the_requested_size() -> None:
    key = new_private_key("rsa", 2048)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


@pytest.mark.parametrize(("key_type", "bits"), [("ec", 512), ("rsa", 1024), ("ed25519", 256)])
def test_unsupported_keys_are_refused_naming_what_is_accepted(key_type: str, bits: int) -> None:
    with pytest.raises(ValueError, match="accepted"):
        new_private_key(key_type, bits)


def test_private_key_pem_is_traditional_openssl_and_round_trips() -> None:
    key = new_ec_key()
    pem = private_key_pem(key)
    assert pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    assert serialization.load_pem_private_key(pem.encode(), None).public_key() == key.public_key()


def test_serials_are_positive_and_fit_rfc_5280() -> None:
    serials = {random_serial() for _ in range(50)}
    assert len(serials) == 50
    assert all(0 < serial < 2**127 for serial in serials)


def test_key_usages_separate_ca_from_leaf() -> None:
    assert ca_key_usage().key_cert_sign and ca_key_usage().crl_sign
    assert not leaf_key_usage().key_cert_sign and leaf_key_usage().digital_signature


def test_self_signed_ca_is_its_own_issuer_with_matching_key_ids() -> None:
    key = new_ec_key()
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    uri = x509.UniformResourceIdentifier("spiffe://example.consul")
    cert = self_signed_ca(key, SUBJECT, 42, NOW, NOW + datetime.timedelta(days=1), key_id, [uri])

    assert cert.subject == cert.issuer == SUBJECT
    assert cert.serial_number == 42
    assert cert.not_valid_before_utc == NOW
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length is None
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value == ca_key_usage()
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value == key_id
    authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert authority.key_identifier == key_id.digest
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [uri]
    assert x509.load_pem_x509_certificate(certificate_pem(cert).encode()) == cert


def test_self_signed_ca_without_names_has_no_san() -> None:
    key = new_ec_key()
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = self_signed_ca(key, SUBJECT, 1, NOW, NOW + datetime.timedelta(days=1), key_id)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
