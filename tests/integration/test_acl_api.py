"""The ACL API on a real 3-server datacenter, driven by py-consul (reference/acl.md §3, §9).

Bootstrap once (the second answers 403 with the reset index, the reset file allows one more),
create a policy and a token, read the token through a follower, `token/self`, clone and delete,
and check that tokens survive a restart of every server.
"""

from __future__ import annotations

import os

import consul
import pytest

from meshfed.fsm.acl import GLOBAL_MANAGEMENT_POLICY_ID

from .harness import wait_until

ACL_ON = {"acl": {"enabled": True, "default_policy": "deny"}}


def client(server, token: str | None = None) -> consul.Consul:  # type: ignore[no-untyped-def]
    return consul.Consul(host=server.address, port=8500, token=token)


def test_bootstrap_policy_token_lifecycle_and_restart(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", config=ACL_ON)
    dc.start()
    leader = dc.leader()
    follower = dc.followers()[0]

    bootstrap = client(follower).acl.bootstrap()  # forwarded to the leader
    assert bootstrap["ID"] == bootstrap["SecretID"]
    assert bootstrap["Policies"][0]["ID"] == GLOBAL_MANAGEMENT_POLICY_ID
    again = dc.put(leader, "/v1/acl/bootstrap")
    assert again.status_code == 403
    assert again.text == f"Permission denied: ACL bootstrap no longer allowed (reset index: {bootstrap['CreateIndex']})"

    management = bootstrap["SecretID"]
    c = client(leader, management)
    policy = c.acl.policy.create("node-read", rules={"node_prefix": {"": {"policy": "read"}}}, token=management)
    assert policy["Name"] == "node-read" and policy["CreateIndex"] == policy["ModifyIndex"]
    bad = dc.put(leader, "/v1/acl/policy", {"Name": "bad", "Rules": 'service "x" { policy = "sudo" }'},
                 headers={"X-Consul-Token": management})
    assert bad.status_code == 400 and bad.text.startswith("Failed to parse policy: line 1: Invalid service policy")

    token = c.acl.token.create(description="ops", policies_name=["node-read"], token=management)
    assert token["Policies"] == [{"ID": policy["ID"], "Name": "node-read"}]

    through_follower = client(follower, management)
    read = wait_until(lambda: through_follower.acl.token.read(token["AccessorID"]), timeout=5, what="token on follower")
    assert read["SecretID"] == token["SecretID"]
    assert through_follower.acl.token.read_self(token=token["SecretID"])["AccessorID"] == token["AccessorID"]
    with pytest.raises(consul.ACLPermissionDenied):
        through_follower.acl.token.read_self(token="45a3bd52-07c7-47a4-52fd-0745e0cfe967")

    clone = through_follower.acl.token.clone(token["AccessorID"], description="copy", token=management)
    assert clone["AccessorID"] != token["AccessorID"] and clone["Policies"] == token["Policies"]
    assert through_follower.acl.token.delete(clone["AccessorID"], token=management) is True
    missing = dc.get(follower, f"/v1/acl/token/{clone['AccessorID']}", params={"consistent": ""},
                     headers={"X-Consul-Token": management})
    assert missing.status_code == 404 and missing.text == "Requested token does not exist: ACL not found"

    dc.stop()
    dc.start()
    after = client(dc.servers[2], management)
    survived = wait_until(lambda: after.acl.token.read(token["AccessorID"]), timeout=10, what="token after restart")
    assert survived["SecretID"] == token["SecretID"]
    assert {t["AccessorID"] for t in after.acl.token.list()} >= {token["AccessorID"], bootstrap["AccessorID"]}

    new_leader = dc.leader()
    reset = os.path.join(new_leader.data_dir, "acl-bootstrap-reset")  # read by the leader that proposes
    with open(reset, "w") as f:
        f.write(str(bootstrap["CreateIndex"]))
    assert dc.put(new_leader, "/v1/acl/bootstrap").status_code == 200
    assert not os.path.exists(reset)


def test_acl_routes_answer_401_while_acls_are_disabled(make_dc) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", count=1)
    dc.start()
    answer = dc.get(dc.servers[0], "/v1/acl/policies")
    assert answer.status_code == 401 and answer.text == "ACL support disabled"


def test_cli_workflow_of_reference_section_8(make_dc, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`meshfed acl ...` as an operator runs it (reference/acl.md §7, §8 steps 1-2, 6)."""
    from meshfed.server.cli.main import main

    dc = make_dc("dc1", count=1, config=ACL_ON)
    dc.start()
    http = ["-http-addr", dc.servers[0].http]

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main([*argv, *http]) == 0
        return capsys.readouterr().out

    def field(output: str, label: str) -> str:
        return next(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith(label + ":"))

    booted = run("acl", "bootstrap")
    assert "Description:      Bootstrap Token (Global Management)" in booted
    assert "   00000000-0000-0000-0000-000000000001 - global-management" in booted
    secret_file = tmp_path / "management"
    secret_file.write_text(field(booted, "SecretID") + "\n")
    # Calls without -token-file below take the token as operators do: from CONSUL_HTTP_TOKEN.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", field(booted, "SecretID"))

    rules = tmp_path / "replication.hcl"
    rules.write_text('acl = "write"\noperator = "write"\nservice_prefix "" { policy = "read" intentions = "read" }\n')
    created = run("acl", "policy", "create", "-token-file", str(secret_file), "-name", "replication", "-rules", f"@{rules}")
    assert field(created, "Name") == "replication" and 'operator = "write"' in created
    assert "replication:" in run("acl", "policy", "list", "-token-file", str(secret_file))
    assert field(run("acl", "policy", "read", "-name", "replication"), "ID") == field(created, "ID")

    token = run("acl", "token", "create", "-token-file", str(secret_file), "-description", "replication token",
                "-policy-name", "replication", "-service-identity", "web:dc1")
    accessor = field(token, "AccessorID")
    assert f"   {field(created, 'ID')} - replication" in token and "web (Datacenters: dc1)" in token
    assert field(run("acl", "token", "read", "-id", accessor), "Description") == "replication token"
    updated = run("acl", "token", "update", "-id", accessor, "-description", "renamed")
    assert field(updated, "Description") == "renamed" and "- replication" in updated
    assert accessor in run("acl", "token", "list")
    assert run("acl", "token", "delete", "-id", accessor).strip() == f'Token "{accessor}" deleted successfully'

    role = run("acl", "role", "create", "-name", "ops", "-policy-name", "replication")
    assert field(role, "Name") == "ops" and "ops" in run("acl", "role", "list")
    assert "deleted successfully" in run("acl", "policy", "delete", "-name", "replication")
