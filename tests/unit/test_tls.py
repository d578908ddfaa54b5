"""TLS material: generated CA/server certificates, name rules, loaders, and real handshakes with them."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshfed.rpc.tls import (
    CertFiles,
    TLSConfigError,
    client_ssl_context,
    create_ca,
    create_server_cert,
    load_channel_credentials,
    load_server_credentials,
    server_name,
    server_ssl_context,
)


def load_cert(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def dns_sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


def ip_sans(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertFiles, CertFiles]:
    directory = str(tmp_path_factory.mktemp("pki"))
    ca = create_ca(directory)
    return ca, create_server_cert(directory, ca, "dc1", node="node1")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertFiles, CertFiles]:
    directory = str(tmp_path_factory.mktemp("other"))
    ca = create_ca(directory)
    return ca, create_server_cert(directory, ca, "dc1", node="node1")


# ---- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("dc1",), "server.dc1.consul"),
        (("dc1", "node1"), "node1.server.dc1.consul"),
        (("dc1", "*"), "server.dc1.consul"),
        (("dc2", "", "example.com."), "server.dc2.example.com"),
        (("DC2", "Node_A", "Consul"), "node_a.server.dc2.consul"),
    ],
)
def test_server_name(args: tuple[str, ...], expected: str) -> None:
    assert server_name(*args) == expected


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("",), "datacenter"),
        (("dc.1",), "datacenter"),
        (("dc1", "a.b"), "node"),
        (("dc1", "-x"), "node"),
        (("dc1", "n", ""), "domain"),
        (("dc1", "n", "bad domain"), "domain"),
    ],
)
def test_server_name_rejects_non_dns_parts(args: tuple[str, ...], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        server_name(*args)


# ---- CA ---------------------------------------------------------------------------------------------


def test_create_ca(tmp_path: Path) -> None:
    files = create_ca(str(tmp_path), domain="example.", days=30)
    assert files == CertFiles(
        str(tmp_path / "example-agent-ca.pem"), str(tmp_path / "example-agent-ca-key.pem")
    )
    assert stat.S_IMODE(os.stat(files.key_file).st_mode) == 0o600
    assert Path(files.key_file).read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    cert = load_cert(files.cert_file)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith("meshfed CA ")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    cert.verify_directly_issued_by(cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=30) <= lifetime <= datetime.timedelta(days=30, minutes=2)
    assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.UTC)
    (tmp_path / "second").mkdir()
    second = create_ca(str(tmp_path / "second"), domain="example")
    assert load_cert(second.cert_file).subject != cert.subject  # random id per CA
    assert load_cert(second.cert_file).serial_number != cert.serial_number


@pytest.mark.parametrize("existing", ["consul-agent-ca.pem", "consul-agent-ca-key.pem"])
def test_create_ca_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=existing):
        create_ca(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [existing]
    assert (tmp_path / existing).read_bytes() == b"keep me"


# ---- server certificates ----------------------------------------------------------------------------


def test_server_cert_contents(tmp_path: Path) -> None:
    ca = create_ca(str(tmp_path))
    files = create_server_cert(
        str(tmp_path),
        ca,
        "dc1",
        node="node1",
        days=10,
        extra_dns=["gw.example.com", "localhost"],
        extra_ips=["10.0.0.7", "::1"],
    )
    assert files == CertFiles(
        str(tmp_path / "dc1-server-consul-0.pem"), str(tmp_path / "dc1-server-consul-0-key.pem")
    )
    assert stat.S_IMODE(os.stat(files.key_file).st_mode) == 0o600
    cert, ca_cert = load_cert(files.cert_file), load_cert(ca.cert_file)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "server.dc1.consul"
    assert sorted(dns_sans(cert)) == sorted(
        ["server.dc1.consul", "node1.server.dc1.consul", "localhost", "gw.example.com"]
    )
    assert sorted(ip_sans(cert)) == ["10.0.0.7", "127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    key = serialization.load_pem_private_key(Path(files.key_file).read_bytes(), None)
    assert key.public_key() == cert.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=10) <= lifetime <= datetime.timedelta(days=10, minutes=2)


@pytest.mark.parametrize("node", ["", "*"])
def test_server_cert_without_node_has_only_the_any_server_name(tmp_path: Path, node: str) -> None:
    ca = create_ca(str(tmp_path))
    cert = load_cert(create_server_cert(str(tmp_path), ca, "dc3", node=node, domain="mesh.").cert_file)
    assert sorted(dns_sans(cert)) == ["localhost", "server.dc3.mesh"]
    assert ip_sans(cert) == ["127.0.0.1"]


def test_server_cert_files_take_the_first_free_number(tmp_path: Path) -> None:
    ca = create_ca(str(tmp_path))
    names = [Path(create_server_cert(str(tmp_path), ca, "dc1").cert_file).name for _ in range(3)]
    assert names == ["dc1-server-consul-0.pem", "dc1-server-consul-1.pem", "dc1-server-consul-2.pem"]
    (tmp_path / "dc1-server-consul-1.pem").unlink()
    (tmp_path / "dc1-server-consul-1-key.pem").unlink()
    assert Path(create_server_cert(str(tmp_path), ca, "dc1").key_file).name == "dc1-server-consul-1-key.pem"
    (tmp_path / "dc1-server-consul-3-key.pem").write_bytes(b"orphan key")  # either half marks it taken
    assert Path(create_server_cert(str(tmp_path), ca, "dc1").cert_file).name == "dc1-server-consul-4.pem"


def test_server_cert_rejects_bad_input(tmp_path: Path) -> None:
    ca = create_ca(str(tmp_path))
    with pytest.raises(ValueError, match="not-an-ip"):
        create_server_cert(str(tmp_path), ca, "dc1", extra_ips=["not-an-ip"])
    with pytest.raises(ValueError, match="datacenter"):
        create_server_cert(str(tmp_path), ca, "dc 1")
    with pytest.raises(ValueError, match="days"):
        create_server_cert(str(tmp_path), ca, "dc1", days=0)
    with pytest.raises(TLSConfigError, match="missing-key.pem"):
        create_server_cert(str(tmp_path), CertFiles(ca.cert_file, str(tmp_path / "missing-key.pem")), "dc1")
    assert sorted(os.listdir(tmp_path)) == ["consul-agent-ca-key.pem", "consul-agent-ca.pem"]


# ---- loading errors ---------------------------------------------------------------------------------


def test_load_errors_name_the_file(
    tmp_path: Path, pki: tuple[CertFiles, CertFiles], other_pki: tuple[CertFiles, CertFiles]
) -> None:
    ca, server = pki
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not pem at all")
    encrypted = tmp_path / "encrypted-key.pem"
    key = serialization.load_pem_private_key(Path(server.key_file).read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    missing = str(tmp_path / "missing.pem")
    cases = [
        ((missing, server.cert_file, server.key_file), missing, "No such file"),
        ((str(junk), server.cert_file, server.key_file), str(junk), "certificate"),
        ((ca.cert_file, str(junk), server.key_file), str(junk), "certificate"),
        ((ca.cert_file, server.cert_file, str(junk)), str(junk), "private key"),
        ((ca.cert_file, server.cert_file, str(encrypted)), str(encrypted), "encrypted"),
        ((ca.cert_file, server.cert_file, other_pki[1].key_file), other_pki[1].key_file, "does not match"),
    ]
    loaders = [
        lambda a, b, c: load_server_credentials(a, b, c, True),
        load_channel_credentials,
        lambda a, b, c: server_ssl_context(a, b, c, True),
        lambda a, b, c: client_ssl_context(a, b, c, True),
    ]
    for args, path, reason in cases:
        for loader in loaders:
            with pytest.raises(TLSConfigError, match=reason) as caught:
                loader(*args)
            assert caught.value.path == path
            assert path in str(caught.value)
            assert isinstance(caught.value, ValueError)


def test_client_auth_needs_a_ca(pki: tuple[CertFiles, CertFiles]) -> None:
    _, server = pki
    with pytest.raises(TLSConfigError, match="CA"):
        load_server_credentials(None, server.cert_file, server.key_file, True)
    with pytest.raises(TLSConfigError, match="CA"):
        server_ssl_context(None, server.cert_file, server.key_file, True)
    assert server_ssl_context(None, server.cert_file, server.key_file, False).verify_mode == ssl.CERT_NONE


# ---- real handshakes with ssl -----------------------------------------------------------------------


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext, name: str) -> None:
    """Run a full TLS handshake in memory; raises the first side's SSLError."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname=name)
    done = {"server": False, "client": False}
    for _ in range(10):
        for side, tls in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    tls.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            # TLS 1.3 checks the client certificate after the client thinks it is done: exchange
            # application data so a late rejection surfaces here.
            client.write(b"x")
            server_in.write(client_out.read())
            assert server.read(1) == b"x"
            return
    raise AssertionError("handshake did not finish")


