"""Connect identities and service SNI names (reference/mesh-dataplane.md §2.2 and §5).

Shared by the CA (which puts a SPIFFE ID into each leaf certificate), the proxy (which checks the
ID a peer presents and dials by SNI) and the mesh gateway (which routes on the SNI it reads from
the ClientHello without decrypting). One parser for all three, so they cannot disagree on what a
name means. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_NAMESPACE = "default"
# Consul's service names: letters, digits, '-' and '_' (DNS-safe); the SNI uses them as labels.
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
_SERVICE_PATH = re.compile(r"^/ns/(?P<ns>[^/]+)/dc/(?P<dc>[^/]+)/svc/(?P<svc>[^/]+)$")


class SpiffeError(ValueError):
    """Not a Connect identity of the expected kind; the message says which part is wrong."""


@dataclass(frozen=True)
class ServiceID:
    trust_domain: str
    namespace: str
    datacenter: str
    service: str

    @property
    def uri(self) -> str:
        return service_uri(self.trust_domain, self.datacenter, self.service, self.namespace)


def is_label(text: str) -> bool:
    return bool(_LABEL.match(text))


def service_uri(trust_domain: str, datacenter: str, service: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/dc/{datacenter}/svc/{service}"


def parse_service_uri(uri: str) -> ServiceID:
    """`spiffe://<td>/ns/<ns>/dc/<dc>/svc/<svc>`; raises SpiffeError for anything else."""
    if not isinstance(uri, str) or not uri.startswith("spiffe://"):
        raise SpiffeError("not a Connect identifier (expected spiffe://...)")
    rest = uri.removeprefix("spiffe://")
    trust_domain, slash, path = rest.partition("/")
    if not trust_domain or not slash:
        raise SpiffeError("not a Connect identifier (no path after the trust domain)")
    match = _SERVICE_PATH.match("/" + path)
    if match is None:
        raise SpiffeError("not a Service identifier (expected /ns/<ns>/dc/<dc>/svc/<service>)")
    return ServiceID(trust_domain.lower(), match["ns"], match["dc"], match["svc"])


def service_sni(service: str, datacenter: str, trust_domain: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """`<svc>.<ns>.<dc>.internal.<trust-domain>`: what a proxy dials and a gateway routes on."""
    return f"{service}.{namespace}.{datacenter}.internal.{trust_domain}".lower()


@dataclass(frozen=True)
class ServiceSNI:
    service: str
    namespace: str
    datacenter: str
    trust_domain: str


def parse_service_sni(name: str, trust_domain: str) -> ServiceSNI | None:
    """The service a gateway should route `name` to, or None if it is not a service SNI of this
    trust domain (server names, other clusters' names and garbage are not)."""
    suffix = f".internal.{trust_domain}".lower()
    lowered = name.lower()
    if not lowered.endswith(suffix):
        return None
    labels = lowered[: -len(suffix)].split(".")
    if len(labels) != 3 or not all(is_label(label) for label in labels):
        return None
    service, namespace, datacenter = labels
    return ServiceSNI(service, namespace, datacenter, trust_domain.lower())


DEFAULT_PARTITION = "default"


def peered_service_sni(service: str, peer: str, trust_domain: str, namespace: str = DEFAULT_NAMESPACE,
                       partition: str = DEFAULT_PARTITION) -> str:
    """`<svc>.<ns>.<partition>.<peer>.external.<trust-domain>` (reference peering.md §7): what a
    proxy dials for an upstream imported from a peer. `peer` is the name the *exporter* gives the
    peering and `trust_domain` the exporter's, so the exporter's gateway recognises its own
    trust domain and routes to the service's sidecars."""
    return f"{service}.{namespace}.{partition}.{peer}.external.{trust_domain}".lower()


@dataclass(frozen=True)
class PeeredSNI:
    service: str
    namespace: str
    partition: str
    peer: str
    trust_domain: str


def parse_peered_sni(name: str) -> PeeredSNI | None:
    """Split a peered service SNI; None for anything else (internal names, server names, junk)."""
    lowered = name.lower()
    head, sep, trust_domain = lowered.partition(".external.")
    if not sep or not trust_domain or ".external." in trust_domain:
        return None
    labels = head.split(".")
    if len(labels) != 4 or not all(is_label(label) for label in labels):
        return None
    if not all(is_label(label) for label in trust_domain.split(".")):
        return None
    return PeeredSNI(*labels, trust_domain)
