"""Rules that involve several keys, run once every source is merged, and the warnings that follow.

A refusal blames the source of the first related key that was set, so that "retry_join lists 1
other server but bootstrap_expect = 3" points at the file that holds the list. Warnings are for
settings that are legal but probably unintended; the agent logs them once at start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from meshfed.server.config.addresses import is_unspecified, join_host_port, normalise_retry_join
from meshfed.server.config.cluster_key import MISSING_KEY_REASON, generate_key
from meshfed.server.config.errors import ConfigError
from meshfed.server.config.settings import Config, TLSConfig

# Where a key's value came from; given several keys, the first that was set.
SourceOf = Callable[..., str]


def check(config: Config, source_of: SourceOf) -> Config:
    """Refuse contradictory settings; returns the config with derived values filled in
    (the dev cluster key, peers as distinct ``host:port``, verify_outgoing implied by hostname checks)."""

    def fail(key: str, reason: str, *related: str) -> ConfigError:
        return ConfigError(source_of(key, *related), key, reason)

    if not config.server:
        raise fail("server", "meshfed runs server agents only; accepted: true")
    if not config.data_dir and not config.dev:
        raise fail("data_dir", "required: the Raft journal and snapshots live there (or run with -dev)")
    encrypt = config.encrypt or (generate_key() if config.dev else "")
    if not encrypt:
        raise fail("encrypt", MISSING_KEY_REASON)
    if config.dev and (config.bootstrap_expect != 1 or config.retry_join):
        key = "retry_join" if config.retry_join else "bootstrap_expect"
        raise fail(key, "dev mode runs a single server; accepted: bootstrap_expect = 1 and no retry_join")
    if is_unspecified(config.bind_addr) and not config.advertise_addr:
        raise fail("advertise_addr", f"required when bind_addr is {config.bind_addr}: peers cannot dial it")
    if is_unspecified(config.advertise):
        raise fail("advertise_addr", f"{config.advertise} cannot be dialled; accepted: a reachable address")
    ports = config.ports
    if len({ports.http, ports.server, ports.raft}) != 3:
        clash = "ports.raft" if ports.raft in (ports.http, ports.server) else "ports.server"
        raise fail(
            clash, f"http, server and raft ports must differ, got {ports.http}, {ports.server}, {ports.raft}"
        )
    own = [config.raft_address]
    if not is_unspecified(config.bind_addr):
        own.append(join_host_port(config.bind_addr, ports.raft))
    try:
        peers = normalise_retry_join(config.retry_join, ports.raft, own)
    except ValueError as error:
        raise fail("retry_join", str(error)) from None
    # bootstrap_expect = 1 with peers listed means "join a running datacenter" (Config.joins).
    if config.bootstrap_expect > 1 and len(peers) != config.bootstrap_expect - 1:
        raise fail(
            "retry_join",
            f"lists {len(peers)} other server(s) but bootstrap_expect = {config.bootstrap_expect} needs exactly"
            f" {config.bootstrap_expect - 1} (every server except this one, as host or host:port)",
            "bootstrap_expect",
        )
    _check_tls(config.tls, fail)
    _check_federation(config, fail)
    if config.federation_state_refresh_interval >= config.federation_state_ttl:
        raise fail(
            "federation_state_refresh_interval",
            "must be shorter than federation_state_ttl, or live datacenters get pruned between refreshes",
        )
    if config.acl.token_min_expiration_ttl > config.acl.token_max_expiration_ttl:
        raise fail("acl.token_min_expiration_ttl", "must not be longer than acl.token_max_expiration_ttl",
                   "acl.token_max_expiration_ttl")
    tls = replace(config.tls, verify_outgoing=config.tls.verify_outgoing or config.tls.verify_server_hostname)
    return replace(config, encrypt=encrypt, retry_join=peers, tls=tls)


def _check_tls(tls: TLSConfig, fail: Callable[..., ConfigError]) -> None:
    if bool(tls.cert_file) != bool(tls.key_file):
        missing = "tls.defaults.key_file" if tls.cert_file else "tls.defaults.cert_file"
        raise fail(missing, "cert_file and key_file must be set together")
    if tls.verify_incoming and not tls.enabled:
        raise fail("tls.defaults.verify_incoming", "requires tls.defaults.cert_file and key_file")
    verifies = tls.verify_incoming or tls.verify_outgoing or tls.verify_server_hostname
    if verifies and not tls.ca_file:
        raise fail(
            "tls.defaults.ca_file",
            "required when verify_incoming, verify_outgoing or verify_server_hostname is on",
        )


def _check_federation(config: Config, fail: Callable[..., ConfigError]) -> None:
    wanfed = config.connect.enable_mesh_gateway_wan_federation
    if wanfed and not config.connect.enabled:
        raise fail(
            "connect.enable_mesh_gateway_wan_federation", "requires connect.enabled = true", "connect.enabled"
        )
    if wanfed and not config.tls.enabled:
        raise fail(
            "connect.enable_mesh_gateway_wan_federation",
            "requires tls.defaults.cert_file and key_file: mesh gateways route by TLS SNI",
        )
    if config.primary_gateways and not wanfed:
        raise fail("primary_gateways", "requires connect.enable_mesh_gateway_wan_federation = true")
    if config.primary_gateways and config.is_primary:
        raise fail(
            "primary_gateways",
            f"only secondary datacenters dial the primary's gateways, and {config.datacenter!r} is the primary"
            " (set primary_datacenter to the primary's name)",
        )


def config_warnings(config: Config) -> list[str]:
    """Legal but probably unintended settings, for the agent to log once at start (Consul #6847)."""
    warnings: list[str] = []
    wanfed = config.connect.enable_mesh_gateway_wan_federation
    if wanfed and not config.primary_datacenter:
        warnings.append(
            f"primary_datacenter is not set, so {config.datacenter!r} acts as the primary datacenter;"
            " set it on every server of every datacenter"
        )
    if wanfed and not config.is_primary and not config.primary_gateways:
        warnings.append(
            "primary_gateways is empty: this secondary cannot reach the primary until it has replicated"
            " the primary's gateway addresses, which it cannot do on a first start"
        )
    if config.disable_primary_gateway_fallback and config.is_primary:
        warnings.append("disable_primary_gateway_fallback has no effect in the primary datacenter")
    warnings.extend(_acl_warnings(config))
    if config.unused_keys:
        warnings.append(
            f"accepted but not used by meshfed (Consul keys it has no use for): {', '.join(config.unused_keys)}"
        )
    if config.dev:
        warnings.append("dev mode: a single server with a cluster key generated for this run only")
    return warnings


def _acl_warnings(config: Config) -> list[str]:
    """ACL settings that do nothing where they are. Names keys only: token values are secrets."""
    acl = config.acl
    tokens = acl.tokens
    warnings: list[str] = []
    if not acl.enabled and any((tokens.initial_management, tokens.replication, tokens.agent, tokens.default)):
        warnings.append("acl.tokens are set but acl.enabled is false, so no request is checked against them")
    if acl.enabled and tokens.initial_management and not config.is_primary:
        warnings.append("acl.tokens.initial_management is only used in the primary datacenter")
    if acl.enabled and not config.is_primary and not tokens.replication:
        warnings.append(
            "acl.tokens.replication is empty: this secondary cannot replicate ACL policies, roles or tokens"
        )
    if acl.enable_token_replication and config.is_primary:
        warnings.append("acl.enable_token_replication has no effect in the primary datacenter")
    return warnings
