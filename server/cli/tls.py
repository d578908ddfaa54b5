"""`meshfed tls ca create` and `meshfed tls cert create -server|-client`, with Consul's file names.

Server certificates come from `rpc/tls.py` (the servers load them). A client certificate is what
an operator's tool or a proxy presents when the servers verify incoming connections: Consul names
it `client.<dc>.<domain>` and writes `<dc>-client-<domain>-N.pem` and `-N-key.pem`, first free N.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshfed.rpc import tls
from meshfed.rpc.x509 import leaf_key_usage, new_ec_key, random_serial
from meshfed.server.cli.http import CLIError


def create_client_cert(directory: str, ca: tls.CertFiles, datacenter: str, domain: str = tls.DEFAULT_DOMAIN,
                       days: int = tls.SERVER_CERT_VALIDITY_DAYS) -> tls.CertFiles:
    """A client certificate signed by `ca`: CN and DNS name `client.<dc>.<domain>`, plus localhost and
    127.0.0.1 as Consul adds them. Raises TLSConfigError (CA files) or ValueError (names, days)."""
    domain = domain.rstrip(".")
    tls._check_labels("datacenter", datacenter)
    tls._check_labels("domain", domain)
    name = f"client.{datacenter}.{domain}".lower()
    not_before, not_after = tls._validity(days)
    ca_cert, ca_key = tls._load_ca(ca)
    key = new_ec_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert.verify_directly_issued_by(ca_cert)
    while True:
        files = tls._first_free_pair(directory, f"{datacenter}-client-{domain}")
        try:
            tls._write_pair(files.cert_file, files.key_file, tls._cert_bytes(cert), tls._key_bytes(key))
        except FileExistsError:
            continue  # another run took this number between the check and the write
        return files


def cmd_ca_create(ns: argparse.Namespace) -> int:
    try:
        files = tls.create_ca(ns.dir, domain=ns.domain, days=ns.days)
    except (FileExistsError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(f"==> Saved {files.cert_file}\n==> Saved {files.key_file}")
    return 0


def cmd_cert_create(ns: argparse.Namespace) -> int:
    if ns.server == ns.client:
        raise CLIError("pass one of -server or -client")
    domain = ns.domain
    ca = tls.CertFiles(ns.ca or os.path.join(ns.dir, f"{domain}-agent-ca.pem"),
                       ns.key or os.path.join(ns.dir, f"{domain}-agent-ca-key.pem"))
    for path in (ca.cert_file, ca.key_file):
        if not os.path.exists(path):
            raise CLIError(f"{path} not found: run `meshfed tls ca create` first or pass -ca/-key")
    try:
        if ns.client:
            files = create_client_cert(ns.dir, ca, ns.dc, domain=domain, days=ns.days)
        else:
            files = tls.create_server_cert(ns.dir, ca, ns.dc, node=ns.node, domain=domain, days=ns.days,
                                           extra_dns=ns.additional_dnsname or (),
                                           extra_ips=ns.additional_ipaddress or ())
    except (tls.TLSConfigError, FileExistsError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(f"==> Saved {files.cert_file}\n==> Saved {files.key_file}")
    return 0


def add_commands(sub: Any) -> None:
    areas = sub.add_parser("tls", help="make TLS material").add_subparsers(dest="area", metavar="AREA")
    areas.required = True
    ca = areas.add_parser("ca", help="certificate authority").add_subparsers(dest="action", metavar="ACTION")
    ca.required = True
    ca_create = ca.add_parser("create", help="create a CA (consul-agent-ca.pem + key)")
    ca_create.add_argument("-domain", "--domain", default="consul")
    ca_create.add_argument("-days", "--days", type=int, default=1825)
    ca_create.add_argument("-dir", "--dir", default=".", help="where to write the files (default: .)")
    ca_create.set_defaults(func=cmd_ca_create)
    cert = areas.add_parser("cert", help="certificates").add_subparsers(dest="action", metavar="ACTION")
    cert.required = True
    create = cert.add_parser("create", help="create a server (-server) or client (-client) certificate signed by the CA")
    create.add_argument("-server", "--server", action="store_true", help="a server certificate")
    create.add_argument("-client", "--client", action="store_true",
                        help="a client certificate: <dc>-client-<domain>-N.pem")
    create.add_argument("-dc", "--dc", default="dc1")
    create.add_argument("-node", "--node", default="", help="adds <node>.server.<dc>.<domain> (server only)")
    create.add_argument("-domain", "--domain", default="consul")
    create.add_argument("-days", "--days", type=int, default=365)
    create.add_argument("-ca", "--ca", default="", help="CA certificate (default <domain>-agent-ca.pem)")
    create.add_argument("-key", "--key", default="", help="CA key (default <domain>-agent-ca-key.pem)")
    create.add_argument("-dir", "--dir", default=".", help="where the CA is and the files go (default: .)")
    create.add_argument("-additional-dnsname", "--additional-dnsname", action="append")
    create.add_argument("-additional-ipaddress", "--additional-ipaddress", action="append")
    create.set_defaults(func=cmd_cert_create)
