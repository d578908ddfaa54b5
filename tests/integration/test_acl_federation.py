"""ACLs across two federated datacenters (issue #9 item 5; reference/acl.md §6 and §8).

dc1 (primary) and dc2, 3 servers each, one `meshfed gateway` per DC, TLS everywhere, ACLs on with
default deny in both. dc1 starts with `initial_management`; the test then follows the seed
workflow (§8): a `replication` policy with Consul's recommended rules and a token for it, which
dc2's servers are configured with (`enable_token_replication`). Everything dc2 needs from dc1
(federation states, its own federation state written upstream, the CA's intermediate, ACLs)
then travels with that token.

The gateways send no token yet (that is another change), so the anonymous token carries the
gateway's rights here: Consul's gateway policy, attached to the anonymous token in dc1 and
replicated to dc2 like any global token. Tests run in file order against one federation; the last
ones kill the primary.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meshfed.server.cli.launcher import (
    GATEWAY_PORT,
    HTTP_PORT,
    FederatedDatacenter,
    GatewayProcess,
    ServerProcess,
    datacenter_servers,
    federation_files,
    stop_all,
    wait_for_federation,
    wait_for_leader,
)
from meshfed.server.config.loader import generate_key

from .conftest import next_block
from .harness import wait_until

S = requests.Session()
MANAGEMENT = str(uuid.uuid4())
REPLICATION = str(uuid.uuid4())
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
REPLICATION_RULES = 'acl = "write"\noperator = "write"\nservice_prefix "" { policy = "read" intentions = "read" }\n'
GATEWAY_RULES = ('service "mesh-gateway" { policy = "write" }\nservice_prefix "" { policy = "read" }\n'
                 'node_prefix "" { policy = "read" }\nnode_prefix "gw-" { policy = "write" }\n')
WEB_RULES = 'service "web" { policy = "write" }\nnode_prefix "web-" { policy = "write" }\n'
ACL_BASE = {"enabled": True, "default_policy": "deny", "down_policy": "extend-cache"}


def call(method: str, server: ServerProcess, path: str, token: str = "", body: Any = None) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    return S.request(method, server.http + path, json=body, headers=headers, timeout=20)


def leader_of(servers: list[ServerProcess]) -> ServerProcess:
    address = call("GET", next(s for s in servers if s.alive()), "/v1/status/leader").json()
    return next(s for s in servers if s.rpc_address == address)


def register_web(server: ServerProcess, token: str, node: str = "web-1") -> requests.Response:
    body = {"Node": node, "Address": "127.0.9.1", "Service": {"Service": "web", "Port": 80}}
    return call("PUT", server, "/v1/catalog/register", token, body)


def make_dc(root: str, name: str, base: str, primary_gateway: str, acl: dict[str, Any]) -> FederatedDatacenter:
    servers = datacenter_servers(name, base, root, generate_key())
    configs = federation_files(root, name, "dc1", [s.node for s in servers], [primary_gateway], {"acl": acl})
    for server, path in zip(servers, configs, strict=True):
        server.config_files.append(path)
    gateway = GatewayProcess(name, f"{base}.10", [f"{s.address}:{HTTP_PORT}" for s in servers],
                             os.path.join(root, f"gateway-{name}.log"))
    return FederatedDatacenter(name, servers, gateway)


def seed_primary(dc1: FederatedDatacenter) -> None:
    """Reference §8 steps 1-2 with the initial-management token, and the gateway's rights."""
    server = dc1.servers[0]
    for name, rules in (("replication", REPLICATION_RULES), ("gateway", GATEWAY_RULES), ("web", WEB_RULES)):
        created = call("PUT", server, "/v1/acl/policy", MANAGEMENT, {"Name": name, "Rules": rules})
        assert created.status_code == 200, created.text
    token = call("PUT", server, "/v1/acl/token", MANAGEMENT, {
        "Description": "replication token", "SecretID": REPLICATION, "Policies": [{"Name": "replication"}]})
    assert token.status_code == 200, token.text
    anonymous = call("PUT", server, f"/v1/acl/token/{ANONYMOUS_ACCESSOR}", MANAGEMENT, {
        "Description": "Anonymous Token", "Policies": [{"Name": "gateway"}]})
    assert anonymous.status_code == 200, anonymous.text


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = str(tmp_path_factory.mktemp("aclfed"))
    base1, base2 = f"127.0.{next_block()}", f"127.0.{next_block()}"
    primary_gateway = f"{base1}.10:{GATEWAY_PORT}"
    dc1 = make_dc(root, "dc1", base1, primary_gateway, {**ACL_BASE, "tokens": {"initial_management": MANAGEMENT}})
    dc2 = make_dc(root, "dc2", base2, primary_gateway, {
        **ACL_BASE, "enable_token_replication": True, "token_ttl": "1s", "tokens": {"replication": REPLICATION}})
    processes: list[Any] = [*dc1.servers, dc1.gateway, *dc2.servers, dc2.gateway]
    try:
        for process in dc1.servers:
            process.start()
        wait_for_leader(dc1.servers, timeout=60)
        wait_until(lambda: call("GET", dc1.servers[0], "/v1/acl/policies", MANAGEMENT).status_code == 200,
                   30, what="dc1 to serve ACLs")
        seed_primary(dc1)
        # After the seed: a gateway's first blocking read of the servers would otherwise be an
        # empty (filtered) answer that nothing in the catalog wakes for minutes.
        dc1.gateway.start()
        _, ops = management_token(dc1)
        for process in dc2.servers:
            process.start()
        wait_for_leader(dc2.servers, timeout=60)
        # dc2 reaches dc1's gateway directly until its own gateway registers, which it can only
        # do once the anonymous token's gateway policy has been replicated (see the docstring).
        wait_until(lambda: call("GET", dc2.servers[0], "/v1/catalog/service/consul?stale").json(), 60,
                   what="dc2 to replicate the anonymous token's policy")
        dc2.gateway.start()
        wait_for_federation([dc1, dc2], timeout=90)
        yield {"dc1": dc1, "dc2": dc2, "root": root, "ops": ops}
    finally:
        for process in processes:
            if os.environ.get("MESHFED_KEEP_LOGS"):
                print(f"--- {getattr(process, 'node', '') or process.datacenter} ---\n{process.log_tail(60)}")
        stop_all(processes)


