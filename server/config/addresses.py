"""Host and port parsing for the agent's own addresses and its Raft peers.

Hosts come back canonical (IP literals in ``ipaddress`` form, names lower-cased) so that one peer
written two ways is recognised as one, and as ourselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed so the port stays unambiguous."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal; the host comes back canonical.

    Canonical means IP literals in ``ipaddress`` form and names lower-cased, so that the same peer
    written two ways is recognised as one (and as ourselves).
    """
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{text!r} is not host, host:port or [ipv6]:port")
        port_text = tail[1:] if tail else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    return canonical_host(host), (None if port_text is None else _port_number(port_text, text))


def _port_number(port_text: str, whole: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{whole!r} has port {port_text!r}; accepted: 1 to 65535")
    return int(port_text)


def canonical_host(host: str) -> str:
    """An IP literal in ``ipaddress`` form or a lower-cased DNS name; anything else is refused."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not host or len(host) > 253 or not all(DNS_LABEL_RE.match(label) for label in labels):
        raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
    return host.rstrip(".").lower()


def is_unspecified(host: str) -> bool:
    """True for 0.0.0.0 and ::, which a server may bind to but a peer cannot dial."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def normalise_retry_join(
    entries: Sequence[str], default_port: int, own_addresses: Sequence[str] = ()
) -> tuple[str, ...]:
    """Turn peer entries into distinct ``host:port`` strings, without ourselves.

    A bare host gets ``default_port`` (the Raft port) appended; order is kept so that every server
    of a cluster that shares one file sees its peers in the same order.
    """
    own = set(own_addresses)
    peers: list[str] = []
    for entry in entries:
        host, port = split_host_port(entry)
        address = join_host_port(host, default_port if port is None else port)
        if address not in own and address not in peers:
            peers.append(address)
    return tuple(peers)
