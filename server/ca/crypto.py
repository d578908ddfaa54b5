"""The built-in Connect CA ("consul" provider): root, intermediates, rotation, and their JSON views.

Everything here is a pure function of its arguments, apart from fresh key material, serial numbers
of intermediates and the random part of certificate names: the leader routine that calls it owns the
clock, the Raft writes and the retries (reference connect-data.md §C.2, §C.3). That keeps the crypto
testable without a cluster and keeps decisions (rotate, prune, re-key) out of the loops.

A root record is a dict in Consul's `CARoot` JSON shape plus private fields that live in the
replicated store but must never leave a server: `SigningKey`/`SigningCert` (what signs in this DC:
the root in the primary, the DC's intermediate in a secondary) and `RotatedOutAt`. `public_view` is an
allow-list, so a private field added later cannot leak by default.

A root's life: generated (Active) -> rotated out (inactive, `RotatedOutAt` set, still trusted so
leaves it signed keep validating) -> pruned once 2 x LeafCertTTL has passed since rotation, when no
leaf it signed can still be valid.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from meshfed.fsm.consul_formats.durations import NANOSECONDS_PER_SECOND, format_duration_ns, parse_duration_ns
from meshfed.fsm.consul_formats.timestamps import format_rfc3339, parse_rfc3339

PROVIDER_CONSUL = "consul"
ROOT_NAME = "Consul CA Primary Cert"
TRUST_DOMAIN_SUFFIX = "consul"
# Intermediates start a minute in the past so a secondary whose clock lags the primary's can use
# one at once (Consul does the same).
INTERMEDIATE_BACKDATE = datetime.timedelta(minutes=1)
# Limits Consul enforces on a CA configuration; the reasons are in `validate_config`.
MIN_LEAF_CERT_TTL_NS = 3600 * NANOSECONDS_PER_SECOND
MAX_LEAF_CERT_TTL_NS = 8760 * 3600 * NANOSECONDS_PER_SECOND
MIN_INTERMEDIATE_CERT_TTL_NS = 3 * 3600 * NANOSECONDS_PER_SECOND
INTERMEDIATE_TTL_LEAF_MULTIPLE = 3
# A rotated-out root stays trusted this many leaf lifetimes, so every leaf it signed expires first.
ROTATED_ROOT_RETENTION_LEAF_TTLS = 2
EC_CURVES: dict[int, type[ec.EllipticCurve]] = {
    224: ec.SECP224R1,
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
RSA_KEY_BITS = (2048, 4096)
DEFAULT_KEY_BITS = {"ec": 256, "rsa": 2048}

# What /v1/connect/ca/roots serves, in Consul's order. Everything else in a record is private.
PUBLIC_ROOT_FIELDS = (
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
)
INDEX_FIELDS = ("CreateIndex", "ModifyIndex")
PRIVATE_ROOT_FIELDS = ("SigningKey", "SigningCert", "RotatedOutAt")

_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class CAConfigError(ValueError):
    """A CA configuration value was refused; `field` is Consul's key so the 400 names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class CANotInitializedError(RuntimeError):
    """The roots were asked for before the CA has a cluster id (Consul answers this with a 500)."""

    def __init__(self) -> None:
        super().__init__("CA has not finished initializing")


@dataclass(frozen=True)
class CAConfig:
    """The CA configuration as stored; durations keep the user's Go spelling so GET echoes it."""

    provider: str = PROVIDER_CONSUL
    cluster_id: str = ""
    leaf_cert_ttl: str = "72h"
    intermediate_cert_ttl: str = "8760h"
    root_cert_ttl: str = "87600h"
    private_key_type: str = "ec"
    private_key_bits: int = 256
    rotation_period: str = "2160h"

    @property
    def leaf_cert_ttl_seconds(self) -> float:
        return _duration_ns("LeafCertTTL", self.leaf_cert_ttl) / NANOSECONDS_PER_SECOND

    @property
    def intermediate_cert_ttl_seconds(self) -> float:
        return _duration_ns("IntermediateCertTTL", self.intermediate_cert_ttl) / NANOSECONDS_PER_SECOND

    @property
    def root_cert_ttl_seconds(self) -> float:
        return _duration_ns("RootCertTTL", self.root_cert_ttl) / NANOSECONDS_PER_SECOND


