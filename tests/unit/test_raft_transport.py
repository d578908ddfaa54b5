"""The Raft port's frame cap (issue #8 item 3): the pure prefix check and the derivation of the limit."""

from __future__ import annotations

import os
import pickle
import struct
import zlib

from pysyncobj.encryptor import getEncryptor

from meshfed.server.raft.syncobj import bounded_batch
from meshfed.server.raft.transport import (
    LARGEST_LEGIT_FRAME,
    MAX_FRAME_BYTES,
    REPLICATION_CHUNK_BYTES,
    first_bad_prefix,
)


def frame(payload: bytes) -> bytes:
    return struct.pack("i", len(payload)) + payload


def test_well_formed_frames_pass_complete_or_not() -> None:
    assert first_bad_prefix(b"") is None
    assert first_bad_prefix(b"\x01\x00") is None  # prefix not complete yet
    assert first_bad_prefix(frame(b"abc") + frame(b"de")[:5]) is None


def test_the_issue_prefix_is_caught_before_its_payload_arrives() -> None:
    """The attack of issue #8: 0x7fffffff followed by junk."""
    assert first_bad_prefix(struct.pack("i", 0x7FFFFFFF)) == 0x7FFFFFFF


def test_a_bad_prefix_behind_good_frames_and_a_negative_one_are_caught() -> None:
    assert first_bad_prefix(frame(b"ok") + struct.pack("i", MAX_FRAME_BYTES + 1)) == MAX_FRAME_BYTES + 1
    assert first_bad_prefix(struct.pack("i", -5)) == -5
    assert first_bad_prefix(struct.pack("i", MAX_FRAME_BYTES)) is None


def test_the_largest_legitimate_frame_fits_under_the_derived_bound() -> None:
    """Worst case of PySyncObj's send path (tcp_connection.send): a batch of incompressible bytes,
    pickled (protocol 2, bytes grow up to 2x), zlib level 3, Fernet, inside the session-key tuple."""
    encryptor = getEncryptor("cluster-key")
    worst = os.urandom(REPLICATION_CHUNK_BYTES - 1)
    message = (os.urandom(32), {"type": "append_entries", "term": 2**40, "commit_index": 2**40,
                                "entries": [(worst, 2**40, 2**40)], "prevLogIdx": 2**40, "prevLogTerm": 2**40})
    data = encryptor.encrypt_at_time(zlib.compress(pickle.dumps(message, 2), 3), 0)
    assert len(data) <= LARGEST_LEGIT_FRAME < MAX_FRAME_BYTES < 2**31 // 1000


def test_a_message_carries_at_most_one_batch_and_a_big_entry_goes_alone() -> None:
    small, big = (b"s" * 100, 1, 1), (b"b" * 200_000, 2, 1)
    assert bounded_batch([small, small, small], 1000) == [small, small, small]
    assert bounded_batch([small, big, small], 1000) == [small]  # big waits for its own (chunked) message
    assert bounded_batch([big, small], 1000) == [big]
