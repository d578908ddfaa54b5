"""TLS material for server RPC: a private CA, server certificates, and loaders for gRPC and ssl.

Cross-datacenter RPC travels through mesh gateways that route on the TLS SNI alone, so the name a
client asks for (`server_name`) is also the name it verifies, and every server certificate must carry
both the "any server of this DC" name and its own per-node name (DESIGN.md §7, federation.md §7.6).

The generators follow `consul tls ca create` / `consul tls cert create` (file names, key type, SANs,
extended key usages) so operators can reuse Consul's habits and tooling. Files are never
overwritten: a CA key written over by mistake would orphan every certificate it signed.

The loaders read and parse every file themselves before handing bytes to gRPC or `ssl`, because
both report a bad file without saying which one; `TLSConfigError` always names the path.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshfed.rpc.x509 import (
    certificate_pem,
    leaf_key_usage,
    new_ec_key,
    private_key_pem,
    random_serial,
    self_signed_ca,
)

DEFAULT_DOMAIN = "consul"
CA_VALIDITY_DAYS = 1825
SERVER_CERT_VALIDITY_DAYS = 365
# Certificates start a little in the past so a peer whose clock lags ours still accepts a
# certificate made seconds ago (federated DCs rarely share a time source).
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(minutes=1)
# `consul tls cert create` gives up after this many numbered files; so do we.
MAX_CERT_FILE_NUMBER = 10000

CERT_FILE_MODE = 0o644
KEY_FILE_MODE = 0o600

# One DNS label as Consul accepts it in datacenter and node names (underscore included).
_LABEL_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


class TLSConfigError(ValueError):
    """A TLS file could not be used; carries the path so start-up errors point at the culprit."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class CertFiles:
    cert_file: str
    key_file: str


# --------------------------------------------------------------------------------------------------
# Names


def _check_labels(field: str, value: str) -> None:
    """Reject names that cannot appear in a DNS SAN, naming the field and what is accepted."""
    if not value or any(not _LABEL_RE.match(label) for label in value.split(".")):
        raise ValueError(
            f"invalid {field} {value!r}: expected dot-separated labels of letters, digits, '-' and '_'"
            " (1-63 characters each, not starting or ending with '-')"
        )


def server_name(datacenter: str, node: str = "", domain: str = DEFAULT_DOMAIN) -> str:
    """The SNI and verified name for one server (`node` given) or any server of `datacenter`.

    Lower-cased because the gateway lower-cases the SNI it reads before looking up its routing
    table; DNS names compare case-insensitively, so nothing that verifies the name is affected.

    Raises:
        ValueError: a part is empty or holds characters a DNS name cannot.
    """
    domain = domain[:-1] if domain.endswith(".") else domain
    _check_labels("datacenter", datacenter)
    if "." in datacenter:
        raise ValueError(f"invalid datacenter {datacenter!r}: a datacenter name cannot contain '.'")
    _check_labels("domain", domain)
    base = f"server.{datacenter}.{domain}".lower()
    if node in ("", "*"):
        return base
    _check_labels("node", node)
    if "." in node:
        raise ValueError(f"invalid node {node!r}: use the short node name (no '.')")
    return f"{node.lower()}.{base}"


# --------------------------------------------------------------------------------------------------
# Generation


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return private_key_pem(key).encode()


def _cert_bytes(cert: x509.Certificate) -> bytes:
    return certificate_pem(cert).encode()


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days < 1:
        raise ValueError(f"invalid days {days}: must be at least 1")
    now = datetime.datetime.now(datetime.UTC)
    return now - CLOCK_SKEW_ALLOWANCE, now + datetime.timedelta(days=days)


