"""Constants and certificate readers shared by the Connect CA unit tests."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

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


def fake_root(root_id: str, active: bool = True, **extra: Any) -> dict[str, Any]:
    """A root record without real crypto, for the set operations (rotate, prune, views)."""
    return {
        "ID": root_id,
        "Active": active,
        "RootCert": f"cert-{root_id}",
        "SigningKey": f"key-{root_id}",
        **extra,
    }
