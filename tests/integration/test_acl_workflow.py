"""The ACL workflow pieces of reference/acl.md §8 on real 3-server datacenters with default deny.

- `acl.tokens.initial_management`: usable at once, written by the leader through the bootstrap
  path (so `acl bootstrap` answers 403), still there after every server restarts;
- intentions: with no matching intention the answer follows `acl.default_policy` (Denied), over
  HTTP and with `meshfed intention check`;
- token expiry: a 2 s token works, then answers `ACL not found`, and the leader deletes it through
  Raft on every server;
- the mesh gateway: without a token it logs the refusal naming the missing permission and stays
  unregistered; with a token from a file or the environment it registers and heartbeats, and the
  secret is not on its process list.
"""

from __future__ import annotations

import os
import time
from typing import Any

import requests

from meshfed.server.cli.launcher import GatewayProcess, write_private_file

from .harness import wait_until

SECRET = "8d0cc5c1-3a8f-4c55-9d1c-2f7a4b0e6a01"
ACL_DENY = {"acl": {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": SECRET}}}
MANAGEMENT = {"X-Consul-Token": SECRET}
GATEWAY_RULES = ('service "mesh-gateway" { policy = "write" }\n'
                 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n')


def test_initial_management_token_intention_default_and_cli(make_dc, capsys) -> None:  # type: ignore[no-untyped-def]
    from meshfed.server.cli.main import main

    dc = make_dc("dc1", config=ACL_DENY)
    dc.start()
    follower = dc.followers()[0]
    # Usable at once and through a follower: the leader writes the token, every server knows it.
    self_token = wait_until(lambda: (r := dc.get(follower, "/v1/acl/token/self", headers=MANAGEMENT)).status_code == 200
                            and r.json(), timeout=10, what="initial management token on a follower")
    assert self_token["SecretID"] == SECRET and self_token["Description"] == "Initial Management Token"
    assert [p["Name"] for p in self_token["Policies"]] == ["global-management"]
    bootstrap = dc.put(dc.leader(), "/v1/acl/bootstrap")
    assert bootstrap.status_code == 403
    assert bootstrap.text == f"Permission denied: ACL bootstrap no longer allowed (reset index: {self_token['CreateIndex']})"
    assert dc.get(follower, "/v1/acl/policies").status_code == 403  # default deny without a token

    # Intentions: nothing matches web -> db, so default deny answers Denied (reference §6.4).
    check = dc.get(follower, "/v1/connect/intentions/check", params={"source": "web", "destination": "db"},
                   headers=MANAGEMENT)
    assert check.status_code == 200 and check.json() == {"Allowed": False}
    http = ["-http-addr", follower.http, "-token", SECRET]
    capsys.readouterr()
    assert main(["intention", "check", "web", "db", *http]) == 2
    assert capsys.readouterr().out.strip() == "Denied"
    assert main(["intention", "create", "web", "db", *http]) == 0
    assert main(["intention", "check", "web", "db", *http]) == 0
    assert capsys.readouterr().out.strip().endswith("Allowed")
    assert dc.get(follower, "/v1/connect/intentions/check", params={"source": "api", "destination": "db"},
                  headers=MANAGEMENT).json() == {"Allowed": False}

    policy = dc.put(follower, "/v1/acl/policy", {"Name": "ops", "Rules": 'operator = "read"'}, headers=MANAGEMENT)
    assert policy.status_code == 200, policy.text

    dc.stop()
    dc.start()
    leader = dc.leader()
    again = wait_until(lambda: (r := dc.get(leader, "/v1/acl/tokens", headers=MANAGEMENT)).status_code == 200
                       and r.json(), timeout=10, what="token list after restart")
    mine = [t for t in again if t["Description"] == "Initial Management Token"]
    assert [t["AccessorID"] for t in mine] == [self_token["AccessorID"]]  # not written twice
    assert dc.get(leader, "/v1/acl/policy/name/ops", headers=MANAGEMENT).status_code == 200
    assert dc.put(leader, "/v1/acl/bootstrap").status_code == 403


def _started_with_ops_policy(make_dc, config: dict[str, Any]) -> tuple[Any, Any, requests.Response]:  # type: ignore[no-untyped-def]
    """A started datacenter, its leader once the management token works, and the answer to
    creating policy `ops` (operator:read)."""
    dc = make_dc("dc1", config=config)
    dc.start()
    leader = dc.leader()
    wait_until(lambda: dc.get(leader, "/v1/acl/token/self", headers=MANAGEMENT).status_code == 200, timeout=10,
               what="initial management token")
    policy = dc.put(leader, "/v1/acl/policy", {"Name": "ops", "Rules": 'operator = "read"'}, headers=MANAGEMENT)
    return dc, leader, policy


def test_token_with_a_two_second_ttl_expires_and_is_reaped(make_dc) -> None:  # type: ignore[no-untyped-def]
    config: dict[str, Any] = {"acl": {**ACL_DENY["acl"], "token_min_expiration_ttl": "1s"}}
    dc, leader, policy = _started_with_ops_policy(make_dc, config)
    too_short = dc.put(leader, "/v1/acl/token", {"Policies": [{"Name": "ops"}], "ExpirationTTL": "500ms"},
                       headers=MANAGEMENT)
    assert too_short.status_code == 400
    assert too_short.text == "ExpirationTime cannot be less than 1s in the future (was 500ms)"
    created = dc.put(leader, "/v1/acl/token", {"Policies": [{"ID": policy.json()["ID"]}], "ExpirationTTL": "2s"},
                     headers=MANAGEMENT)
    assert created.status_code == 200, created.text
    token = created.json()
    assert "ExpirationTime" in token
    started = time.monotonic()
    mine = {"X-Consul-Token": token["SecretID"]}
    followers = dc.followers()
    assert dc.get(followers[0], "/v1/operator/raft/configuration", headers=mine).status_code == 200
    index = int(dc.get(leader, "/v1/acl/tokens", headers=MANAGEMENT).headers["X-Consul-Index"])

    # Refused on every server from ExpirationTime on (the resolvers check the time).
    for server in dc.servers:
        answer = wait_until(lambda s=server: (r := dc.get(s, "/v1/operator/raft/configuration", headers=mine))
                            .status_code == 403 and r.text, timeout=5, what=f"expiry on {server.node}")
        assert answer == "ACL not found"
    assert time.monotonic() - started >= 1.5  # not refused before its time (2 s minus request latency)

    # The leader's reaper deletes it through Raft: the token table moves on every server, with no
    # other ACL write in between, and the token is gone for the management token too.
    for server in dc.servers:
        wait_until(lambda s=server: int(dc.get(s, "/v1/acl/tokens", headers=MANAGEMENT, params={"stale": ""})
                                        .headers["X-Consul-Index"]) > index, timeout=10,
                   what=f"reaped token on {server.node}")
        assert dc.get(server, f"/v1/acl/token/{token['AccessorID']}", headers=MANAGEMENT,
                      params={"stale": ""}).status_code == 404


def _gateway(dc: Any, root: str, name: str, extra: list[str]) -> GatewayProcess:
    base = dc.servers[0].address.rsplit(".", 1)[0]
    return GatewayProcess("dc1", f"{base}.10", [f"{s.address}:8500" for s in dc.servers],
                          os.path.join(root, f"{name}.log"), node="gw-dc1", extra_args=extra)


def _passing(dc: Any) -> bool:
    rows = dc.get(dc.servers[0], "/v1/health/service/mesh-gateway", headers=MANAGEMENT).json()
    return bool(rows) and all(c["Status"] == "passing" for row in rows for c in row["Checks"])


def test_mesh_gateway_token_from_file_or_environment(make_dc, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", config=ACL_DENY)
    dc.start()
    leader = dc.leader()
    wait_until(lambda: dc.get(leader, "/v1/acl/token/self", headers=MANAGEMENT).status_code == 200, timeout=10,
               what="initial management token")

    # No token: the refusal is logged, naming the permission, and the gateway stays unregistered.
    anonymous = _gateway(dc, str(tmp_path), "gw-anonymous", ["-ttl", "3s"])
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    monkeypatch.delenv("CONSUL_HTTP_TOKEN_FILE", raising=False)
    anonymous.start()
    try:
        # The registration's refusal (the gateway's other reads are refused too, and logged).
        line = wait_until(lambda: next((text for text in anonymous.log_tail(50).splitlines()
                                        if "refused by the servers' ACLs" in text and "'node:write'" in text),
                                       None), timeout=15,
                          what="the gateway's refusal line")
        assert "[ERROR]" in line and "anonymous token lacks permission 'node:write' on \"gw-dc1\"" in line
        assert 'service "mesh-gateway" write' in line and "-token-file" in line
        assert anonymous.alive()
        assert dc.get(leader, "/v1/catalog/service/mesh-gateway", headers=MANAGEMENT).json() == []
    finally:
        anonymous.stop()

    # The seed's gateway policy plus its own node (meshfed has no client agent to own it).
    policy = dc.put(leader, "/v1/acl/policy", {"Name": "mesh-gateway", "Rules": GATEWAY_RULES}, headers=MANAGEMENT)
    assert policy.status_code == 200, policy.text
    created = dc.put(leader, "/v1/acl/token", {"Description": "mesh gateway", "Policies": [{"Name": "mesh-gateway"}],
                                               "NodeIdentities": [{"NodeName": "gw-dc1", "Datacenter": "dc1"}]},
                     headers=MANAGEMENT)
    assert created.status_code == 200, created.text
    secret = created.json()["SecretID"]
    token_file = tmp_path / "gateway.token"
    write_private_file(str(token_file), secret + "\n")

    for how, extra, env in (("file", ["-token-file", str(token_file)], None), ("env", [], secret)):
        if env:
            monkeypatch.setenv("CONSUL_HTTP_TOKEN", env)
        gateway = _gateway(dc, str(tmp_path), f"gw-{how}", ["-ttl", "3s", *extra])
        gateway.start()
        try:
            assert gateway.process is not None
            with open(f"/proc/{gateway.process.pid}/cmdline", "rb") as cmdline:
                assert secret.encode() not in cmdline.read()
            wait_until(lambda: _passing(dc), timeout=15, what=f"gateway registered with the token from its {how}")
            time.sleep(4)  # more than one TTL: only heartbeats keep it passing
            assert _passing(dc), gateway.log_tail()
            routes = requests.get(gateway.admin + "/v1/gateway/routes", timeout=5).json()
            assert len(routes["LocalServers"]) == 3  # its route reads pass the ACLs too
            assert "refused" not in gateway.log_tail(100)
        finally:
            gateway.stop()
        monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
        wait_until(lambda: dc.get(leader, "/v1/catalog/service/mesh-gateway", headers=MANAGEMENT).json() == [],
                   timeout=10, what="deregistered on shutdown (with the token)")


def test_a_token_works_on_every_server_as_soon_as_its_create_is_acknowledged(make_dc) -> None:  # type: ignore[no-untyped-def]
    """Read-your-writes for tokens: the leader acknowledges a create once it has applied it, but a
    follower learns of the commit a moment later. A follower that has not yet applied the token
    catches up with the leader before it answers `ACL not found` (CI once saw the 403)."""
    dc, leader, policy = _started_with_ops_policy(make_dc, ACL_DENY)
    assert policy.status_code == 200, policy.text
    followers = dc.followers()
    session = requests.Session()
    refused = []
    for attempt in range(40):
        created = session.put(leader.http + "/v1/acl/token", json={"Policies": [{"Name": "ops"}]},
                              headers=MANAGEMENT, timeout=10)
        assert created.status_code == 200, created.text
        mine = {"X-Consul-Token": created.json()["SecretID"]}
        follower = followers[attempt % len(followers)]
        answer = session.get(follower.http + "/v1/operator/raft/configuration", headers=mine, timeout=10)
        if answer.status_code != 200:
            refused.append((attempt, follower.node, answer.status_code, answer.text))
    assert refused == []
    # An unknown secret is still refused, after the same catch-up.
    unknown = session.get(followers[0].http + "/v1/operator/raft/configuration",
                          headers={"X-Consul-Token": "00000000-0000-4000-8000-000000000000"}, timeout=10)
    assert (unknown.status_code, unknown.text) == (403, "ACL not found")
