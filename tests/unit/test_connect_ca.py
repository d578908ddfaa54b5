"""The built-in Connect CA (reference connect-data.md §C): certificate contents, record formats,
intermediates for secondaries, rotation/pruning, the HTTP views, and CA configuration parsing."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.server.ca import (
    CAConfig,
    CAConfigError,
    CANotInitializedError,
    config_from_request,
    config_view,
    generate_root,
    make_intermediate_csr,
    new_cluster_id,
    pem_chain,
    prune,
    public_view,
    requires_new_root,
    roots_response,
    rotate,
    secondary_root,
    sign_intermediate,
    trust_domain,
    validate_config,
)

CLUSTER_ID = "7f42f496-fbc7-8692-05ed-334aa5340c1e"
OTHER_CLUSTER_ID = "0a1b2c3d-0000-4000-8000-000000000000"
NOW = datetime.datetime(2025, 5, 25, 21, 39, 23, 654321, tzinfo=datetime.UTC)
HOUR = 3600.0
PRIVATE_MARKERS = ("PRIVATE KEY", '"SigningKey"', '"SigningCert"', '"RotatedOutAt"')


def cert_of(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def common_name(name: x509.Name) -> str:
    return name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def spki_sha256(public_key: Any) -> bytes:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def colon_hex_re(octets: int) -> re.Pattern[str]:
    return re.compile(rf"^[0-9a-f]{{2}}(:[0-9a-f]{{2}}){{{octets - 1}}}$")


@pytest.fixture(scope="module")
def root() -> dict[str, Any]:
    return generate_root(CLUSTER_ID, NOW, CAConfig(cluster_id=CLUSTER_ID), serial=7)


@pytest.fixture(scope="module")
def intermediate(root: dict[str, Any]) -> tuple[str, str, str]:
    """(csr_pem, key_pem, signed intermediate pem) for a secondary dc2."""
    csr_pem, key_pem = make_intermediate_csr(CLUSTER_ID, "dc2")
    return csr_pem, key_pem, sign_intermediate(root, csr_pem, NOW, 8760 * HOUR)


# --------------------------------------------------------------------------------------------------
# Identity


def test_new_cluster_id_is_a_fresh_uuid4() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert uuid.UUID(first).version == 4
    assert str(uuid.UUID(first)) == first
    assert first != second


def test_trust_domain_is_lower_case_and_stable_for_a_cluster_id() -> None:
    assert trust_domain(CLUSTER_ID) == f"{CLUSTER_ID}.consul"
    assert trust_domain(CLUSTER_ID.upper()) == f"{CLUSTER_ID}.consul"
    assert trust_domain(CLUSTER_ID) == trust_domain(CLUSTER_ID)


@pytest.mark.parametrize("bad", ["", "a/b", "x.consul", "spiffe://x", " id"])
def test_trust_domain_refuses_ids_that_would_break_the_spiffe_uri(bad: str) -> None:
    with pytest.raises(ValueError, match="cluster id"):
        trust_domain(bad)


@settings(max_examples=50, deadline=None)
@given(st.uuids())
def test_trust_domain_of_any_uuid_is_its_lower_case_form(cluster: uuid.UUID) -> None:
    assert trust_domain(str(cluster).upper()) == f"{cluster}.consul"


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


def fake_root(root_id: str, active: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "ID": root_id,
        "Active": active,
        "RootCert": f"cert-{root_id}",
        "SigningKey": f"key-{root_id}",
        **extra,
    }


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


# --------------------------------------------------------------------------------------------------
# HTTP views


def test_public_view_has_exactly_consuls_fields_and_no_secrets(root: dict[str, Any]) -> None:
    stored = rotate(
        [{**root, "CreateIndex": 8, "ModifyIndex": 9}], generate_root(CLUSTER_ID, NOW, CAConfig(), 8), NOW
    )
    view = public_view(stored[0])
    assert list(view) == [
        "ID",
        "Name",
        "SerialNumber",
        "SigningKeyID",
        "ExternalTrustDomain",
        "NotBefore",
        "NotAfter",
        "RootCert",
        "IntermediateCerts",
        "Active",
        "PrivateKeyType",
        "PrivateKeyBits",
        "CreateIndex",
        "ModifyIndex",
    ]
    text = json.dumps(view)
    for marker in PRIVATE_MARKERS:
        assert marker not in text


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=8), max_size=6))
def test_public_view_never_passes_unknown_fields(extra: dict[str, str]) -> None:
    view = public_view({**fake_root("a"), **extra})
    allowed = {
        "ID",
        "Name",
        "SerialNumber",
        "SigningKeyID",
        "ExternalTrustDomain",
        "NotBefore",
        "NotAfter",
        "RootCert",
        "IntermediateCerts",
        "Active",
        "PrivateKeyType",
        "PrivateKeyBits",
        "CreateIndex",
        "ModifyIndex",
    }
    assert set(view) <= allowed
    assert "SigningKey" not in view


def test_roots_response_shape(root: dict[str, Any], intermediate: tuple[str, str, str]) -> None:
    newer = generate_root(CLUSTER_ID, NOW, CAConfig(), serial=8)
    stored = [{**r, "CreateIndex": 3, "ModifyIndex": 4} for r in rotate([root], newer, NOW)]
    body = roots_response(stored, trust_domain(CLUSTER_ID))
    assert body["ActiveRootID"] == newer["ID"]
    assert body["TrustDomain"] == f"{CLUSTER_ID}.consul"
    assert [r["ID"] for r in body["Roots"]] == [root["ID"], newer["ID"]]
    assert body["Roots"][0]["Active"] is False and body["Roots"][0]["CreateIndex"] == 3
    text = json.dumps(body)
    for marker in PRIVATE_MARKERS:
        assert marker not in text
    bare = roots_response(stored, trust_domain(CLUSTER_ID), index_fields=False)
    assert all("CreateIndex" not in r and "ModifyIndex" not in r for r in bare["Roots"])
    assert "CreateIndex" in stored[0]  # the stored records are not modified


def test_roots_response_when_empty_or_uninitialised() -> None:
    assert roots_response([], "x.consul") == {"ActiveRootID": "", "TrustDomain": "x.consul", "Roots": []}
    with pytest.raises(CANotInitializedError, match="CA has not finished initializing"):
        roots_response([], "")


def test_pem_chain_lists_each_root_then_its_intermediates(
    root: dict[str, Any], intermediate: tuple[str, str, str]
) -> None:
    _, key_pem, pem = intermediate
    newer = generate_root(CLUSTER_ID, NOW, CAConfig(), serial=8)
    chain = pem_chain([newer, secondary_root(root, pem, key_pem)])
    certs = x509.load_pem_x509_certificates(chain.encode())
    assert [c.fingerprint(hashes.SHA256()) for c in certs] == [
        cert_of(p).fingerprint(hashes.SHA256()) for p in (newer["RootCert"], root["RootCert"], pem)
    ]
    assert "PRIVATE KEY" not in chain
    assert pem_chain([{"RootCert": "A", "IntermediateCerts": ["B"]}]) == "A\nB\n"
    assert pem_chain([]) == ""


# --------------------------------------------------------------------------------------------------
# Configuration


def test_config_view_matches_consuls_shape() -> None:
    assert config_view(CAConfig(cluster_id=CLUSTER_ID)) == {
        "Provider": "consul",
        "Config": {
            "LeafCertTTL": "72h",
            "IntermediateCertTTL": "8760h",
            "RootCertTTL": "87600h",
            "PrivateKeyType": "ec",
            "PrivateKeyBits": 256,
            "RotationPeriod": "2160h",
        },
        "State": None,
        "ForceWithoutCrossSigning": False,
    }


def test_default_config_is_valid_and_exposes_seconds() -> None:
    config = CAConfig()
    validate_config(config)
    assert config.leaf_cert_ttl_seconds == 72 * HOUR
    assert config.intermediate_cert_ttl_seconds == 8760 * HOUR
    assert config.root_cert_ttl_seconds == 87600 * HOUR


def test_config_round_trips_through_view_and_request() -> None:
    config = CAConfig(
        cluster_id=CLUSTER_ID, leaf_cert_ttl="24h", private_key_type="rsa", private_key_bits=4096
    )
    assert config_from_request(config_view(config), CAConfig(cluster_id=CLUSTER_ID)) == config


def test_config_request_keys_are_case_insensitive_and_may_be_snake_case() -> None:
    body = {
        "provider": "consul",
        "config": {
            "leaf_cert_ttl": "12h",
            "INTERMEDIATECERTTTL": "48h",
            "PrivateKeyBits": "384",
            "CSRMaxPerSecond": 5,
        },
        "ForceWithoutCrossSigning": True,
        "CreateIndex": 5,
    }
    config = config_from_request(body, CAConfig(cluster_id=CLUSTER_ID))
    assert (config.leaf_cert_ttl, config.intermediate_cert_ttl, config.private_key_bits) == (
        "12h",
        "48h",
        384,
    )
    assert config.cluster_id == CLUSTER_ID


def test_config_request_omitted_keys_take_defaults_not_current_values() -> None:
    current = CAConfig(cluster_id=CLUSTER_ID, leaf_cert_ttl="24h", rotation_period="1h")
    config = config_from_request({"Provider": "consul", "Config": {"RootCertTTL": "100000h"}}, current)
    assert config == CAConfig(cluster_id=CLUSTER_ID, root_cert_ttl="100000h")
    rsa_config = config_from_request({"Provider": "consul", "Config": {"PrivateKeyType": "rsa"}}, current)
    assert (rsa_config.private_key_type, rsa_config.private_key_bits) == ("rsa", 2048)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"Provider": "vault", "Config": {}}, "Provider", "vault"),
        ({"Config": {}}, "Provider", "None"),
        ({"Provider": "consul", "Config": []}, "Config", "object"),
        ({"Provider": "consul", "State": {"k": "v"}}, "State", "read-only"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": "3 days"}}, "LeafCertTTL", "invalid duration"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": 3600}}, "LeafCertTTL", "string"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": "59m"}}, "LeafCertTTL", "1h0m0s"),
        ({"Provider": "consul", "Config": {"LeafCertTTL": "8761h"}}, "LeafCertTTL", "8760h0m0s"),
        (
            {"Provider": "consul", "Config": {"LeafCertTTL": "1h", "IntermediateCertTTL": "2h"}},
            "IntermediateCertTTL",
            "3h0m0s",
        ),
        (
            {"Provider": "consul", "Config": {"LeafCertTTL": "72h", "IntermediateCertTTL": "200h"}},
            "IntermediateCertTTL",
            "216h0m0s",
        ),
        ({"Provider": "consul", "Config": {"RootCertTTL": "8000h"}}, "RootCertTTL", "8760h"),
        ({"Provider": "consul", "Config": {"PrivateKeyType": "dsa"}}, "PrivateKeyType", "'ec', 'rsa'"),
        ({"Provider": "consul", "Config": {"PrivateKeyBits": 512}}, "PrivateKeyBits", "224, 256, 384, 521"),
        (
            {"Provider": "consul", "Config": {"PrivateKeyType": "rsa", "PrivateKeyBits": 1024}},
            "PrivateKeyBits",
            "2048, 4096",
        ),
        ({"Provider": "consul", "Config": {"PrivateKeyBits": True}}, "PrivateKeyBits", "bits"),
        ({"Provider": "consul", "Config": {"RotationPeriod": "-1h"}}, "RotationPeriod", "negative"),
        ({"Provider": "consul", "Config": {"PrivateKey": "-----BEGIN"}}, "Config.PrivateKey", "LeafCertTTL"),
    ],
)
def test_config_request_errors_name_the_field(body: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(CAConfigError) as err:
        config_from_request(body, CAConfig(cluster_id=CLUSTER_ID))
    assert err.value.field == field
    assert fragment in err.value.message
    assert str(err.value) == f"{field}: {err.value.message}"
    assert isinstance(err.value, ValueError)


def test_config_request_body_must_be_an_object() -> None:
    with pytest.raises(CAConfigError) as err:
        config_from_request(["Provider"], CAConfig())  # type: ignore[arg-type]
    assert err.value.field == "" and str(err.value) == err.value.message


def test_only_a_key_change_requires_a_new_root() -> None:
    base = CAConfig(cluster_id=CLUSTER_ID)
    assert not requires_new_root(
        base, CAConfig(cluster_id=CLUSTER_ID, leaf_cert_ttl="24h", root_cert_ttl="90000h")
    )
    assert requires_new_root(base, CAConfig(cluster_id=CLUSTER_ID, private_key_bits=384))
    assert requires_new_root(
        base, CAConfig(cluster_id=CLUSTER_ID, private_key_type="rsa", private_key_bits=2048)
    )
