"""Backups (issue #12 item 2): the disaster-recovery drill of docs/operations.md, step by step,
on real server processes, plus the refusals (a corrupt file, a token without acl:write).

The drill: save a live 3-server DC under write load with the CLI, inspect the file, lose the DC
(kill -9 of every server, data directories gone with it), start a fresh DC, restore, check that
state and indexes are those of the backup, that a leader is elected and writes work, then kill -9
the fresh DC and restart it: the restore is in its Raft log and snapshots like any write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import consul
import consul.exceptions
import pytest
import requests

from meshfed.fsm.snapshot_format import decode_backup, state_index

from .conftest import next_block
from .harness import Datacenter, wait_until
from .workload import Writers

SNAPSHOT_OFTEN = {"raft_snapshot_threshold": 200, "raft_snapshot_interval": "3s"}
FAT_NODES = 450  # x 64 meta values of ~150 bytes: a backup over 4 MiB (the JSON body limit), ~290 chunks


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshfed.server.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def fat_registration(i: int) -> dict[str, Any]:
    meta = {f"k{j:02d}": f"{i:05d}-{j:02d}-" + "x" * 140 for j in range(64)}
    return {"Node": f"fat-{i}", "Address": f"10.1.{i // 250}.{i % 250}", "NodeMeta": meta,
            "Service": {"Service": "api", "ID": f"api-{i}", "Port": 8000 + i, "Tags": ["v1"]}}


def user_rows(tables: dict[str, Any]) -> dict[str, Any]:
    """Every table's rows except the servers' own records, which each DC publishes for itself
    (server/leader/membership.py re-publishes them at the fresh DC's addresses after a restore)."""
    servers = {row["node"].lower() for row in tables["servers"]}
    rows = {name: value for name, value in tables.items() if name not in ("table_index", "servers")}
    rows["nodes"] = [n for n in tables["nodes"] if n["node"].lower() not in servers]
    rows["services"] = [s for s in tables["services"] if s[0] not in servers]
    rows["checks"] = [c for c in tables["checks"] if c["node"].lower() not in servers]
    return rows


def saved_tables(dc: Datacenter, server: Any) -> dict[str, Any]:
    r = dc.get(server, "/v1/snapshot?stale", timeout=60)
    assert r.status_code == 200, r.text
    return decode_backup(r.content).machine["tables"]


def test_disaster_recovery_drill(make_dc, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1", config=SNAPSHOT_OFTEN)
    dc.start()
    leader = dc.leader()
    for i in range(FAT_NODES):
        assert dc.put(leader, "/v1/catalog/register", fat_registration(i)).status_code == 200
    assert dc.put(leader, "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                          "Config": {"protocol": "http"}}).json() is True

    # 1. Save under write load, through a follower, with the CLI.
    writers = Writers(dc, threads=3, prefix="live").start()
    time.sleep(1.5)
    with writers._lock:
        acked_before_save = set(writers.acked)
    backup_path = str(tmp_path / "dc1.snap")
    started = time.monotonic()
    saved = cli("snapshot", "save", "-http-addr", dc.followers()[0].http, backup_path)
    save_seconds = time.monotonic() - started
    time.sleep(0.5)
    writers.stop()
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.startswith("Saved and verified snapshot to index ")
    assert os.stat(backup_path).st_mode & 0o077 == 0, "a backup holds secrets: it must not be world-readable"
    with open(backup_path, "rb") as f:
        blob = f.read()
    backup = decode_backup(blob)
    index = state_index(backup.machine)
    assert saved.stdout.strip().endswith(str(index))
    backed_up_nodes = {n["node"] for n in backup.machine["tables"]["nodes"]}
    # A non-stale save is a consistent read: everything acknowledged before it is in the file.
    assert len(acked_before_save) > 20 and acked_before_save <= backed_up_nodes
    assert {f"fat-{i}" for i in range(FAT_NODES)} <= backed_up_nodes
    assert len(blob) > 4 * 1024 * 1024, f"backup of {len(blob)} bytes: the drill should move several MB"

    # 2. Inspect the file.
    inspected = cli("snapshot", "inspect", backup_path)
    assert inspected.returncode == 0, inspected.stderr
    assert f"Index        {index}" in inspected.stdout and "Datacenter   dc1" in inspected.stdout
    assert f"sha256:{backup.sha256}" in inspected.stdout

    # 3. Lose the datacenter.
    dc.kill_all()

    # 4. Start a fresh datacenter (same name, new machines and addresses, empty data directories).
    fresh = Datacenter("dc1", f"127.0.{next_block()}", str(tmp_path / "fresh"), config=SNAPSHOT_OFTEN)
    try:
        fresh.start()
        # 5. Restore, through a follower (its chunks travel to the leader as ordinary proposals).
        started = time.monotonic()
        restored = cli("snapshot", "restore", "-http-addr", fresh.followers()[0].http, backup_path)
        restore_seconds = time.monotonic() - started
        assert restored.returncode == 0, restored.stderr
        assert restored.stdout.strip() == "Restored snapshot"
        print(f"backup {len(blob)} bytes: save {save_seconds:.2f}s, restore {restore_seconds:.2f}s")

        # 6. Check: a leader, the backup's state with its indexes on every server, writes work.
        fresh.wait_leader()
        expected = user_rows(backup.machine["tables"])
        for server in fresh.servers:
            wait_until(lambda s=server: user_rows(saved_tables(fresh, s)) == expected, 20,
                       what=f"the backup's state on {server.node}")
        r = fresh.get(fresh.leader(), "/v1/catalog/nodes")
        assert int(r.headers["X-Consul-Index"]) > index, "X-Consul-Index must continue above the backup"
        written = fresh.put(fresh.followers()[0], "/v1/catalog/register", {"Node": "after-restore",
                                                                          "Address": "10.9.9.9"})
        assert written.status_code == 200 and written.json() is True
        nodes = {n["Node"]: n for n in fresh.get(fresh.leader(), "/v1/catalog/nodes").json()}
        assert nodes["after-restore"]["ModifyIndex"] > index
        original = {n["node"]: n for n in backup.machine["tables"]["nodes"]}
        assert nodes["fat-7"]["ModifyIndex"] == original["fat-7"]["modify_index"]
        assert nodes["fat-7"]["CreateIndex"] == original["fat-7"]["create_index"]

        # 7. The restore survives kill -9 of every server and a restart.
        fresh.kill_all()
        fresh.start()
        for server in fresh.servers:
            def same(s: Any = server) -> bool:
                tables = user_rows(saved_tables(fresh, s))
                names = {n["node"] for n in tables["nodes"]}
                tables["nodes"] = [n for n in tables["nodes"] if n["node"] != "after-restore"]
                return "after-restore" in names and tables == expected
            wait_until(same, 30, what=f"the restored state on {server.node} after kill -9 and restart")
    finally:
        fresh.stop()


def test_corrupt_or_foreign_snapshot_is_refused_and_changes_nothing(make_dc, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dc = make_dc("dc1")
    dc.start()
    leader = dc.leader()
    for i in range(20):
        assert dc.put(leader, "/v1/catalog/register", fat_registration(i)).status_code == 200
    host, port = leader.http.removeprefix("http://").rsplit(":", 1)
    client = consul.Consul(host=host, port=int(port))
    blob = client.snapshot.save()
    assert decode_backup(blob).machine["tables"]["nodes"]
    before_index, before = client.catalog.nodes()
    before_tables = saved_tables(dc, leader)

    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    cases = {
        "checksum mismatch": bytes(flipped),
        "truncated": blob[: len(blob) // 3],
        "gzip archive": b"\x1f\x8b\x08\x00" + blob[4:],
        "incompatible: backup format version 7": blob[:4] + b"\x00\x07" + blob[6:],
    }
    for problem, body in cases.items():
        with pytest.raises(consul.exceptions.BadRequest, match=problem):
            client.snapshot.restore(body)
    r = requests.put(leader.http + "/v1/snapshot", data=b"", timeout=10)
    assert r.status_code == 400 and "empty" in r.text and int(r.headers["X-Consul-Index"]) >= 1

    corrupt_path = tmp_path / "corrupt.snap"
    corrupt_path.write_bytes(bytes(flipped))
    refused = cli("snapshot", "restore", "-http-addr", leader.http, str(corrupt_path))
    assert refused.returncode == 1 and "HTTP 400" in refused.stderr and "checksum mismatch" in refused.stderr
    inspected = cli("snapshot", "inspect", str(corrupt_path))
    assert inspected.returncode == 1 and "checksum mismatch" in inspected.stderr

    after_index, after = client.catalog.nodes()
    assert (after_index, after) == (before_index, before)
    assert saved_tables(dc, leader) == before_tables

    # A blocking query open across the restore wakes, at an index above anything it saw.
    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(client.catalog.nodes, index=after_index, wait="30s")
        time.sleep(0.5)
        assert not watcher.done()
        # The good file restores through py-consul, and the state is the file's.
        assert client.snapshot.restore(blob) is True
        woken_index, _ = watcher.result(timeout=5)
    assert int(woken_index) > int(after_index)
    assert user_rows(saved_tables(dc, leader)) == user_rows(decode_backup(blob).machine["tables"])


ACL_ON = {"primary_datacenter": "dc1",
          "acl": {"enabled": True, "default_policy": "deny",
                  "tokens": {"initial_management": "5f1d0c9e-1111-4222-8333-944445555666"}}}


def test_snapshot_needs_acl_write(make_dc, tmp_path) -> None:  # type: ignore[no-untyped-def]
    management = ACL_ON["acl"]["tokens"]["initial_management"]  # type: ignore[index]
    dc = make_dc("dc1", config=ACL_ON)
    dc.start()
    leader = dc.leader()
    headers = {"X-Consul-Token": management}
    made = wait_until(lambda: dc.put(leader, "/v1/acl/policy", {"Name": "ops", "Rules": 'operator = "write"'},
                                     headers=headers), 20, what="a policy written with the management token")
    policy = made.json()
    token = dc.put(leader, "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]}, headers=headers).json()

    denied = dc.get(leader, "/v1/snapshot", headers={"X-Consul-Token": token["SecretID"]})
    assert denied.status_code == 403 and "acl:write" in denied.text
    assert dc.get(leader, "/v1/snapshot").status_code == 403
    refused = requests.put(leader.http + "/v1/snapshot", data=b"MFBK", timeout=10,
                           headers={"X-Consul-Token": token["SecretID"]})
    assert refused.status_code == 403
    allowed = dc.get(leader, "/v1/snapshot", headers=headers)
    assert allowed.status_code == 200 and decode_backup(allowed.content).machine["tables"]["acl_tokens"]

    # The CLI takes the token from -token, else CONSUL_HTTP_TOKEN.
    path = str(tmp_path / "acl.snap")
    no_token = cli("snapshot", "save", "-http-addr", leader.http, path)
    assert no_token.returncode == 1 and "HTTP 403" in no_token.stderr and not os.path.exists(path)
    with_flag = cli("snapshot", "save", "-http-addr", leader.http, "-token", management, path)
    assert with_flag.returncode == 0, with_flag.stderr
    env = {**os.environ, "CONSUL_HTTP_TOKEN": management}
    from_env = subprocess.run([sys.executable, "-m", "meshfed.server.cli", "snapshot", "restore", "-http-addr",
                               leader.http, path], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert from_env.returncode == 0 and from_env.stdout.strip() == "Restored snapshot", from_env.stderr