def test_mutual_tls_handshake_with_verified_names(pki: tuple[CertFiles, CertFiles]) -> None:
    ca, server = pki
    server_context = server_ssl_context(ca.cert_file, server.cert_file, server.key_file, True)
    client_context = client_ssl_context(ca.cert_file, server.cert_file, server.key_file, True)
    for name in ("node1.server.dc1.consul", "server.dc1.consul", "localhost"):
        handshake(server_context, client_context, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context, client_context, "node2.server.dc1.consul")
    relaxed = client_ssl_context(ca.cert_file, server.cert_file, server.key_file, False)
    handshake(server_context, relaxed, "node2.server.dc1.consul")  # chain only, like verify_outgoing alone


def test_foreign_certificates_are_rejected(
    pki: tuple[CertFiles, CertFiles], other_pki: tuple[CertFiles, CertFiles]
) -> None:
    ca, server = pki
    other_ca, other_server = other_pki
    server_context = server_ssl_context(ca.cert_file, server.cert_file, server.key_file, True)
    foreign_client = client_ssl_context(
        other_ca.cert_file, other_server.cert_file, other_server.key_file, False
    )
    with pytest.raises(ssl.SSLCertVerificationError):  # the client does not trust our server
        handshake(server_context, foreign_client, "server.dc1.consul")
    trusting_foreigner = client_ssl_context(ca.cert_file, other_server.cert_file, other_server.key_file, True)
    with pytest.raises(ssl.SSLError):  # the server does not trust the client's certificate
        handshake(server_context, trusting_foreigner, "server.dc1.consul")
    no_cert = ssl.create_default_context(cafile=ca.cert_file)
    with pytest.raises(ssl.SSLError):
        handshake(server_context, no_cert, "server.dc1.consul")
    optional = server_ssl_context(ca.cert_file, server.cert_file, server.key_file, False)
    handshake(optional, no_cert, "server.dc1.consul")


