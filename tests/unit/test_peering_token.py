"""The peering token's encoding and Establish's checks on it (connect-data.md §D.1, §D.2 step 1),
and which services an exported-services entry offers a peer (peering.md §1.3)."""

from __future__ import annotations

import base64
import json

import pytest

from meshfed.rpc.tls import create_ca
from meshfed.server.peering.exports import exported_to
from meshfed.server.peering.token import PeeringToken, TokenError, decode_token, encode_token


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("ca")
    return open(create_ca(str(directory)).cert_file).read()


def token(ca_pem: str, **changes) -> PeeringToken:
    fields = dict(ca=(ca_pem,), server_addresses=("127.0.0.1:8300",), server_name="server.dc1.consul",
                  peer_id="pid", establishment_secret="sec", remote={"Datacenter": "dc1"})
    fields.update(changes)
    return PeeringToken(**fields)


def raw(body: dict) -> str:
    return base64.b64encode(json.dumps(body).encode()).decode()


def test_round_trip_and_consul_field_names(ca_pem: str) -> None:
    text = encode_token(token(ca_pem, manual_server_addresses=("1.2.3.4:8503",)))
    body = json.loads(base64.b64decode(text))
    assert set(body) == {"CA", "ManualServerAddresses", "ServerAddresses", "ServerName", "PeerID",
                         "EstablishmentSecret", "Remote"}
    decoded = decode_token(text)
    assert decoded.dial_addresses == ("1.2.3.4:8503",)  # the operator's addresses come first
    assert decoded.peer_id == "pid" and decoded.ca == (ca_pem,)


@pytest.mark.parametrize("text, message", [
    ("not base64!", "illegal base64 data"),
    (base64.b64encode(b"{").decode(), "not JSON"),
    (raw([1]), "must be a JSON object"),
    (raw({"CA": "x"}), "CA must be a list of strings"),
])
def test_malformed_tokens_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        decode_token(text)


@pytest.mark.parametrize("changes, message", [
    ({"ca": ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",)}, "peering token invalid CA"),
    ({"server_addresses": ()}, "server addresses value is empty"),
    ({"server_addresses": ("127.0.0.1",)}, "127.0.0.1 is not a valid peering server address"),
    ({"server_addresses": ("h:70000",)}, "h:70000 is not a valid peering server address"),
    ({"server_name": ""}, "server name value is empty"),
    ({"peer_id": ""}, "peer ID value is empty"),
    ({"establishment_secret": ""}, "establishment secret value is empty"),
])
def test_invalid_tokens_name_what_is_wrong(ca_pem: str, changes: dict, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        decode_token(encode_token(token(ca_pem, **changes)))


def test_exported_to_matches_consumers_by_peer_and_expands_the_wildcard() -> None:
    entry = {"Kind": "exported-services", "Name": "default", "Services": [
        {"Name": "web", "Consumers": [{"Peer": "cluster-02"}]},
        {"Name": "db", "Consumers": [{"Peer": "other"}]},
        {"Name": "ghost", "Consumers": [{"Peer": "cluster-02"}]},
    ]}
    assert exported_to(entry, "cluster-02", ["web", "db"]) == ["ghost", "web"]
    assert exported_to(entry, "nobody", ["web"]) == []
    assert exported_to(None, "cluster-02", ["web"]) == []
    wildcard = {"Services": [{"Name": "*", "Consumers": [{"Peer": "cluster-02"}]}]}
    assert exported_to(wildcard, "cluster-02", ["web", "db", "web"]) == ["db", "web"]
