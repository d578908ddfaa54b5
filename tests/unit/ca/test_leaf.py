"""Leaf certificates (reference/mesh-dataplane.md §2): the CSR a server makes, the leader's checks
with Consul's wording, the signature, and the chain a secondary returns."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshfed.rpc.spiffe import ServiceID, parse_service_sni, parse_service_uri, service_sni
from meshfed.server.ca.identity import trust_domain
from meshfed.server.ca.leaf import check_leaf_csr, new_leaf_request, sign_leaf
from meshfed.server.ca.signing import secondary_root

from .samples import CLUSTER_ID, NOW, OTHER_CLUSTER_ID, cert_of, uris

TD = trust_domain(CLUSTER_ID)


def request_for(service: str = "web", dc: str = "dc1", domain: str = TD) -> str:
    return new_leaf_request(ServiceID(domain, "default", dc, service)).csr_pem


def test_a_leaf_from_the_primary_is_the_services_identity_signed_by_the_root(root: dict[str, Any]) -> None:
    csr, identity = check_leaf_csr(request_for(), TD, "dc1")
    leaf = sign_leaf(root, csr, identity, NOW, 72 * 3600)
    (cert,) = x509.load_pem_x509_certificates(leaf.cert_pem.encode())
    cert.verify_directly_issued_by(cert_of(root["RootCert"]))
    assert uris(cert) == [f"spiffe://{TD}/ns/default/dc/dc1/svc/web"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.valid_before - leaf.valid_after == datetime.timedelta(hours=72, minutes=1)
    assert int(leaf.serial.replace(":", ""), 16) == cert.serial_number


def test_a_secondary_appends_its_intermediate(root: dict[str, Any], intermediate: tuple[str, str, str]) -> None:
    _, key_pem, intermediate_pem = intermediate
    signer = secondary_root(root, intermediate_pem, key_pem)
    csr, identity = check_leaf_csr(request_for(dc="dc2"), TD, "dc2")
    leaf, chained = x509.load_pem_x509_certificates(sign_leaf(signer, csr, identity, NOW, 3600).cert_pem.encode())
    leaf.verify_directly_issued_by(chained)
    chained.verify_directly_issued_by(cert_of(root["RootCert"]))


def test_a_leaf_never_outlives_its_signer(root: dict[str, Any]) -> None:
    csr, identity = check_leaf_csr(request_for(), TD, "dc1")
    leaf = sign_leaf(root, csr, identity, NOW, 100 * 365 * 86400)
    assert leaf.valid_before == cert_of(root["RootCert"]).not_valid_after_utc


@pytest.mark.parametrize("csr,message", [
    (lambda: request_for(domain=trust_domain(OTHER_CLUSTER_ID)), "SPIFFE ID in CSR from a different trust domain"),
    (lambda: request_for(dc="dc2"), "SPIFFE ID in CSR from a different datacenter: dc2"),
    (lambda: "not a csr", "CSR: not a valid PEM certificate request"),
    (lambda: "", "CSR: missing PEM certificate request"),
])
def test_the_leader_refuses_csrs_with_consuls_reasons(csr: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_leaf_csr(csr(), TD, "dc1")


def test_spiffe_and_sni_names() -> None:
    identity = parse_service_uri(f"spiffe://{TD}/ns/default/dc/dc1/svc/web")
    assert (identity.service, identity.datacenter, identity.uri) == ("web", "dc1", f"spiffe://{TD}/ns/default/dc/dc1/svc/web")
    for bad in ("http://x", f"spiffe://{TD}", f"spiffe://{TD}/agent/client/dc/dc1/id/n1"):
        with pytest.raises(ValueError):
            parse_service_uri(bad)
    sni = service_sni("Socat", "dc1", TD)
    assert sni == f"socat.default.dc1.internal.{TD}"
    parsed = parse_service_sni(sni, TD)
    assert parsed is not None and (parsed.service, parsed.datacenter) == ("socat", "dc1")
    assert parse_service_sni("server.dc1.consul", TD) is None
    assert parse_service_sni(f"a.b.default.dc1.internal.{TD}", TD) is None  # subsets are not routed yet
    assert parse_service_sni(f"socat.default.dc1.internal.{trust_domain(OTHER_CLUSTER_ID)}", TD) is None