def _write_new_file(path: str, data: bytes, mode: int) -> None:
    """Create `path` exclusively, so a concurrent run can never clobber what another just wrote."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists.") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_pair(cert_path: str, key_path: str, cert_pem: bytes, key_pem: bytes) -> None:
    """Write the key first (the secret half), and remove it again if the certificate cannot be written."""
    _write_new_file(key_path, key_pem, KEY_FILE_MODE)
    try:
        _write_new_file(cert_path, cert_pem, CERT_FILE_MODE)
    except BaseException:
        os.unlink(key_path)
        raise


def create_ca(directory: str, domain: str = DEFAULT_DOMAIN, days: int = CA_VALIDITY_DAYS) -> CertFiles:
    """Create a self-signed CA for server certificates in `directory`.

    Returns:
        The paths `<domain>-agent-ca.pem` and `<domain>-agent-ca-key.pem`.

    Raises:
        FileExistsError: either file already exists (nothing is written then).
        ValueError: `days` < 1.
    """
    domain = domain[:-1] if domain.endswith(".") else domain
    _check_labels("domain", domain)
    files = CertFiles(
        cert_file=os.path.join(directory, f"{domain}-agent-ca.pem"),
        key_file=os.path.join(directory, f"{domain}-agent-ca-key.pem"),
    )
    for path in (files.cert_file, files.key_file):
        if os.path.exists(path):
            raise FileExistsError(f"{path} already exists.")

    key = new_ec_key()
    not_before, not_after = _validity(days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"meshfed CA {secrets.token_hex(8)}")])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = self_signed_ca(key, subject, random_serial(), not_before, not_after, key_id)
    _write_pair(files.cert_file, files.key_file, _cert_bytes(cert), _key_bytes(key))
    return files


def _load_ca(ca: CertFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = _parse_certificates(ca.cert_file, _read(ca.cert_file))[0]
    ca_key = _parse_private_key(ca.key_file, _read(ca.key_file))
    _check_key_matches(ca.key_file, ca_key, ca_cert)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TLSConfigError(ca.key_file, "CA key must be an EC key")
    return ca_cert, ca_key


def _first_free_pair(directory: str, prefix: str) -> CertFiles:
    for number in range(MAX_CERT_FILE_NUMBER + 1):
        cert_path = os.path.join(directory, f"{prefix}-{number}.pem")
        key_path = os.path.join(directory, f"{prefix}-{number}-key.pem")
        if not os.path.exists(cert_path) and not os.path.exists(key_path):
            return CertFiles(cert_file=cert_path, key_file=key_path)
    raise FileExistsError(f"{directory}: {prefix}-0..{MAX_CERT_FILE_NUMBER} are all taken")


def create_server_cert(
    directory: str,
    ca: CertFiles,
    datacenter: str,
    node: str = "",
    domain: str = DEFAULT_DOMAIN,
    days: int = SERVER_CERT_VALIDITY_DAYS,
    extra_dns: Sequence[str] = (),
    extra_ips: Sequence[str] = (),
) -> CertFiles:
    """Issue a server certificate signed by `ca`, usable for both ends of mutual TLS.

    Returns:
        `<dc>-server-<domain>-<n>.pem` / `-<n>-key.pem` with the first unused n.

    Raises:
        TLSConfigError: the CA files cannot be read, parsed, or do not belong together.
        ValueError: a name, IP address or `days` is invalid.
    """
    domain = domain[:-1] if domain.endswith(".") else domain
    any_server = server_name(datacenter, "", domain)
    dns_names = [any_server]
    if node not in ("", "*"):
        dns_names.append(server_name(datacenter, node, domain))
    dns_names.append("localhost")
    for extra in extra_dns:
        _check_labels("extra DNS name", extra.removeprefix("*."))
        dns_names.append(extra)
    ips = [ipaddress.ip_address("127.0.0.1")]
    for extra in extra_ips:
        try:
            ips.append(ipaddress.ip_address(extra))
        except ValueError:
            raise ValueError(
                f"invalid extra IP address {extra!r}: expected an IPv4 or IPv6 address"
            ) from None
    not_before, not_after = _validity(days)
    ca_cert, ca_key = _load_ca(ca)

    key = new_ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, any_server)])
    san = [x509.DNSName(name) for name in dict.fromkeys(dns_names)]
    san += [x509.IPAddress(ip) for ip in dict.fromkeys(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Like Consul, check the result chains to the CA before handing it out.
    cert.verify_directly_issued_by(ca_cert)

    prefix = f"{datacenter}-server-{domain}"
    while True:
        files = _first_free_pair(directory, prefix)
        try:
            _write_pair(
                files.cert_file, files.key_file, _cert_bytes(cert), _key_bytes(key)
            )
        except FileExistsError:
            continue  # another run took this number between the check and the write
        return files


# --------------------------------------------------------------------------------------------------
# Loading


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise TLSConfigError(path, err.strerror or str(err)) from None


def _parse_certificates(path: str, data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigError(path, "no valid PEM certificate found") from None
    return certs


def _parse_private_key(path: str, data: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSConfigError(path, "encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(path, "no valid unencrypted PEM private key found") from None


def _check_key_matches(key_path: str, key: PrivateKeyTypes, cert: x509.Certificate) -> None:
    if key.public_key() != cert.public_key():
        raise TLSConfigError(key_path, "private key does not match the certificate")


def _load_material(ca_file: str | None, cert_file: str, key_file: str) -> tuple[bytes | None, bytes, bytes]:
    """Read and check all files up front so every failure names its file."""
    ca_pem = None
    if ca_file is not None:
        ca_pem = _read(ca_file)
        _parse_certificates(ca_file, ca_pem)
    cert_pem = _read(cert_file)
    leaf = _parse_certificates(cert_file, cert_pem)[0]
    key_pem = _read(key_file)
    _check_key_matches(key_file, _parse_private_key(key_file, key_pem), leaf)
    return ca_pem, cert_pem, key_pem


def _check_client_auth(ca_file: str | None, require_client_auth: bool) -> None:
    """Requiring client certificates without a CA to verify them against would accept none (gRPC)
    or any (ssl); refuse the configuration instead of guessing."""
    if require_client_auth and ca_file is None:
        raise TLSConfigError("<ca_file>", "client authentication requires a CA file")


def load_server_credentials(
    ca_file: str | None, cert_file: str, key_file: str, require_client_auth: bool
) -> grpc.ServerCredentials:
    """gRPC server credentials; with `require_client_auth` peers must present a cert from `ca_file`.

    Raises:
        TLSConfigError: a file is missing or unusable, or client auth is required without a CA.
    """
    _check_client_auth(ca_file, require_client_auth)
    ca_pem, cert_pem, key_pem = _load_material(ca_file, cert_file, key_file)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=require_client_auth
    )


def load_channel_credentials(ca_file: str, cert_file: str, key_file: str) -> grpc.ChannelCredentials:
    """gRPC client credentials for mutual TLS: verify servers against `ca_file`, present our cert.

    The verified name is the channel target unless the caller sets `grpc.ssl_target_name_override`
    (cross-DC calls set it to `server_name(...)`, since they dial a gateway's address).
    """
    ca_pem, cert_pem, key_pem = _load_material(ca_file, cert_file, key_file)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def _tls12_or_newer(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _load_into(context: ssl.SSLContext, ca_file: str | None, cert_file: str, key_file: str) -> None:
    _load_material(ca_file, cert_file, key_file)
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as err:
        raise TLSConfigError(cert_file, f"rejected by ssl: {err.reason or err}") from None
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as err:
            raise TLSConfigError(ca_file, f"rejected by ssl: {err.reason or err}") from None


def server_ssl_context(
    ca_file: str | None, cert_file: str, key_file: str, require_client_auth: bool
) -> ssl.SSLContext:
    """An `ssl` server context (HTTPS API); client certificates are only requested when required.

    Raises:
        TLSConfigError: a file is missing or unusable, or client auth is required without a CA.
    """
    _check_client_auth(ca_file, require_client_auth)
    context = _tls12_or_newer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_into(context, ca_file, cert_file, key_file)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_auth else ssl.CERT_NONE
    return context


def client_ssl_context(ca_file: str, cert_file: str, key_file: str, check_hostname: bool) -> ssl.SSLContext:
    """An `ssl` client context for mutual TLS; the chain is always verified against `ca_file`.

    `check_hostname=False` mirrors Consul without `verify_server_hostname`: any certificate from
    our CA is accepted, which lets a client certificate impersonate a server, so servers turn it on.
    """
    context = _tls12_or_newer(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    _load_into(context, ca_file, cert_file, key_file)
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context
