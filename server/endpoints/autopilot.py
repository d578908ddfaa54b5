"""Operator.AutopilotGetConfiguration / Operator.AutopilotSetConfiguration: the autopilot
settings, replicated through the state machine (Consul's `/v1/operator/autopilot/configuration`).

The Consul JSON shape (durations as Go strings) is converted here in both directions, so the HTTP
route and the CLI only move JSON. A write with `cas` applies only when the stored ModifyIndex
matches (0 = never set), as Consul's `?cas=`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from meshfed.fsm import AutopilotConfigSet
from meshfed.fsm.consul_formats.durations import format_duration, parse_duration
from meshfed.fsm.records import AutopilotConfig
from meshfed.fsm.state import StateStore
from meshfed.rpc.errors import invalid
from meshfed.rpc.header import QueryMeta, RequestHeader
from meshfed.rpc.service import Handler
from meshfed.server.endpoints.ports import Proposer, Queries, RequestRouter
from meshfed.server.endpoints.writes import propose

TABLES = ("autopilot",)
# Consul keys meshfed accepts and ignores (it has no redundancy zones nor upgrade migrations).
IGNORED_KEYS = ("RedundancyZoneTag", "DisableUpgradeMigration", "UpgradeVersionTag", "CreateIndex", "ModifyIndex")


def autopilot_json(config: AutopilotConfig) -> dict[str, Any]:
    return {
        "CleanupDeadServers": config.cleanup_dead_servers,
        "LastContactThreshold": format_duration(config.last_contact_threshold),
        "MaxTrailingLogs": config.max_trailing_logs,
        "MinQuorum": config.min_quorum,
        "ServerStabilizationTime": format_duration(config.server_stabilization_time),
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": False,
        "UpgradeVersionTag": "",
        "CreateIndex": config.create_index,
        "ModifyIndex": config.modify_index,
    }


def autopilot_from_json(body: Any, current: AutopilotConfig) -> AutopilotConfig:
    """The configuration a PUT body asks for; keys it leaves out keep `current`'s values (Consul
    decodes onto the defaults; the CLI's set-config sends the full object). Raises RPCError 400."""
    if not isinstance(body, dict):
        raise invalid("Request decoding failed: body must be a JSON object")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key == "CleanupDeadServers":
            if not isinstance(value, bool):
                raise invalid("Request decoding failed: CleanupDeadServers must be a boolean")
            fields["cleanup_dead_servers"] = value
        elif key in ("LastContactThreshold", "ServerStabilizationTime"):
            name = "last_contact_threshold" if key == "LastContactThreshold" else "server_stabilization_time"
            try:
                fields[name] = parse_duration(value) if isinstance(value, str) else float(value) / 1e9
            except (TypeError, ValueError):
                raise invalid(f"Request decoding failed: {key}: {value!r} is not a duration") from None
        elif key in ("MaxTrailingLogs", "MinQuorum"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid(f"Request decoding failed: {key} must be an integer >= 0")
            fields["max_trailing_logs" if key == "MaxTrailingLogs" else "min_quorum"] = value
        elif key not in IGNORED_KEYS:
            raise invalid(f"Request decoding failed: unknown field {key!r}")
    if fields.get("last_contact_threshold", 0) < 0 or fields.get("server_stabilization_time", 0) < 0:
        raise invalid("Request decoding failed: durations must not be negative")
    return dataclasses.replace(current, **fields, create_index=0, modify_index=0)


class AutopilotEndpoint:
    def __init__(self, *, state: StateStore, raft: Proposer, router: RequestRouter, queries: Queries) -> None:
        self._state = state
        self._raft = raft
        self._router = router
        self._queries = queries

    def handlers(self) -> dict[str, Handler]:
        return {
            "Operator/AutopilotGetConfiguration": self.get_configuration,
            "Operator/AutopilotSetConfiguration": self.set_configuration,
        }

    async def get_configuration(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        async def local() -> tuple[QueryMeta, Any]:
            meta, config = await self._queries.run(header, TABLES, self._state.autopilot_config)
            return meta, autopilot_json(config)

        return await self._router.serve("Operator/AutopilotGetConfiguration", header, body, local, write=False)

    async def set_configuration(self, header: RequestHeader, body: Any) -> tuple[QueryMeta, Any]:
        """body: {"config": Consul JSON, "cas": int | None} -> True, or False when `cas` did not match."""
        body = body if isinstance(body, dict) else {}
        cas = body.get("cas")
        if cas is not None and (isinstance(cas, bool) or not isinstance(cas, int) or cas < 0):
            raise invalid("cas: must be an integer >= 0")

        async def local() -> tuple[QueryMeta, Any]:
            _, current = self._state.autopilot_config()
            config = autopilot_from_json(body.get("config"), current)
            result = await propose(self._raft, header.request_id, AutopilotConfigSet(config, cas))
            return self._queries.meta(self._state.index(*TABLES)), bool(result.value)

        return await self._router.serve("Operator/AutopilotSetConfiguration", header, body, local, write=True)
