"""The Connect CA's certificates (reference connect-data.md §C.2, §C.3): root contents and record
formats, intermediates for secondaries, rotation and pruning."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.server.ca.config import CAConfig, CAConfigError
from meshfed.server.ca.roots import public_view
from meshfed.server.ca.signing import (
    generate_root,
    make_intermediate_csr,
    prune,
    rotate,
    secondary_root,
    sign_intermediate,
)

from .samples import (
    CLUSTER_ID,
    HOUR,
    NOW,
    OTHER_CLUSTER_ID,
    cert_of,
    colon_hex_re,
    common_name,
    fake_root,
    spki_sha256,
    uris,
)

# --------------------------------------------------------------------------------------------------
# Root (§C.1, §C.2 step 3)


def test_root_certificate_contents(root: dict[str, Any]) -> None:
    cert = cert_of(root["RootCert"])
    assert re.fullmatch(r"pri-[0-9a-f]{8}\.consul\.ca\.7f42f496\.consul", common_name(cert.subject))
    assert cert.issuer == cert.subject
    assert uris(cert) == [f"spiffe://{CLUSTER_ID}.consul"]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.serial_number == 7

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    assert not (usage.value.key_encipherment or usage.value.content_commitment or usage.value.key_agreement)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca

    key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert key_id == spki_sha256(cert.public_key())
    cert.verify_directly_issued_by(cert)


def test_root_validity_starts_now_and_lasts_root_ttl(root: dict[str, Any]) -> None:
    cert = cert_of(root["RootCert"])
    start = NOW.replace(microsecond=0)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + datetime.timedelta(hours=87600)
    assert root["NotBefore"] == "2025-05-25T21:39:23Z"
    assert root["NotAfter"] == "2035-05-23T21:39:23Z"


def test_root_record_fields_and_formats(root: dict[str, Any]) -> None:
    cert = cert_of(root["RootCert"])
    der = cert.public_bytes(serialization.Encoding.DER)
    assert root["ID"] == ":".join(f"{b:02x}" for b in hashlib.sha1(der).digest())
    assert colon_hex_re(20).match(root["ID"])
    assert colon_hex_re(32).match(root["SigningKeyID"])
    assert root["SigningKeyID"] == ":".join(f"{b:02x}" for b in spki_sha256(cert.public_key()))
    assert root["Name"] == "Consul CA Primary Cert"
    assert root["SerialNumber"] == 7
    assert root["ExternalTrustDomain"] == CLUSTER_ID
    assert root["RootCert"].endswith("-----END CERTIFICATE-----\n")
    assert root["IntermediateCerts"] is None
    assert root["Active"] is True
    assert (root["PrivateKeyType"], root["PrivateKeyBits"]) == ("ec", 256)


def test_root_keeps_its_private_key_for_the_store(root: dict[str, Any]) -> None:
    assert root["SigningKey"].startswith("-----BEGIN EC PRIVATE KEY-----")
    key = serialization.load_pem_private_key(root["SigningKey"].encode(), password=None)
    assert key.public_key() == cert_of(root["RootCert"]).public_key()


def test_two_roots_for_one_cluster_share_the_trust_domain_but_not_the_key(root: dict[str, Any]) -> None:
    again = generate_root(CLUSTER_ID, NOW, CAConfig(), serial=8)
    assert uris(cert_of(again["RootCert"])) == uris(cert_of(root["RootCert"]))
    assert again["ID"] != root["ID"]
    assert again["SigningKeyID"] != root["SigningKeyID"]


def test_root_follows_configured_ttl_and_key_type() -> None:
    config = CAConfig(
        leaf_cert_ttl="1h",
        intermediate_cert_ttl="3h",
        root_cert_ttl="24h",
        private_key_type="rsa",
        private_key_bits=2048,
    )
    record = generate_root(CLUSTER_ID, NOW, config, serial=1)
    cert = cert_of(record["RootCert"])
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=24)
    assert record["SigningKey"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert (record["PrivateKeyType"], record["PrivateKeyBits"]) == ("rsa", 2048)


def test_root_on_p384() -> None:
    record = generate_root(CLUSTER_ID, NOW, CAConfig(private_key_bits=384), serial=1)
    assert cert_of(record["RootCert"]).public_key().curve.name == "secp384r1"


def test_naive_now_is_taken_as_utc() -> None:
    record = generate_root(CLUSTER_ID, NOW.replace(tzinfo=None), CAConfig(), serial=1)
    assert record["NotBefore"] == "2025-05-25T21:39:23Z"


@pytest.mark.parametrize("serial", [0, -1, 2**64, True, 1.5])
def test_root_refuses_bad_serials(serial: Any) -> None:
    with pytest.raises(ValueError, match="serial"):
        generate_root(CLUSTER_ID, NOW, CAConfig(), serial=serial)


def test_root_refuses_invalid_config() -> None:
    with pytest.raises(CAConfigError) as err:
        generate_root(CLUSTER_ID, NOW, CAConfig(private_key_type="dsa"), serial=1)
    assert err.value.field == "PrivateKeyType"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_reads_root_and_verifies_intermediate(
    root: dict[str, Any], intermediate: tuple[str, str, str], tmp_path: Path
) -> None:
    root_file, intermediate_file = tmp_path / "root.pem", tmp_path / "intermediate.pem"
    root_file.write_text(root["RootCert"])
    intermediate_file.write_text(intermediate[2])
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(root_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"URI:spiffe://{CLUSTER_ID}.consul" in text
    assert "CA:TRUE" in text
    assert "Certificate Sign, CRL Sign" in text
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(intermediate_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pathlen:0" in text
    verified = subprocess.run(
        ["openssl", "verify", "-no_check_time", "-CAfile", str(root_file), str(intermediate_file)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


# --------------------------------------------------------------------------------------------------
# Intermediates for secondaries (§C.3)


def test_intermediate_csr_names_the_cluster_and_carries_its_key() -> None:
    csr_pem, key_pem = make_intermediate_csr(CLUSTER_ID, "dc2")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert re.fullmatch(r"sec-[0-9a-f]{8}\.consul\.ca\.7f42f496\.consul", common_name(csr.subject))
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "dc2"
    assert uris(csr) == [f"spiffe://{CLUSTER_ID}.consul"]
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key() == csr.public_key()


def test_intermediate_csr_refuses_empty_datacenter() -> None:
    with pytest.raises(ValueError, match="datacenter"):
        make_intermediate_csr(CLUSTER_ID, "")


def test_signed_intermediate_chains_to_root_with_path_length_zero(
    root: dict[str, Any], intermediate: tuple[str, str, str]
) -> None:
    csr_pem, _, pem = intermediate
    cert, root_cert = cert_of(pem), cert_of(root["RootCert"])
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    cert.verify_directly_issued_by(root_cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert (
        usage.critical
        and usage.value.key_cert_sign
        and usage.value.crl_sign
        and usage.value.digital_signature
    )
    assert cert.subject == csr.subject
    assert cert.public_key() == csr.public_key()
    assert uris(cert) == uris(csr)
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == spki_sha256(
        cert.public_key()
    )
    authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert authority == root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_intermediate_validity_is_backdated_one_minute(intermediate: tuple[str, str, str]) -> None:
    cert = cert_of(intermediate[2])
    start = NOW.replace(microsecond=0)
    assert cert.not_valid_before_utc == start - datetime.timedelta(minutes=1)
    assert cert.not_valid_after_utc == start + datetime.timedelta(hours=8760)


def test_intermediate_never_outlives_its_root() -> None:
    short_root = generate_root(
        CLUSTER_ID,
        NOW,
        CAConfig(leaf_cert_ttl="1h", intermediate_cert_ttl="3h", root_cert_ttl="24h"),
        serial=1,
    )
    csr_pem, _ = make_intermediate_csr(CLUSTER_ID, "dc2")
    cert = cert_of(sign_intermediate(short_root, csr_pem, NOW, 8760 * HOUR))
    assert cert.not_valid_after_utc == cert_of(short_root["RootCert"]).not_valid_after_utc
    later = NOW + datetime.timedelta(days=2)
    with pytest.raises(ValueError, match="expired"):
        sign_intermediate(short_root, csr_pem, later, 8760 * HOUR)


def test_intermediate_from_another_trust_domain_is_refused(root: dict[str, Any]) -> None:
    csr_pem, _ = make_intermediate_csr(OTHER_CLUSTER_ID, "dc2")
    with pytest.raises(ValueError, match=f"{OTHER_CLUSTER_ID}.consul"):
        sign_intermediate(root, csr_pem, NOW, 8760 * HOUR)


def test_csr_with_a_broken_signature_is_refused(root: dict[str, Any]) -> None:
    csr_pem, _ = make_intermediate_csr(CLUSTER_ID, "dc2")
    der = bytearray(x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    body = base64.encodebytes(bytes(der)).decode()
    tampered = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(ValueError, match="CSR"):
        sign_intermediate(root, tampered, NOW, 8760 * HOUR)


def test_csr_for_a_service_identity_is_refused(root: dict[str, Any]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    service_uri = f"spiffe://{CLUSTER_ID}.consul/ns/default/dc/dc2/svc/web"
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(service_uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="signing URI"):
        sign_intermediate(root, csr.public_bytes(serialization.Encoding.PEM).decode(), NOW, 8760 * HOUR)


def test_garbage_csr_and_non_positive_ttl_are_refused(root: dict[str, Any]) -> None:
    csr_pem, _ = make_intermediate_csr(CLUSTER_ID, "dc2")
    with pytest.raises(ValueError, match="CSR"):
        sign_intermediate(root, "not a csr", NOW, HOUR)
    with pytest.raises(ValueError, match="TTL"):
        sign_intermediate(root, csr_pem, NOW, 0)


def test_only_a_root_with_its_own_key_can_sign(
    root: dict[str, Any], intermediate: tuple[str, str, str]
) -> None:
    csr_pem, key_pem, pem = intermediate
    with pytest.raises(ValueError, match="SigningKey"):
        sign_intermediate(public_view(root), csr_pem, NOW, HOUR)
    copy = secondary_root(root, pem, key_pem)  # signs with the intermediate, not the root
    with pytest.raises(ValueError, match="SigningKey"):
        sign_intermediate(copy, csr_pem, NOW, HOUR)


def test_secondary_root_copies_the_primary_root_and_signs_with_its_intermediate(
    root: dict[str, Any], intermediate: tuple[str, str, str]
) -> None:
    _, key_pem, pem = intermediate
    stored_primary = {**root, "CreateIndex": 8, "ModifyIndex": 9}
    copy = secondary_root(stored_primary, pem, key_pem)
    for field in ("ID", "Name", "SerialNumber", "RootCert", "NotBefore", "NotAfter", "ExternalTrustDomain"):
        assert copy[field] == root[field]
    assert copy["Active"] is True
    assert copy["IntermediateCerts"][-1] == pem
    intermediate_cert = cert_of(pem)
    assert copy["SigningKeyID"] == ":".join(f"{b:02x}" for b in spki_sha256(intermediate_cert.public_key()))
    assert copy["SigningKeyID"] != root["SigningKeyID"]
    assert copy["SigningKey"] == key_pem
    assert root["SigningKey"] not in json.dumps(copy)
    assert "CreateIndex" not in copy and "ModifyIndex" not in copy


def test_secondary_root_appends_to_existing_intermediates(
    root: dict[str, Any], intermediate: tuple[str, str, str]
) -> None:
    _, key_pem, pem = intermediate
    older = "-----BEGIN CERTIFICATE-----\nolder\n-----END CERTIFICATE-----\n"
    copy = secondary_root({**public_view(root), "IntermediateCerts": [older]}, pem, key_pem)
    assert copy["IntermediateCerts"] == [older, pem]


def test_secondary_root_refuses_mismatched_material(
    root: dict[str, Any], intermediate: tuple[str, str, str]
) -> None:
    _, key_pem, pem = intermediate
    _, other_key = make_intermediate_csr(CLUSTER_ID, "dc3")
    with pytest.raises(ValueError, match="does not match"):
        secondary_root(root, pem, other_key)
    other_root = generate_root(CLUSTER_ID, NOW, CAConfig(), serial=2)
    with pytest.raises(ValueError, match="not signed"):
        secondary_root(other_root, pem, key_pem)


# --------------------------------------------------------------------------------------------------
# Rotation and pruning (§C.2 steps 4 and 7)


def test_rotation_keeps_the_old_root_listed_inactive() -> None:
    old = fake_root("old", CreateIndex=5)
    rotated = rotate([old], fake_root("new"), NOW)
    assert [r["ID"] for r in rotated] == ["old", "new"]
    assert [r["Active"] for r in rotated] == [False, True]
    assert rotated[0]["RotatedOutAt"] == "2025-05-25T21:39:23Z"
    assert rotated[0]["CreateIndex"] == 5
    assert "RotatedOutAt" not in rotated[1]
    assert old["Active"] is True and "RotatedOutAt" not in old  # input untouched


def test_rotate_and_prune_results_do_not_share_lists_with_their_input() -> None:
    old = fake_root("old", IntermediateCerts=["i1"])
    rotated = rotate([old], fake_root("new"), NOW)
    rotated[0]["IntermediateCerts"].append("i2")
    prune(rotated, NOW, HOUR)[0]["IntermediateCerts"].append("i3")
    assert old["IntermediateCerts"] == ["i1"]
    assert rotated[0]["IntermediateCerts"] == ["i1", "i2"]


def test_rotation_to_the_active_root_is_a_no_op() -> None:
    roots = [fake_root("a", active=False, RotatedOutAt="2025-01-01T00:00:00Z"), fake_root("b")]
    assert rotate(roots, fake_root("b"), NOW) == roots


def test_rotation_with_a_known_id_replaces_it_in_place() -> None:
    roots = [fake_root("a", active=False, RotatedOutAt="2025-01-01T00:00:00Z"), fake_root("b")]
    updated = rotate(roots, fake_root("b", SigningKeyID="new-intermediate"), NOW)
    assert [r["ID"] for r in updated] == ["a", "b"]
    assert updated[1]["SigningKeyID"] == "new-intermediate"
    reactivated = rotate(roots, fake_root("a", active=False, RotatedOutAt="2025-01-01T00:00:00Z"), NOW)
    assert [(r["ID"], r["Active"]) for r in reactivated] == [("a", True), ("b", False)]
    assert "RotatedOutAt" not in reactivated[0]


def test_rotation_onto_an_empty_set_and_without_id() -> None:
    assert rotate([], fake_root("first", active=False), NOW) == [fake_root("first")]
    with pytest.raises(ValueError, match="ID"):
        rotate([], {"Active": True}, NOW)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcdef"), max_size=6), st.sampled_from("abcdefg"))
def test_any_rotation_leaves_exactly_one_active_root_and_unique_ids(existing: list[str], new_id: str) -> None:
    roots: list[dict[str, Any]] = []
    for root_id in existing:
        roots = rotate(roots, fake_root(root_id), NOW)
    result = rotate(roots, fake_root(new_id), NOW)
    assert [r["ID"] for r in result if r["Active"]] == [new_id]
    assert len({r["ID"] for r in result}) == len(result)
    assert {r["ID"] for r in result} == set(existing) | {new_id}


def test_prune_drops_roots_only_after_twice_the_leaf_ttl() -> None:
    leaf_ttl = 72 * HOUR
    roots = rotate([fake_root("old")], fake_root("new"), NOW)
    just_inside = NOW + datetime.timedelta(hours=144)
    assert [r["ID"] for r in prune(roots, just_inside, leaf_ttl)] == ["old", "new"]
    just_after = just_inside + datetime.timedelta(seconds=1)
    assert [r["ID"] for r in prune(roots, just_after, leaf_ttl)] == ["new"]


def test_prune_never_drops_the_active_root_or_one_without_a_rotation_time() -> None:
    far_future = NOW + datetime.timedelta(days=3650)
    roots = [
        fake_root("unknown", active=False),
        fake_root("garbled", active=False, RotatedOutAt="x"),
        fake_root("a"),
    ]
    assert [r["ID"] for r in prune(roots, far_future, HOUR)] == ["unknown", "garbled", "a"]
