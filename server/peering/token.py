"""The peering token: standard base64 of a JSON object (reference connect-data.md §D.1), and the
checks Establish runs on it (§D.2 step 1). Pure: no I/O, so every refusal is unit-tested."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509


class TokenError(ValueError):
    """A token Establish refuses; the message is Consul's text (answered as a 400)."""


@dataclass(frozen=True)
class PeeringToken:
    ca: tuple[str, ...]
    server_addresses: tuple[str, ...]
    server_name: str
    peer_id: str
    establishment_secret: str
    manual_server_addresses: tuple[str, ...] = ()
    remote: dict[str, Any] = field(default_factory=dict)

    @property
    def dial_addresses(self) -> tuple[str, ...]:
        """Dialers prefer the operator's external addresses over the servers' own (§D.1)."""
        return self.manual_server_addresses or self.server_addresses


def encode_token(token: PeeringToken) -> str:
    body = {
        "CA": list(token.ca),
        "ManualServerAddresses": list(token.manual_server_addresses),
        "ServerAddresses": list(token.server_addresses),
        "ServerName": token.server_name,
        "PeerID": token.peer_id,
        "EstablishmentSecret": token.establishment_secret,
        "Remote": token.remote or {"Partition": "default", "Datacenter": "", "Locality": None},
    }
    return base64.b64encode(json.dumps(body).encode()).decode()


def _strings(value: Any, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError(f"peering token {field_name} must be a list of strings")
    return tuple(value)


def valid_address(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return False
    return 1 <= int(port) <= 65535


def decode_token(text: str) -> PeeringToken:
    """Decode and validate; raises TokenError with the reason Consul gives."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TokenError(f"illegal base64 data in peering token: {exc}") from None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenError(f"peering token is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise TokenError("peering token must be a JSON object")
    for key in ("ServerName", "PeerID", "EstablishmentSecret"):
        if not isinstance(body.get(key, ""), str):
            raise TokenError(f"peering token {key} must be a string")
    remote = body.get("Remote") or {}
    token = PeeringToken(
        ca=_strings(body.get("CA"), "CA"),
        server_addresses=_strings(body.get("ServerAddresses"), "ServerAddresses"),
        manual_server_addresses=_strings(body.get("ManualServerAddresses"), "ManualServerAddresses"),
        server_name=body.get("ServerName", ""),
        peer_id=body.get("PeerID", ""),
        establishment_secret=body.get("EstablishmentSecret", ""),
        remote=remote if isinstance(remote, dict) else {},
    )
    validate_token(token)
    return token


def validate_token(token: PeeringToken) -> None:
    for pem in token.ca:
        try:
            x509.load_pem_x509_certificate(pem.encode())
        except ValueError as exc:
            raise TokenError(f"peering token invalid CA: {exc}") from None
    if not token.server_addresses and not token.manual_server_addresses:
        raise TokenError("peering token server addresses value is empty")
    for address in (*token.manual_server_addresses, *token.server_addresses):
        if not valid_address(address):
            raise TokenError(f"{address} is not a valid peering server address")
    if token.ca and not token.server_name:
        raise TokenError("peering token server name value is empty")
    if not token.peer_id:
        raise TokenError("peering token peer ID value is empty")
    if not token.establishment_secret:
        raise TokenError("peering token establishment secret value is empty")
