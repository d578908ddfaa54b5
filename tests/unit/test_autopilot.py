"""Autopilot: its configuration through the log (apply, check-and-set, snapshot and restore), the
Consul JSON shape in both directions, and the dead-server cleanup decision."""

from __future__ import annotations

import pytest

from meshfed.fsm import AutopilotConfigSet, StateMachine, decode_frame, encode_batch, encode_frame
from meshfed.fsm.records import AutopilotConfig
from meshfed.rpc.errors import RPCError
from meshfed.server.endpoints.autopilot import autopilot_from_json, autopilot_json
from meshfed.server.leader.autopilot import dead_server_to_remove
from meshfed.server.raft import PeerHealth

A, B, C, D = (f"127.0.0.{i}:8301" for i in range(1, 5))


def test_configuration_applies_with_cas_and_survives_snapshot_restore() -> None:
    machine = StateMachine()
    assert machine.state.autopilot_config() == (0, AutopilotConfig())  # Consul's defaults until set
    config = AutopilotConfig(cleanup_dead_servers=True, min_quorum=3, server_stabilization_time=30.0)
    (result,) = machine.apply(5, encode_batch([("r1", AutopilotConfigSet(config, cas=0))]))
    assert result.ok and result.value is True
    (stale,) = machine.apply(6, encode_batch([("r2", AutopilotConfigSet(AutopilotConfig(), cas=0))]))
    assert stale.ok and stale.value is False  # cas 0 no longer matches the stored ModifyIndex 5
    index, stored = machine.state.autopilot_config()
    assert index == 5 and (stored.min_quorum, stored.create_index, stored.modify_index) == (3, 5, 5)

    copy = StateMachine()
    copy.restore_data(decode_frame(encode_frame(machine.snapshot_data())))
    assert copy.state.autopilot_config() == (5, stored)


def test_consul_json_round_trip_and_bad_input_names_the_field() -> None:
    shown = autopilot_json(AutopilotConfig())
    assert shown["LastContactThreshold"] == "200ms" and shown["ServerStabilizationTime"] == "10s"
    assert autopilot_from_json(shown, AutopilotConfig()) == AutopilotConfig()
    changed = autopilot_from_json({"CleanupDeadServers": True, "ServerStabilizationTime": "1m"}, AutopilotConfig())
    assert changed.cleanup_dead_servers and changed.server_stabilization_time == 60.0
    for body, field in (({"MinQuorum": -1}, "MinQuorum"), ({"CleanupDeadServers": "yes"}, "CleanupDeadServers"),
                        ({"LastContactThreshold": "soon"}, "LastContactThreshold"), ({"Bogus": 1}, "Bogus")):
        with pytest.raises(RPCError, match=field) as caught:
            autopilot_from_json(body, AutopilotConfig())
        assert caught.value.message.startswith("Request decoding failed: ")


def test_cleanup_removes_one_long_dead_server_and_respects_min_quorum() -> None:
    dead = PeerHealth(False, 12.0)
    health = {A: PeerHealth(True, 0.0), B: PeerHealth(True, 0.05), C: dead, D: dead}
    on = AutopilotConfig(cleanup_dead_servers=True, server_stabilization_time=10.0)
    assert dead_server_to_remove(on, [A, B, C, D], health, leader_for=60.0) == C  # one at a time
    assert dead_server_to_remove(on, [A, B, C, D], {**health, C: PeerHealth(False, 3.0)}, 60.0) == D
    assert dead_server_to_remove(AutopilotConfig(), [A, B, C, D], health, 60.0) is None  # off by default
    assert dead_server_to_remove(on, [A, B, C, D], health, leader_for=4.0) is None  # a new leader waits
    # MinQuorum 4: removing any of 4 voters would go below it.
    assert dead_server_to_remove(AutopilotConfig(cleanup_dead_servers=True, min_quorum=4), [A, B, C, D], health,
                                 60.0) is None
    # A member never heard from since this leader took over counts as silent for that long.
    assert dead_server_to_remove(on, [A, B, C], {A: PeerHealth(True, 0.0), B: PeerHealth(True, 0.0),
                                                 C: PeerHealth(False, None)}, 11.0) == C