# --------------------------------------------------------------------------------------------------
# Identity


def new_cluster_id() -> str:
    """A fresh cluster id; made once by the primary's first leader and then stored forever."""
    return str(uuid.uuid4())


def trust_domain(cluster_id: str) -> str:
    """The SPIFFE trust domain of a cluster: a pure function of the id, so it never drifts."""
    if not isinstance(cluster_id, str) or not _CLUSTER_ID_RE.match(cluster_id):
        raise ValueError(f"invalid cluster id {cluster_id!r}: expected a UUID (letters, digits, '-')")
    return f"{cluster_id}.{TRUST_DOMAIN_SUFFIX}".lower()


def _signing_uri(cluster_id: str) -> str:
    return f"spiffe://{trust_domain(cluster_id)}"


def _ca_common_name(role: str, cluster_id: str) -> str:
    # The random part only tells certificates apart when an operator reads them.
    return (
        f"{role}-{secrets.token_hex(4)}.{PROVIDER_CONSUL}.ca.{cluster_id[:8].lower()}.{TRUST_DOMAIN_SUFFIX}"
    )


# --------------------------------------------------------------------------------------------------
# Small crypto helpers


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in data)


def _key_id(public_key: Any) -> bytes:
    """SHA-256 of the whole PKIX public key, as Consul's built-in provider computes key ids
    (not RFC 5280's SHA-1 of the bit string), so SigningKeyIDs compare equal with Consul's tools."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def _new_private_key(key_type: str, key_bits: int) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    _check_key(key_type, key_bits)
    if key_type == "ec":
        return ec.generate_private_key(EC_CURVES[key_bits]())
    return rsa.generate_private_key(public_exponent=65537, key_size=key_bits)


def _private_key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    # "EC PRIVATE KEY" / "RSA PRIVATE KEY" like Consul, so keys are interchangeable with its tooling.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _load_cert(what: str, pem: object) -> x509.Certificate:
    if not isinstance(pem, str) or not pem.strip():
        raise ValueError(f"{what}: missing PEM certificate")
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ValueError(f"{what}: not a valid PEM certificate") from None


def _load_key(what: str, pem: object) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if not isinstance(pem, str) or not pem.strip():
        raise ValueError(f"{what}: missing PEM private key")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: not a valid unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{what}: only EC and RSA keys are supported")
    return key


def _ca_key_usage() -> x509.KeyUsage:
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


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """Aware UTC, whole seconds: X.509 times carry no fraction, and records must equal the cert."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0)


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
    signing_uri = _signing_uri(cluster_id)
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < 2**64:
        raise ValueError(f"invalid serial {serial!r}: expected an integer from 1 to 2^64-1")
    validate_config(config)
    key = _new_private_key(config.private_key_type, config.private_key_bits)
    not_before = _utc(now)
    not_after = not_before + datetime.timedelta(
        microseconds=_duration_ns("RootCertTTL", config.root_cert_ttl) // 1000
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _ca_common_name("pri", cluster_id))])
    key_id = x509.SubjectKeyIdentifier(_key_id(key.public_key()))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(signing_uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pem = _cert_pem(cert)
    return {
        "ID": _colon_hex(
            hashlib.sha1(cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False).digest()
        ),
        "Name": ROOT_NAME,
        "SerialNumber": serial,
        "SigningKeyID": _colon_hex(key_id.digest),
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
        "SigningKey": _private_key_pem(key),
    }


def make_intermediate_csr(
    cluster_id: str, datacenter: str, config: CAConfig | None = None
) -> tuple[str, str]:
    """A secondary's request for an intermediate (§C.3): returns `(csr_pem, key_pem)`.

    The key never leaves the secondary; only the CSR goes to the primary. The datacenter is written
    as the subject's OU so an operator reading the served chain can tell whose intermediate it is.
    """
    config = config or CAConfig()
    signing_uri = _signing_uri(cluster_id)
    if not isinstance(datacenter, str) or not datacenter:
        raise ValueError(f"invalid datacenter {datacenter!r}: must not be empty")
    key = _new_private_key(config.private_key_type, config.private_key_bits)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, _ca_common_name("sec", cluster_id)),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, datacenter),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(signing_uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), _private_key_pem(key)


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
    if not isinstance(csr_pem, str):
        raise ValueError("CSR: expected a PEM string")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise ValueError("CSR: not a valid PEM certificate request") from None
    if not csr.is_signature_valid:
        raise ValueError("CSR: signature does not verify")
    csr_uri = _single_signing_uri("CSR", csr.extensions)
    root_domain = _single_signing_uri("RootCert", root_cert.extensions)
    if csr_uri.lower() != root_domain.lower():
        raise ValueError(
            f"CSR: trust domain {csr_uri.removeprefix('spiffe://')!r} is not this CA's trust domain "
            f"{root_domain.removeprefix('spiffe://')!r}"
        )

    not_before = _utc(now) - INTERMEDIATE_BACKDATE
    not_after = min(_utc(now) + datetime.timedelta(seconds=ttl_seconds), root_cert.not_valid_after_utc)
    if not_after <= _utc(now):
        raise ValueError(f"RootCert: expired at {format_rfc3339(root_cert.not_valid_after_utc)}; it cannot sign")
    root_key_id = _subject_key_id(root_cert)
    public_key = csr.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(secrets.randbits(127) | 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(_key_id(public_key)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(root_key_id, None, None), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(csr_uri)]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    cert.verify_directly_issued_by(root_cert)
    return _cert_pem(cert)


def _single_signing_uri(what: str, extensions: x509.Extensions) -> str:
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


def _subject_key_id(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return _key_id(cert.public_key())


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
    intermediate_text = _cert_pem(intermediate)
    record["IntermediateCerts"] = [*list(primary_root.get("IntermediateCerts") or ()), intermediate_text]
    record["SigningKeyID"] = _colon_hex(_subject_key_id(intermediate))
    record["Active"] = True
    # PRIVATE: what signs leaves in this DC; never served.
    record["SigningCert"] = intermediate_text
    record["SigningKey"] = _private_key_pem(key)
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
                if moment - _utc(parse_rfc3339(rotated_out_at)) > horizon:
                    continue
            except ValueError:
                pass
        kept.append(_copy_root(root))
    return kept


# --------------------------------------------------------------------------------------------------
# HTTP views


def public_view(root: Mapping[str, Any]) -> dict[str, Any]:
    """One root as /v1/connect/ca/roots serves it: an allow-list, so private fields never leak."""
    view = {field: root.get(field) for field in PUBLIC_ROOT_FIELDS}
    if view["IntermediateCerts"] is not None:
        view["IntermediateCerts"] = list(view["IntermediateCerts"])
    for field in INDEX_FIELDS:
        if field in root:
            view[field] = root[field]
    return view


def roots_response(
    roots: Sequence[Mapping[str, Any]], trust_domain: str, index_fields: bool = True
) -> dict[str, Any]:
    """The `IndexedCARoots` body; `index_fields=False` drops Create/ModifyIndex (e.g. for RPC diffs)."""
    if not trust_domain:
        raise CANotInitializedError()
    views = [public_view(root) for root in roots]
    if not index_fields:
        for view in views:
            for field in INDEX_FIELDS:
                view.pop(field, None)
    active_id = next((view["ID"] for view in views if view["Active"]), "")
    return {"ActiveRootID": active_id, "TrustDomain": trust_domain, "Roots": views}


def pem_chain(roots: Sequence[Mapping[str, Any]]) -> str:
    """The `?pem=true` body: each root followed by its intermediates, each PEM newline-terminated."""
    parts: list[str] = []
    for root in roots:
        for pem in [root.get("RootCert") or "", *(root.get("IntermediateCerts") or ())]:
            if pem:
                parts.append(pem if pem.endswith("\n") else pem + "\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# Configuration

_CONFIG_KEYS = {  # normalised key (lower case, no '_') -> (Consul's key, CAConfig attribute)
    "leafcertttl": ("LeafCertTTL", "leaf_cert_ttl"),
    "intermediatecertttl": ("IntermediateCertTTL", "intermediate_cert_ttl"),
    "rootcertttl": ("RootCertTTL", "root_cert_ttl"),
    "privatekeytype": ("PrivateKeyType", "private_key_type"),
    "privatekeybits": ("PrivateKeyBits", "private_key_bits"),
    "rotationperiod": ("RotationPeriod", "rotation_period"),
}
# Consul rate limits for leaf signing, which meshfed does not do; accepted so Consul configs load.
_IGNORED_CONFIG_KEYS = {"csrmaxpersecond", "csrmaxconcurrent"}


def config_view(config: CAConfig) -> dict[str, Any]:
    """GET /v1/connect/ca/configuration (without the indexes, which the store adds). Like Consul, the
    cluster id is not part of it: it is served only inside TrustDomain."""
    return {
        "Provider": config.provider,
        "Config": {
            "LeafCertTTL": config.leaf_cert_ttl,
            "IntermediateCertTTL": config.intermediate_cert_ttl,
            "RootCertTTL": config.root_cert_ttl,
            "PrivateKeyType": config.private_key_type,
            "PrivateKeyBits": config.private_key_bits,
            "RotationPeriod": config.rotation_period,
        },
        "State": None,
        "ForceWithoutCrossSigning": False,
    }


def config_from_request(body: Mapping[str, Any], current: CAConfig) -> CAConfig:
    """PUT /v1/connect/ca/configuration: keys case-insensitive (Config keys snake_case too); keys
    left out take their defaults, as in Consul, not the current values. The cluster id is kept.

    Raises:
        CAConfigError: naming Consul's key, for any refused value.
    """
    if not isinstance(body, Mapping):
        raise CAConfigError("", "request body must be a JSON object")
    top = {str(key).lower(): value for key, value in body.items()}
    provider = top.get("provider")
    if provider != PROVIDER_CONSUL:
        raise CAConfigError("Provider", f"{provider!r} is not supported; accepted: {PROVIDER_CONSUL!r}")
    if top.get("state"):
        raise CAConfigError("State", "provider state is read-only; omit it")
    raw = top.get("config")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise CAConfigError("Config", "must be an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        normalised = str(key).replace("_", "").lower()
        if normalised in _IGNORED_CONFIG_KEYS:
            continue
        if normalised not in _CONFIG_KEYS:
            accepted = ", ".join(consul_key for consul_key, _ in _CONFIG_KEYS.values())
            raise CAConfigError(
                f"Config.{key}", f"not supported by meshfed's built-in CA; accepted: {accepted}"
            )
        consul_key, attribute = _CONFIG_KEYS[normalised]
        values[attribute] = _config_value(consul_key, value)
    if "private_key_type" in values and "private_key_bits" not in values:
        values["private_key_bits"] = DEFAULT_KEY_BITS.get(values["private_key_type"], 0)
    config = CAConfig(cluster_id=current.cluster_id, **values)
    validate_config(config)
    return config


def _config_value(consul_key: str, value: Any) -> Any:
    if consul_key == "PrivateKeyBits":
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CAConfigError(consul_key, f"{value!r} is not a whole number of bits")
        return value
    if not isinstance(value, str):
        raise CAConfigError(consul_key, f'{value!r} must be a string (a duration like "72h" or a key type)')
    if consul_key != "PrivateKeyType":
        _duration_ns(consul_key, value)
    return value


def _duration_ns(field: str, text: str) -> int:
    try:
        return parse_duration_ns(text)
    except ValueError as err:
        raise CAConfigError(field, str(err)) from None


def _check_key(key_type: str, key_bits: int) -> None:
    if key_type == "ec":
        if key_bits not in EC_CURVES:
            raise CAConfigError(
                "PrivateKeyBits", f"{key_bits!r} is not valid for ec keys; accepted: 224, 256, 384, 521"
            )
    elif key_type == "rsa":
        if key_bits not in RSA_KEY_BITS:
            raise CAConfigError(
                "PrivateKeyBits", f"{key_bits!r} is not valid for rsa keys; accepted: 2048, 4096"
            )
    else:
        raise CAConfigError("PrivateKeyType", f"{key_type!r} is not supported; accepted: 'ec', 'rsa'")


def validate_config(config: CAConfig) -> None:
    """Consul's limits on a CA configuration; the first violation is raised as `CAConfigError`."""
    if config.provider != PROVIDER_CONSUL:
        raise CAConfigError(
            "Provider", f"{config.provider!r} is not supported; accepted: {PROVIDER_CONSUL!r}"
        )
    leaf = _duration_ns("LeafCertTTL", config.leaf_cert_ttl)
    intermediate = _duration_ns("IntermediateCertTTL", config.intermediate_cert_ttl)
    root = _duration_ns("RootCertTTL", config.root_cert_ttl)
    _duration_ns("RotationPeriod", config.rotation_period)
    if leaf < MIN_LEAF_CERT_TTL_NS or leaf > MAX_LEAF_CERT_TTL_NS:
        raise CAConfigError(
            "LeafCertTTL",
            f"{config.leaf_cert_ttl!r} is out of range; accepted: {format_duration_ns(MIN_LEAF_CERT_TTL_NS)} "
            f"to {format_duration_ns(MAX_LEAF_CERT_TTL_NS)}",
        )
    # Secondaries check their intermediate hourly and renew at half-life, and proxies receive a new
    # intermediate only with a new leaf: both need the intermediate to outlive several of those.
    if intermediate < MIN_INTERMEDIATE_CERT_TTL_NS:
        raise CAConfigError(
            "IntermediateCertTTL",
            f"{config.intermediate_cert_ttl!r} is too short; must be at least "
            f"{format_duration_ns(MIN_INTERMEDIATE_CERT_TTL_NS)}",
        )
    if intermediate < INTERMEDIATE_TTL_LEAF_MULTIPLE * leaf:
        raise CAConfigError(
            "IntermediateCertTTL",
            f"{config.intermediate_cert_ttl!r} is too short; must be at least {INTERMEDIATE_TTL_LEAF_MULTIPLE} x "
            f"LeafCertTTL ({format_duration_ns(INTERMEDIATE_TTL_LEAF_MULTIPLE * leaf)})",
        )
    if root < intermediate:
        raise CAConfigError(
            "RootCertTTL",
            f"{config.root_cert_ttl!r} is shorter than IntermediateCertTTL ({config.intermediate_cert_ttl}); "
            "a root must outlive the intermediates it signs",
        )
    _check_key(config.private_key_type, config.private_key_bits)


def requires_new_root(old: CAConfig, new: CAConfig) -> bool:
    """Whether a configuration change needs a new root (and so a rotation). Like Consul's built-in
    provider, only a different key does; TTL changes apply to certificates issued from then on."""
    return (old.provider, old.private_key_type, old.private_key_bits) != (
        new.provider,
        new.private_key_type,
        new.private_key_bits,
    )
