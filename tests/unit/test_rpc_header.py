"""Request ids: the idempotency key every write carries through forwarding and retries."""

from __future__ import annotations

from meshfed.rpc.header import new_request_id


def test_request_ids_look_like_uuid_hex_and_do_not_repeat() -> None:
    ids = [new_request_id() for _ in range(100_000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids[:1000])
    assert len(set(ids)) == len(ids)
