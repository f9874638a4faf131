"""A room state's shared snapshot fields are encoded once per wire format (join_reads.RoomState.encoded_parts): a
snapshot built with them is byte for byte the snapshot built with the lists."""

from __future__ import annotations

from typing import Any, cast

import pytest

from jansamvad.broker.base import HistoryResult
from jansamvad.join_reads import RoomState
from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.records import Snapshot, frame_record

SPEECH = [
    {"t": "speech", "text": f'वाक्य {k}: नमस्ते "उद्धरण" \\ \u2028', "final": True, "ts": 17 + k, "seq": k}
    for k in range(5)
]
QUESTIONS = [{"qid": "q1", "text": "सड़क कब बनेगी?", "votes": 3, "state": "approved", "pinned": False}]
POLLS = [{"pid": "p1", "question": "हाँ या ना?", "options": ["हाँ", "ना"], "state": "open", "counts": [2, 1]}]
REACTIONS = {"clap": 4, "heart": 1}


def _snapshot(polls: Any, reactions: Any, speech: Any, questions: Any) -> Snapshot:
    return Snapshot(
        seq=12, status="live", polls=polls, slow_mode=0, reactions=reactions, speech=speech, questions=questions,
        viewers=1234, staff=2,
    )  # fmt: skip


@pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.MSGPACK])
def test_join_reads_encoded_parts_make_the_same_snapshot_bytes(encoding: Encoding) -> None:
    state = RoomState(HistoryResult([], 12, True), QUESTIONS, POLLS, REACTIONS, SPEECH)
    parts = state.encoded_parts(encoding)
    assert state.encoded_parts(encoding) is parts  # encoded once
    with_parts = _snapshot(*(cast(Any, part) for part in parts))
    assert frame_record(with_parts, encoding) == frame_record(_snapshot(POLLS, REACTIONS, SPEECH, QUESTIONS), encoding)


def test_join_reads_encoded_parts_are_kept_per_wire_format() -> None:
    state = RoomState(HistoryResult([], 0, True), [], [], {}, [])
    assert bytes(state.encoded_parts(Encoding.JSON).speech) == b"[]"
    assert bytes(state.encoded_parts(Encoding.MSGPACK).speech) == b"\x90"