def management_token(dc1: FederatedDatacenter) -> tuple[str, str]:
    """A stored global management token (the configured initial-management secret is only
    recognised by dc1's servers)."""
    made = call("PUT", dc1.servers[0], "/v1/acl/token", MANAGEMENT,
                {"Description": "ops", "Policies": [{"ID": "00000000-0000-0000-0000-000000000001"}]})
    assert made.status_code == 200, made.text
    return made.json()["AccessorID"], made.json()["SecretID"]


# ---- replication ----------------------------------------------------------------------------------


def test_federation_states_and_the_ca_cross_with_the_replication_token(fed: dict[str, Any]) -> None:
    """Default deny in both DCs: dc2's own row reaches dc1 (anti-entropy, operator:write), dc1's
    rows reach dc2 (replication) and dc2's intermediate is signed by dc1 (SignIntermediate)."""
    dc1, dc2 = fed["dc1"], fed["dc2"]
    states = call("GET", dc1.servers[1], "/v1/internal/federation-states?stale", REPLICATION).json()
    assert {s["Datacenter"] for s in states} == {"dc1", "dc2"}
    replicated = call("GET", dc2.servers[2], "/v1/internal/federation-states?stale", REPLICATION).json()
    assert {s["Datacenter"] for s in replicated} == {"dc1", "dc2"}

    def ca_in_sync() -> bool:
        types = call("GET", leader_of(dc2.servers), "/v1/internal/replication", REPLICATION).json()["Types"]
        return any(t["Type"] == "ca_roots" and t["Rounds"] > 0 and not t["ConsecutiveFailures"] for t in types)

    wait_until(ca_in_sync, 30, what="dc2's CA root watch to succeed against dc1")


def test_acl_replication_status_in_both_datacenters(fed: dict[str, Any]) -> None:
    dc1, dc2 = fed["dc1"], fed["dc2"]

    def status() -> dict[str, Any]:
        body = call("GET", dc2.servers[1], "/v1/acl/replication").json()
        return body if body["ReplicatedTokenIndex"] > 0 and body["Running"] else {}

    body = wait_until(status, 30, what="dc2 to report token replication running")
    assert body["Enabled"] is True and body["SourceDatacenter"] == "dc1" and body["ReplicationType"] == "tokens"
    # As Consul's, the status keeps the last error (from before dc2 had a path to dc1) next to a
    # later success.
    assert body["ReplicatedIndex"] > 0 and body["LastSuccess"] != "0001-01-01T00:00:00Z"
    assert body["LastSuccess"] >= body["LastError"]
    assert set(body) == {"Enabled", "Running", "SourceDatacenter", "ReplicationType", "ReplicatedIndex",
                         "ReplicatedRoleIndex", "ReplicatedTokenIndex", "LastSuccess", "LastError",
                         "LastErrorMessage"}
    primary = call("GET", dc1.servers[0], "/v1/acl/replication").json()
    assert primary["Enabled"] is False and primary["Running"] is False and primary["SourceDatacenter"] == ""
    metrics = call("GET", leader_of(dc2.servers), "/v1/agent/metrics?format=prometheus", fed["ops"]).text
    assert "consul_leader_replication_acl_tokens_status 1.0" in metrics


