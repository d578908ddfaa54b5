"""What `?filter=` may select on each endpoint: the JSON shapes of `shapes.py`, typed.

Consul documents one selector table per endpoint (its api-docs "Filtering" sections); these are
those tables, over the keys meshfed renders. A selector outside them is a 400, as in Consul.
Free-form maps of nested config (Proxy, Connect, Definition) are not selectable here: Consul's
tables list only a few of their fields and meshfed stores them as sent.
"""

from __future__ import annotations

from meshfed.server.http.filtering import BOOL, INT, STRING, ListOf, MapOf, Schema

_STRINGS = ListOf(STRING)
_STRING_MAP = MapOf(STRING)
_ADDRESS = {"Address": STRING, "Port": INT}

NODE: Schema = {
    "ID": STRING, "Node": STRING, "Address": STRING, "Datacenter": STRING,
    "TaggedAddresses": _STRING_MAP, "Meta": _STRING_MAP,
}

SERVICE: Schema = {
    "Kind": STRING, "ID": STRING, "Service": STRING, "Tags": _STRINGS, "Address": STRING,
    "TaggedAddresses": MapOf(_ADDRESS), "Meta": _STRING_MAP, "Port": INT,
    "Weights": {"Passing": INT, "Warning": INT}, "EnableTagOverride": BOOL, "PeerName": STRING,
}

CHECK: Schema = {
    "Node": STRING, "CheckID": STRING, "Name": STRING, "Status": STRING, "Notes": STRING,
    "Output": STRING, "ServiceID": STRING, "ServiceName": STRING, "ServiceTags": _STRINGS,
    "Type": STRING, "Interval": STRING, "Timeout": STRING, "ExposedPort": INT,
}

# /v1/health/service/<s>: Node.*, Service.*, Checks.* (any check).
CHECK_SERVICE_NODE: Schema = {"Node": NODE, "Service": SERVICE, "Checks": ListOf(CHECK)}

# /v1/catalog/service/<s> and /v1/catalog/services: Consul's flattened ServiceNode.
SERVICE_NODE: Schema = {
    "ID": STRING, "Node": STRING, "Address": STRING, "Datacenter": STRING,
    "TaggedAddresses": _STRING_MAP, "NodeMeta": _STRING_MAP, "ServiceKind": STRING,
    "ServiceID": STRING, "ServiceName": STRING, "ServiceTags": _STRINGS, "ServiceAddress": STRING,
    "ServiceTaggedAddresses": MapOf(_ADDRESS), "ServiceMeta": _STRING_MAP, "ServicePort": INT,
    "ServiceWeights": {"Passing": INT, "Warning": INT}, "ServiceEnableTagOverride": BOOL,
}

INTENTION: Schema = {
    "ID": STRING, "Description": STRING, "SourceNS": STRING, "SourceName": STRING,
    "DestinationNS": STRING, "DestinationName": STRING, "SourcePartition": STRING,
    "DestinationPartition": STRING, "SourcePeer": STRING, "SourceType": STRING, "Action": STRING,
    "Meta": _STRING_MAP, "Precedence": INT,
}

# /v1/config/service-defaults (the one kind Consul filters): the scalar settings and Meta.
SERVICE_DEFAULTS: Schema = {
    "Kind": STRING, "Name": STRING, "Protocol": STRING, "Mode": STRING, "Meta": _STRING_MAP,
    "MeshGateway": {"Mode": STRING}, "TransparentProxy": {"OutboundListenerPort": INT, "DialedDirectly": BOOL},
    "MutualTLSMode": STRING, "ExternalSNI": STRING, "MaxInboundConnections": INT,
    "LocalConnectTimeoutMs": INT, "LocalRequestTimeoutMs": INT, "BalanceInboundConnections": STRING,
}
