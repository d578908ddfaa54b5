"""Consul's roots JSON (reference connect-data.md §C.1): public views, the IndexedCARoots body, the
PEM chain."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.server.ca.config import CAConfig
from meshfed.server.ca.identity import trust_domain
from meshfed.server.ca.roots import CANotInitializedError, pem_chain, public_view, roots_response
from meshfed.server.ca.signing import generate_root, rotate, secondary_root

from .samples import CLUSTER_ID, NOW, PRIVATE_MARKERS, cert_of, fake_root


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