def test_a_token_created_in_dc1_works_in_dc2_and_local_ones_stay_home(fed: dict[str, Any]) -> None:
    dc1, dc2 = fed["dc1"], fed["dc2"]
    made = call("PUT", dc1.servers[0], "/v1/acl/token", MANAGEMENT, {"Policies": [{"Name": "web"}]}).json()
    local = call("PUT", dc1.servers[0], "/v1/acl/token", MANAGEMENT,
                 {"Policies": [{"Name": "web"}], "Local": True}).json()
    fed["web"] = made
    assert register_web(dc2.servers[2], "").status_code == 403
    wait_until(lambda: register_web(dc2.servers[2], made["SecretID"]).status_code == 200, 15,
               what="the dc1 token to work in dc2")
    ops = fed["ops"]
    wait_until(lambda: call("GET", dc2.servers[0], "/v1/acl/tokens", ops).status_code == 200, 15,
               what="the management token to replicate")
    accessors = {t["AccessorID"] for t in call("GET", dc2.servers[0], "/v1/acl/tokens", ops).json()}
    assert made["AccessorID"] in accessors and local["AccessorID"] not in accessors
    denied = register_web(dc2.servers[2], local["SecretID"])
    assert denied.status_code == 403 and "ACL not found" in denied.text


def test_a_policy_edit_in_dc1_takes_effect_in_dc2(fed: dict[str, Any]) -> None:
    dc1, dc2 = fed["dc1"], fed["dc2"]
    policy = call("GET", dc1.servers[0], "/v1/acl/policy/name/web", MANAGEMENT).json()
    edited = call("PUT", dc1.servers[0], f"/v1/acl/policy/{policy['ID']}", MANAGEMENT,
                  {"Name": "web", "Rules": 'service "web" { policy = "read" }\nnode_prefix "web-" { policy = "write" }\n'})
    assert edited.status_code == 200, edited.text
    secret = fed["web"]["SecretID"]
    refused = wait_until(lambda: (r := register_web(dc2.servers[1], secret)).status_code == 403 and r.text, 15,
                         what="the edited policy to apply in dc2")
    assert "lacks permission 'service:write' on \"web\"" in refused
    restored = call("PUT", dc1.servers[0], f"/v1/acl/policy/{policy['ID']}", MANAGEMENT,
                    {"Name": "web", "Rules": WEB_RULES})
    assert restored.status_code == 200
    wait_until(lambda: register_web(dc2.servers[1], secret).status_code == 200, 15, what="the restored policy")


def test_acl_writes_in_dc2_go_to_dc1(fed: dict[str, Any]) -> None:
    dc1, dc2 = fed["dc1"], fed["dc2"]
    made = call("PUT", dc2.servers[1], "/v1/acl/token", fed["ops"], {"Policies": [{"Name": "web"}]})
    assert made.status_code == 200, made.text
    accessor = made.json()["AccessorID"]
    assert call("GET", dc1.servers[0], f"/v1/acl/token/{accessor}", MANAGEMENT).status_code == 200
    refused = call("PUT", dc2.servers[1], "/v1/acl/policy", "", {"Name": "sneaky", "Rules": 'acl = "write"'})
    assert refused.status_code == 403
    fed["second"] = made.json()


def test_a_token_deleted_in_dc1_stops_working_in_dc2(fed: dict[str, Any]) -> None:
    dc1, dc2 = fed["dc1"], fed["dc2"]
    doomed = call("PUT", dc1.servers[0], "/v1/acl/token", MANAGEMENT, {"Policies": [{"Name": "web"}]}).json()
    wait_until(lambda: register_web(dc2.servers[0], doomed["SecretID"], "web-2").status_code == 200, 15,
               what="the token to replicate")
    assert call("DELETE", dc1.servers[0], f"/v1/acl/token/{doomed['AccessorID']}", MANAGEMENT).status_code == 200
    wait_until(lambda: call("GET", dc2.servers[0], f"/v1/acl/token/{doomed['AccessorID']}", fed["ops"]).status_code
               == 404, 15, what="the delete to replicate")
    gone = register_web(dc2.servers[0], doomed["SecretID"], "web-2")
    assert gone.status_code == 403 and "ACL not found" in gone.text


# ---- the primary goes away -------------------------------------------------------------------------


def restart_with(server: ServerProcess, root: str, acl: dict[str, Any]) -> None:
    path = os.path.join(root, f"{server.node}-override.json")
    with open(path, "w") as f:
        json.dump({"acl": acl}, f)
    server.stop()
    server.config_files.append(path)
    server.start()