# ---- real gRPC --------------------------------------------------------------------------------------


def _echo_server(credentials: grpc.ServerCredentials) -> tuple[grpc.Server, int]:
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


def _call(port: int, credentials: grpc.ChannelCredentials, name: str) -> bytes:
    with grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", name)]
    ) as channel:
        echo = channel.unary_unary("/test.Echo/Echo")
        return echo(b"hello", timeout=5)


def test_grpc_mutual_tls(pki: tuple[CertFiles, CertFiles], other_pki: tuple[CertFiles, CertFiles]) -> None:
    ca, server = pki
    grpc_server, port = _echo_server(
        load_server_credentials(ca.cert_file, server.cert_file, server.key_file, True)
    )
    try:
        channel_credentials = load_channel_credentials(ca.cert_file, server.cert_file, server.key_file)
        assert _call(port, channel_credentials, "node1.server.dc1.consul") == b"hello"
        with pytest.raises(grpc.RpcError) as wrong_name:
            _call(port, channel_credentials, "server.dc2.consul")
        assert wrong_name.value.code() == grpc.StatusCode.UNAVAILABLE
        other_ca, other_server = other_pki
        foreign = load_channel_credentials(ca.cert_file, other_server.cert_file, other_server.key_file)
        with pytest.raises(grpc.RpcError):
            _call(port, foreign, "server.dc1.consul")
    finally:
        grpc_server.stop(None)


def test_ip_sans_are_real_addresses(tmp_path: Path) -> None:
    ca = create_ca(str(tmp_path))
    cert = load_cert(create_server_cert(str(tmp_path), ca, "dc1", extra_ips=["192.0.2.10"]).cert_file)
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    )
    assert ipaddress.ip_address("192.0.2.10") in ips
