"""Typed message records against the wire: byte literals in, records out, and records back to the same bytes the
untyped maps made (docs/protocol.md is the contract, so the bytes must not change). Pure, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from jansamvad.protocol.codec import Encoding, decode, encode, frame_message
from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.protocol.messages import CLIENT_MESSAGES, SERVER_MESSAGES, Limits, parse_client_message
from jansamvad.protocol.records import (
    CLIENT_RECORDS,
    SERVER_RECORDS,
    Ack,
    AnnounceEvent,
    Ask,
    Audio,
    ClaimUpdate,
    ClientMessage,
    Error,
    Hello,
    PollCounts,
    PollEvent,
    Pong,
    QuestionEvent,
    QueueAdd,
    QueueUpdate,
    Reactions,
    Reconnect,
    Restrict,
    ServerMessage,
    SettingsEvent,
    Snapshot,
    Speech,
    SpeechEvent,
    StatusEvent,
    Viewers,
    Votes,
    Welcome,
    encode_record,
    error_record,
    frame_record,
    to_map,
)

ASK_MSGPACK = (
    b"\x84\xa1t\xa3ask\xa2id\x04\xa3key\xa9abcd-1234\xa4text\xad\xe0\xa4\xb8\xe0\xa4\xa1\xe0\xa4\xbc\xe0\xa4\x95?"
)
ASK_JSON = b'{"t":"ask","id":4,"key":"abcd-1234","text":"\xe0\xa4\xb8\xe0\xa4\xa1\xe0\xa4\xbc\xe0\xa4\x95?"}'


def parse(data: bytes, encoding: Encoding) -> ClientMessage:
    return parse_client_message(decode(data, encoding), Limits(), encoding)


@pytest.mark.parametrize(("data", "encoding"), [(ASK_MSGPACK, Encoding.MSGPACK), (ASK_JSON, Encoding.JSON)])
def test_records_ask_from_the_wire(data: bytes, encoding: Encoding) -> None:
    assert parse(data, encoding) == Ask(id=4, key="abcd-1234", text="सड़क?")


def test_records_audio_bytes_from_msgpack_bin_and_json_base64() -> None:
    msgpack_audio = b"\x83\xa1t\xa5audio\xa4data\xc4\x02\x1aE\xa4init\xc3"
    json_audio = b'{"t":"audio","data":"GkU=","init":true}'
    expected = Audio(data=b"\x1a\x45", init=True)
    assert parse(msgpack_audio, Encoding.MSGPACK) == expected == parse(json_audio, Encoding.JSON)


def test_records_defaults_are_the_documented_ones() -> None:
    # The optional fields a handler reads, when the client leaves them out.
    assert parse(b'{"t":"speech","id":1,"text":"x"}', Encoding.JSON) == Speech(id=1, text="x", final=True, key="")
    restrict = parse(b'{"t":"restrict","id":2,"sub":"c-1","action":"ban"}', Encoding.JSON)
    assert restrict == Restrict(id=2, sub="c-1", action="ban", seconds=None, scope="townhall", reason="")
    assert parse(b'{"t":"hello","token":"a.b.c"}', Encoding.JSON) == Hello(token="a.b.c", th="", last_seq=None)


# A valid record of every client type, encoded by msgspec and read back through the validating parser.
SAMPLES: list[ClientMessage] = [
    parse_client_message(obj, Limits(), Encoding.MSGPACK)
    for obj in (
        {"t": "hello", "token": "a.b.c", "th": "th1", "last_seq": 3, "last_mseq": 1, "mode": "light"},
        {"t": "ping", "id": 1},
        {"t": "leave"},
        {"t": "react", "kind": "clap"},
        {"t": "ask", "id": 2, "key": "abcd-1234", "text": "सवाल"},
        {"t": "upvote", "id": 3, "qid": "q1", "key": "abcd-1235"},
        {"t": "poll_vote", "id": 4, "pid": "p1", "option": 2},
        {"t": "speech", "id": 5, "text": "भाषण", "final": False, "key": "abcd-1236"},
        {"t": "audio", "data": b"\x00\x01", "init": True, "mime": "audio/webm"},
        {"t": "announce", "id": 6, "text": "घोषणा"},
        {"t": "go_live", "id": 7},
        {"t": "end", "id": 8},
        {"t": "poll_create", "id": 9, "question": "?", "options": ["a", "b"]},
        {"t": "poll_open", "id": 10, "pid": "p1"},
        {"t": "poll_close", "id": 11, "pid": "p1"},
        {"t": "moderate", "id": 12, "qid": "q1", "action": "reject", "reason": "spam"},
        {"t": "slow_mode", "id": 13, "seconds": 0},
        {"t": "claim", "id": 14, "qid": "q1"},
        {"t": "release", "id": 15, "qid": "q1"},
        {"t": "restrict", "id": 16, "sub": "c-1", "action": "timeout", "seconds": 60, "scope": "global"},
        {"t": "mode", "id": 17, "mode": "audio"},
        {"t": "audience", "id": 18, "people": 120},
    )
]


def test_records_samples_cover_every_client_type() -> None:
    assert {type(sample) for sample in SAMPLES} == set(CLIENT_RECORDS)
    assert {record.type for record in CLIENT_RECORDS} == set(CLIENT_MESSAGES)
    for record in CLIENT_RECORDS:  # the record has exactly the fields the table validates
        assert set(record.__struct_fields__) == CLIENT_MESSAGES[record.type].field_names() | {"id"}, record.type


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.type)
def test_records_client_round_trip(sample: ClientMessage, encoding: Encoding) -> None:
    assert parse(encode_record(sample, encoding), encoding) == sample


# Answers and events: each record, and the bytes its map made before there were records (msgpack, then JSON).
WIRE: list[tuple[ServerMessage, bytes, bytes]] = [
    (
        Ack(re=4, key="abcd-1234", qid="q7", state="pending", dup=True),
        b"\x86\xa1t\xa3ack\xa2re\x04\xa3key\xa9abcd-1234\xa3qid\xa2q7\xa5state\xa7pending\xa3dup\xc3",
        b'{"t":"ack","re":4,"key":"abcd-1234","qid":"q7","state":"pending","dup":true}',
    ),
    (
        Error(code="rate_limited", msg="too many messages", re=5, retry_ms=200),
        b"\x85\xa1t\xa5error\xa4code\xacrate_limited\xa3msg\xb1too many messages\xa2re\x05\xa8retry_ms\xcc\xc8",
        b'{"t":"error","code":"rate_limited","msg":"too many messages","re":5,"retry_ms":200}',
    ),
    (
        ClaimUpdate(qid="q7", by=None, until=0),
        b"\x84\xa1t\xacclaim_update\xa3qid\xa2q7\xa2by\xc0\xa5until\x00",
        b'{"t":"claim_update","qid":"q7","by":null,"until":0}',
    ),
    (
        Ack(re=17, mode="audio"),
        b"\x83\xa1t\xa3ack\xa2re\x11\xa4mode\xa5audio",
        b'{"t":"ack","re":17,"mode":"audio"}',
    ),
    (
        Ack(re=18, people=120),
        b"\x83\xa1t\xa3ack\xa2re\x12\xa6peoplex",
        b'{"t":"ack","re":18,"people":120}',
    ),
    (Pong(re=9), b"\x82\xa1t\xa4pong\xa2re\t", b'{"t":"pong","re":9}'),
    (Pong(), b"\x81\xa1t\xa4pong", b'{"t":"pong"}'),
]


@pytest.mark.parametrize(("record", "msgpack_bytes", "json_bytes"), WIRE, ids=lambda v: getattr(v, "type", ""))
def test_records_server_bytes_are_unchanged(record: ServerMessage, msgpack_bytes: bytes, json_bytes: bytes) -> None:
    assert encode_record(record, Encoding.MSGPACK) == msgpack_bytes
    assert encode_record(record, Encoding.JSON) == json_bytes


# Every answer and event a handler sends, with the map it sent before records (in its key order).
SENT: list[tuple[ServerMessage, dict[str, Any]]] = [
    (
        Ack(re=1, key="k" * 8, qid="q1", state="approved"),
        {"t": "ack", "re": 1, "key": "k" * 8, "qid": "q1", "state": "approved"},
    ),
    (Ack(re=2, qid="q1", votes=3, dup=True), {"t": "ack", "re": 2, "qid": "q1", "votes": 3, "dup": True}),
    (Ack(re=3, pid="p1", option=0), {"t": "ack", "re": 3, "pid": "p1", "option": 0}),
    (Ack(re=4, pid="p1", seq=0), {"t": "ack", "re": 4, "pid": "p1", "seq": 0}),
    (Ack(re=5, qid="q1", until=2**41), {"t": "ack", "re": 5, "qid": "q1", "until": 2**41}),
    (Ack(re=6, sub="c-1", until=0), {"t": "ack", "re": 6, "sub": "c-1", "until": 0}),
    (Ack(re=2**53 - 1, seq=70_000, dup=True), {"t": "ack", "re": 2**53 - 1, "seq": 70_000, "dup": True}),
    (
        Error(code="forbidden", msg="a citizen may not speak", re=3),
        {"t": "error", "code": "forbidden", "msg": "a citizen may not speak", "re": 3},
    ),
    (
        Error(code="invalid_field", msg="x: unknown field", field="x"),
        {"t": "error", "code": "invalid_field", "msg": "x: unknown field", "field": "x"},
    ),
    (SpeechEvent(text='नमस्ते\n"सब"', final=False), {"t": "speech", "text": 'नमस्ते\n"सब"', "final": False}),
    (AnnounceEvent(text="a" * 300), {"t": "announce", "text": "a" * 300}),
    (StatusEvent(status="live"), {"t": "status", "status": "live"}),
    (SettingsEvent(slow_mode=30), {"t": "settings", "slow_mode": 30}),
    (
        PollEvent(p={"pid": "p1", "options": ["a", "b"], "state": "open"}),
        {"t": "poll", "p": {"pid": "p1", "options": ["a", "b"], "state": "open"}},
    ),
    (
        QuestionEvent(q={"qid": "q1", "text": "सवाल", "votes": 2}),
        {"t": "question", "q": {"qid": "q1", "text": "सवाल", "votes": 2}},
    ),
    (
        QueueUpdate(qid="q1", state="rejected", pinned=False, by="m-1", reason=""),
        {"t": "queue_update", "qid": "q1", "state": "rejected", "pinned": False, "by": "m-1", "reason": ""},
    ),
    (ClaimUpdate(qid="q1", by="m-1", until=12), {"t": "claim_update", "qid": "q1", "by": "m-1", "until": 12}),
    (
        QueueUpdate(qid="q2", state="rejected", pinned=False, by="auto", reason="link,phone"),
        {"t": "queue_update", "qid": "q2", "state": "rejected", "pinned": False, "by": "auto", "reason": "link,phone"},
    ),
    (
        QueueAdd(q={"qid": "q1", "text": "सवाल", "flags": []}),
        {"t": "queue_add", "q": {"qid": "q1", "text": "सवाल", "flags": []}},
    ),
    (Viewers(n=19_500, staff=3), {"t": "viewers", "n": 19_500, "staff": 3}),
    (Votes(v={"q1": 3, "q2": 0}, g={"g1": 3}), {"t": "votes", "v": {"q1": 3, "q2": 0}, "g": {"g1": 3}}),
    (Votes(v={}, g={}), {"t": "votes", "v": {}, "g": {}}),
    (Reactions(c={"clap": 70_000, "heart": 1}), {"t": "reactions", "c": {"clap": 70_000, "heart": 1}}),
    (PollCounts(pid="p1", c=[0, 5, 300]), {"t": "poll_counts", "pid": "p1", "c": [0, 5, 300]}),
    (Reconnect(after_ms=4_321), {"t": "reconnect", "after_ms": 4_321}),
    (
        Welcome(
            role="citizen", sub="c-1", name="सीता", th="th1", title="टाउन हॉल", status="live", seq=0, recovered=False
        ),
        {"t": "welcome", "role": "citizen", "sub": "c-1", "name": "सीता", "th": "th1", "title": "टाउन हॉल"}
        | {"status": "live", "seq": 0, "recovered": False},
    ),
    (
        Welcome(role="admin", sub="a", name="", th="th1", title="", status="ended", seq=9, recovered=True, mseq=0),
        {"t": "welcome", "role": "admin", "sub": "a", "name": "", "th": "th1", "title": "", "status": "ended"}
        | {"seq": 9, "recovered": True, "mseq": 0},
    ),
    (
        Snapshot(
            seq=3,
            status="live",
            polls=[{"pid": "p1", "options": ["a", "b"]}],
            slow_mode=0,
            reactions={},
            speech=[{"t": "speech", "text": "नमस्ते", "final": True, "ts": 1, "seq": 3}],
            questions=[],
            viewers=2,
            staff=1,
        ),
        {"t": "snapshot", "seq": 3, "status": "live", "polls": [{"pid": "p1", "options": ["a", "b"]}], "slow_mode": 0}
        | {"reactions": {}, "speech": [{"t": "speech", "text": "नमस्ते", "final": True, "ts": 1, "seq": 3}]}
        | {"questions": [], "viewers": 2, "staff": 1},
    ),
    (
        Snapshot(
            seq=0,
            status="draft",
            polls=[],
            slow_mode=30,
            reactions={"clap": 2},
            speech=[],
            questions=[],
            viewers=0,
            staff=1,
            queue=[{"qid": "q1"}],
            mseq=0,
        ),
        {"t": "snapshot", "seq": 0, "status": "draft", "polls": [], "slow_mode": 30, "reactions": {"clap": 2}}
        | {"speech": [], "questions": [], "viewers": 0, "staff": 1, "queue": [{"qid": "q1"}], "mseq": 0},
    ),
]


def test_records_sent_cover_every_server_record() -> None:
    assert {type(record) for record, _ in SENT} | {Pong} == set(SERVER_RECORDS)
    assert {record.type for record in SERVER_RECORDS} <= set(SERVER_MESSAGES)


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize(("record", "as_map"), SENT, ids=lambda v: getattr(v, "type", ""))
def test_records_encode_as_their_map_did(record: ServerMessage, as_map: dict[str, Any], encoding: Encoding) -> None:
    assert encode_record(record, encoding) == encode(as_map, encoding)
    assert frame_record(record, encoding) == frame_message(as_map, encoding)
    assert list(to_map(record).items()) == list(as_map.items())  # what the broker and the fan-out carry


def test_records_error_from_a_violation() -> None:
    violation = ProtocolViolation(ErrorCode.TOO_LONG, "text: longer than 300", field="text", re=8)
    assert encode_record(error_record(violation), Encoding.JSON) == (
        b'{"t":"error","code":"too_long","msg":"text: longer than 300","re":8,"field":"text"}'
    )