def restart_all(dc: FederatedDatacenter, path: str | None) -> None:
    """Restart every server of `dc` with `path` as the last config file (None: drop the last one)."""
    stop_all(dc.servers)
    for server in dc.servers:
        if path is None:
            server.config_files.pop()
        else:
            server.config_files.append(path)
        server.start()
    wait_for_leader(dc.servers, timeout=60)


def test_a_replication_token_without_acl_write_fails_token_replication_visibly(fed: dict[str, Any]) -> None:
    """Reference §6.3: policies replicate with acl:read, tokens need acl:write; the failure is
    Consul's text in /v1/acl/replication and in the leader's log."""
    dc1, dc2, root = fed["dc1"], fed["dc2"], fed["root"]
    read_only = str(uuid.uuid4())
    rules = REPLICATION_RULES.replace('acl = "write"', 'acl = "read"')
    assert call("PUT", dc1.servers[0], "/v1/acl/policy", MANAGEMENT, {"Name": "repl-read", "Rules": rules}).ok
    assert call("PUT", dc1.servers[0], "/v1/acl/token", MANAGEMENT,
                {"SecretID": read_only, "Policies": [{"Name": "repl-read"}]}).ok
    path = os.path.join(root, "dc2-read-only-replication.json")
    with open(path, "w") as f:
        json.dump({"acl": {"tokens": {"replication": read_only}}}, f)
    restart_all(dc2, path)

    def failing() -> str:
        return call("GET", dc2.servers[0], "/v1/acl/replication").json()["LastErrorMessage"]

    message = wait_until(lambda: "failed to retrieve unredacted tokens" in failing() and failing(), 30,
                         what="token replication to fail with Consul's text")
    assert message.endswith("replication token in use does not grant acl:write")
    with open(leader_of(dc2.servers).log_path) as log:
        assert "failed to retrieve unredacted tokens - replication token in use does not grant acl:write" in log.read()

    restart_all(dc2, None)
    mended = lambda: (b := call("GET", dc2.servers[0], "/v1/acl/replication").json())["Running"] and (  # noqa: E731
        b["LastSuccess"] >= b["LastError"])
    wait_until(mended, 30, what="token replication to recover with the full token")


def test_down_policy_when_the_primary_is_unreachable(fed: dict[str, Any]) -> None:
    """Two dc2 followers resolve tokens with the primary (no token replication there, as a
    secondary without it would): one with extend-cache, one with deny (token_ttl 1 s). Once the
    primary is gone, extend-cache keeps the token it resolved before; deny refuses it; the
    leader, which holds the replicated tokens, is not affected; federation states stay."""
    dc1, dc2, root = fed["dc1"], fed["dc2"], fed["root"]
    leader = leader_of(dc2.servers)
    extend, deny = [s for s in dc2.servers if s is not leader]
    restart_with(extend, root, {"enable_token_replication": False, "down_policy": "extend-cache"})
    # The first follower hears the leader again before the second goes down: with both down at
    # once the leader has no quorum, steps down, and the election may pick another server.
    wait_until(lambda: extend.alive() and call("GET", extend, "/v1/status/leader").json() == leader.rpc_address,
               30, what="the restarted follower to hear the leader")
    restart_with(deny, root, {"enable_token_replication": False, "down_policy": "deny"})
    wait_for_leader(dc2.servers, timeout=30)
    assert leader_of(dc2.servers) is leader, "the token-replicating leader must stay leader for this test"
    secret = fed["second"]["SecretID"]
    for server in (extend, deny):
        wait_until(lambda server=server: register_web(server, secret, "web-3").status_code == 200, 20,
                   what=f"{server.node} to resolve the token with the primary")

    stop_all([*dc1.servers])
    time.sleep(1.5)  # past token_ttl: only the down policy can keep a resolved token now
    kept = register_web(extend, secret, "web-3")
    assert kept.status_code == 200, kept.text
    refused = register_web(deny, secret, "web-3")
    assert refused.status_code == 403 and "Permission denied" in refused.text
    assert register_web(leader, secret, "web-3").status_code == 200
    never_seen = register_web(extend, str(uuid.uuid4()), "web-3")
    assert never_seen.status_code == 403
    states = call("GET", leader, "/v1/internal/federation-states?stale", fed["ops"]).json()
    assert {s["Datacenter"] for s in states} == {"dc1", "dc2"}

    def failing() -> dict[str, Any]:
        body = call("GET", deny, "/v1/acl/replication").json()
        return body if body["LastErrorMessage"] else {}

    assert wait_until(failing, 30, what="the replication status to show the outage")["Enabled"] is True
