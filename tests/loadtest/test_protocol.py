"""The locust users' protocol handling (loadtest/jansamvad_locust/protocol.py), without a server or locust.

Server messages are built with the node's own codec (jansamvad.protocol.codec), so a change of the wire format on
the server side shows up here as well.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack
import pytest

from jansamvad.protocol.codec import Encoding, decode as server_decode, encode as server_encode
from jansamvad.protocol.messages import CLIENT_MESSAGES, Limits, parse_client_message
from jansamvad.protocol.records import Hello
from jansamvad.protocol.text import clean_text
from jansamvad_locust.net import source_ip, ws_url
from jansamvad_locust.protocol import (
    ASK_ACK,
    ASK_ACK_RESENT,
    FLAKY,
    MAX_RETRIES,
    RATE_LIMITED,
    SPEECH_DELIVERY,
    SPEECH_DELIVERY_FLAKY,
    STREAM_DUPLICATE,
    STREAM_GAP,
    ClientSession,
    Outcome,
    StreamTracker,
    close_code,
    decode,
    encode,
    parse_stamp,
    stamp_speech,
)

T0 = 100.0  # a monotonic clock reading
WALL = 1_800_000_000_000.0  # a wall clock reading, ms


def via_wire(message: dict[str, Any]) -> dict[str, Any]:
    """What the client decodes when the node sends `message`."""
    return decode(server_encode(message, Encoding.MSGPACK))


def welcome(seq: int, recovered: bool = False, status: str = "live") -> dict[str, Any]:
    fields = {"role": "citizen", "sub": "c-1", "name": "सीता", "th": "th1", "title": "t", "status": status}
    return via_wire({"t": "welcome", **fields, "seq": seq, "recovered": recovered})


def snapshot(seq: int, questions: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    fields = {"status": "live", "speech": [], "questions": questions or [], "viewers": 3, **extra}
    return via_wire({"t": "snapshot", "seq": seq, **fields})


def speech(seq: int, text: str = "नमस्ते") -> dict[str, Any]:
    return via_wire({"t": "speech", "seq": seq, "text": text, "final": True, "ts": int(WALL)})


def question(seq: int, qid: str, state: str) -> dict[str, Any]:
    q = {"qid": qid, "text": "सवाल", "name": "n", "region": "", "votes": 0, "state": state, "pinned": False, "ts": 1}
    return via_wire({"t": "question", "seq": seq, "ts": 1, "q": q})


def joined(seq: int = 5) -> ClientSession:
    session = ClientSession()
    session.handle(welcome(seq), T0, WALL)
    session.handle(snapshot(seq), T0, WALL)
    return session


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.error]


# Encoding


def test_first_hello_has_no_last_seq_and_the_node_accepts_it() -> None:
    hello = ClientSession().hello("tok")
    assert hello == {"t": "hello", "token": "tok"}
    parsed = parse_client_message(server_decode(encode(hello), Encoding.MSGPACK), Limits(), Encoding.MSGPACK)
    assert parsed == Hello(token="tok")


def test_hello_after_events_resumes_from_the_last_applied_seq() -> None:
    session = joined(5)
    session.handle(speech(6), T0, WALL)
    session.handle(speech(7), T0, WALL)
    assert session.hello("tok") == {"t": "hello", "token": "tok", "last_seq": 7}
    assert not session.welcomed  # nothing but hello until the next welcome


def test_every_request_the_users_build_is_valid_for_the_node() -> None:
    session = joined()
    messages = [
        session.ask("क्या सड़क बनेगी?", T0),
        session.upvote("q1", T0),
        session.request("speech_ack", {"t": "speech", "text": stamp_speech("भाषण", WALL), "final": False}, T0),
        session.request("moderate_ack", {"t": "moderate", "qid": "q1", "action": "approve"}, T0),
        {"t": "react", "kind": "clap"},
        {"t": "leave"},
    ]
    for message in messages:
        wire = server_decode(encode(message), Encoding.MSGPACK)
        parse_client_message(wire, Limits(), Encoding.MSGPACK)  # raises ProtocolViolation if the node would refuse
    assert [m.get("id") for m in messages[:4]] == [1, 2, 3, 4]


def test_decode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(ValueError):
        decode(msgpack.packb([1, 2]))
    with pytest.raises(ValueError):
        decode(msgpack.packb({"x": 1}))


def test_close_code_of_a_close_frame_payload() -> None:
    assert close_code(b"\x0f\xa1slow") == 4001
    assert close_code(b"") == 1005


# The speech stamp


def test_speech_stamp_round_trip_survives_the_nodes_text_cleaning() -> None:
    text = stamp_speech("भाइयों और बहनों", 1_800_000_000_123.4)
    assert parse_stamp(clean_text(text, multiline=True)) == pytest.approx(1_800_000_000_123.4)
    assert parse_stamp("a speech nobody stamped") is None
    assert parse_stamp("[lt:12] too short to be a time") is None


# Welcome, snapshot, events


def test_welcome_and_snapshot_set_the_state() -> None:
    session = ClientSession()
    assert session.handle(welcome(9, status="scheduled"), T0, WALL) == []
    assert session.welcomed and session.status == "scheduled" and session.sub == "c-1"
    out = session.handle(snapshot(9, questions=[question(3, "q3", "approved")["q"]]), T0, WALL)
    assert out == []
    assert session.stream.last_seq == 9 and session.public_questions == {"q3"} and session.approved == ["q3"]


def test_live_speech_reports_delivery_latency_from_the_stamp() -> None:
    session = joined(5)
    out = session.handle(speech(6, stamp_speech("भाषण", WALL - 42.0)), T0, WALL, size=77)
    assert out == [Outcome(SPEECH_DELIVERY, pytest.approx(42.0), 77)]  # type: ignore[arg-type]


def test_unstamped_speech_and_replayed_speech_are_not_latency_samples() -> None:
    session = joined(5)
    assert session.handle(speech(6, "no stamp"), T0, WALL) == []
    session.connection_lost(T0)
    session.hello("tok")
    session.handle(welcome(8, recovered=True), T0, WALL)
    # seq 7 and 8 are the replay: they waited for our reconnect, so their age is not delivery latency.
    assert session.handle(speech(7, stamp_speech("x", WALL - 5000)), T0, WALL) == []
    assert session.handle(speech(8, stamp_speech("x", WALL - 4000)), T0, WALL) == []
    live = session.handle(speech(9, stamp_speech("x", WALL - 10)), T0, WALL)
    assert [(o.name, o.ms) for o in live] == [(SPEECH_DELIVERY, pytest.approx(10.0))]


def test_question_events_keep_the_upvotable_and_answerable_lists() -> None:
    session = joined(5)
    session.handle(question(6, "q1", "approved"), T0, WALL)
    session.handle(question(7, "q2", "approved"), T0, WALL)
    session.handle(question(8, "q1", "answered"), T0, WALL)
    assert session.public_questions == {"q1", "q2"} and session.approved == ["q2"]
    session.handle(question(9, "q2", "rejected"), T0, WALL)
    assert session.public_questions == {"q1"} and session.approved == []


def test_moderator_queue_follows_queue_add_and_update() -> None:
    session = ClientSession("moderator")
    session.handle(welcome(0), T0, WALL)
    pending = {"qid": "q1", "text": "t", "name": "n", "region": "", "votes": 0, "state": "pending", "pinned": False}
    pending |= {"ts": 1, "sub": "c", "flags": []}
    session.handle(snapshot(0, queue=[pending]), T0, WALL)
    session.handle(via_wire({"t": "queue_add", "q": {**pending, "qid": "q2"}}), 101, WALL)
    assert session.queue == {"q1": T0, "q2": 101}
    update = {"t": "queue_update", "qid": "q1", "state": "approved", "pinned": False, "by": "m", "reason": ""}
    session.handle(via_wire(update), T0, WALL)
    assert list(session.queue) == ["q2"]


def test_moderators_claim_the_oldest_question_nobody_else_holds() -> None:
    session = ClientSession("moderator")
    session.handle(welcome(0), T0, WALL)  # our sub is c-1 (welcome() above)
    session.queue = {"q1": 1.0, "q2": 2.0, "q3": 3.0}
    session.handle(via_wire({"t": "claim_update", "qid": "q1", "by": "m-other", "until": 9}), T0, WALL)
    assert session.next_to_claim() == "q2"
    claim = session.request("claim_ack", {"t": "claim", "qid": "q2"}, T0)
    parse_client_message(server_decode(encode(claim), Encoding.MSGPACK), Limits(), Encoding.MSGPACK)
    session.handle(via_wire({"t": "ack", "re": claim["id"], "qid": "q2", "until": 9}), T0, WALL)
    assert session.my_claims == ["q2"]
    session.handle(via_wire({"t": "claim_update", "qid": "q1", "by": None, "until": 0}), T0, WALL)
    assert session.next_to_claim() == "q1" and session.next_to_claim() == "q3" and session.next_to_claim() is None


def test_a_node_without_claims_lets_moderators_decide_directly() -> None:
    session = ClientSession("moderator")
    session.handle(welcome(0), T0, WALL)
    claim = session.request("claim_ack", {"t": "claim", "qid": "q2"}, T0)
    unknown = via_wire({"t": "error", "re": claim["id"], "code": "unknown_type", "msg": "x"})
    assert session.handle(unknown, T0, WALL) == [] and not session.claims_supported


def test_unknown_and_aggregate_messages_are_ignored() -> None:
    session = joined(5)
    for message in ({"t": "viewers", "n": 12}, {"t": "votes", "v": {"q1": 3}}, {"t": "pong"}, {"t": "poll", "x": 1}):
        assert session.handle(via_wire(message), T0, WALL) == []
    assert session.viewers == 12 and session.stream.last_seq == 5


# Acks


def test_ask_ack_reports_its_latency_and_dup_acks_are_counted() -> None:
    session = joined()
    ask = session.ask("सवाल", T0)
    out = session.handle(via_wire({"t": "ack", "re": ask["id"], "key": ask["key"], "qid": "q1"}), T0 + 0.25, WALL)
    assert [(o.name, o.ms, o.error) for o in out] == [(ASK_ACK, pytest.approx(250.0), None)]
    again = session.ask("सवाल", T0)
    session.handle(via_wire({"t": "ack", "re": again["id"], "key": again["key"], "qid": "q1", "dup": True}), T0, WALL)
    assert session.acks == 2 and session.dup_acks == 1 and not session.pending


def test_an_error_answer_is_a_failure_unless_it_is_an_expected_race() -> None:
    session = joined()
    ask = session.ask("सवाल", T0)
    out = session.handle(via_wire({"t": "error", "re": ask["id"], "code": "too_long", "msg": "x"}), T0, WALL)
    assert [(o.name, o.error) for o in out] == [(ASK_ACK, "error too_long")] and not session.pending
    upvote = session.upvote("q9", T0)  # the question was withdrawn meanwhile: bad_state is a race, not a fault
    out = session.handle(via_wire({"t": "error", "re": upvote["id"], "code": "bad_state", "msg": "x"}), T0, WALL)
    assert failures(out) == [] and session.ok_errors == 1
    own = session.upvote("q1", T0)  # a random public question that was the user's own: refused, not a fault
    out = session.handle(via_wire({"t": "error", "re": own["id"], "code": "own_question", "msg": "x"}), T0, WALL)
    assert failures(out) == [] and session.ok_errors == 2


def test_an_answer_to_nothing_we_wait_for_is_ignored() -> None:
    assert joined().handle(via_wire({"t": "ack", "re": 99, "seq": 3}), T0, WALL) == []


def test_awaiting_acks_counts_only_what_a_drop_would_lose() -> None:
    session = joined()
    ask = session.ask("सवाल", T0)
    assert not session.awaiting_acks()  # idempotent: resent after a reconnect, a leave does not lose it
    speech_req = session.request("speech_ack", {"t": "speech", "text": "x"}, T0)
    assert session.awaiting_acks()
    session.handle(via_wire({"t": "ack", "re": speech_req["id"], "seq": 4}), T0 + 0.1, WALL)
    assert not session.awaiting_acks()
    assert ask["id"] in session.pending


def test_after_a_drop_idempotent_requests_are_resent_and_reported_apart() -> None:
    session = joined()
    ask = session.ask("सवाल", T0)
    speech_req = session.request("speech_ack", {"t": "speech", "text": "x"}, T0)
    lost = session.connection_lost(T0 + 1)
    assert [(o.name, o.error) for o in lost] == [("speech_ack", "connection lost before the ack")]
    assert not session.welcomed
    session.hello("tok")
    session.handle(welcome(5, recovered=True), T0 + 3, WALL)
    assert session.resend(T0 + 3) == [ask]  # same id, same key: the node answers a duplicate with dup: true
    out = session.handle(via_wire({"t": "ack", "re": ask["id"], "key": ask["key"], "qid": "q1"}), T0 + 3.5, WALL)
    assert [(o.name, o.ms) for o in out] == [(ASK_ACK_RESENT, pytest.approx(3500.0))]
    assert speech_req["id"] not in session.pending


def test_requests_without_an_answer_expire_as_failures() -> None:
    session = joined()
    session.ask("सवाल", T0)
    assert session.expire(T0 + 10, timeout_s=30) == []
    out = session.expire(T0 + 31, timeout_s=30)
    assert [(o.name, o.error) for o in out] == [(ASK_ACK, "no ack within 30 s")] and not session.pending


# Gap detection


def test_consecutive_events_are_no_gap() -> None:
    session = joined(5)
    for seq in (6, 7, 8):
        assert failures(session.handle(speech(seq), T0, WALL)) == []
    assert session.stream.lost == 0


def test_a_hole_in_the_stream_is_a_gap_sized_by_the_events_lost() -> None:
    session = joined(5)
    session.handle(speech(6), T0, WALL)
    out = failures(session.handle(speech(9), T0, WALL))
    assert [(o.name, o.size, o.error) for o in out] == [(STREAM_GAP, 2, "events missing (seq gap)")]
    assert "expected seq 7, got 9" in out[0].detail
    assert session.stream.lost == 2 and session.stream.last_seq == 9


def test_an_event_seen_twice_is_a_duplicate_and_not_applied() -> None:
    session = joined(5)
    session.handle(question(6, "q1", "approved"), T0, WALL)
    out = session.handle(question(6, "q1", "approved"), T0, WALL)
    assert [o.name for o in out] == [STREAM_DUPLICATE]
    assert session.stream.duplicates == 1 and session.approved == ["q1"]


def test_a_resume_whose_replay_fills_the_hole_loses_nothing() -> None:
    session = joined(5)
    session.handle(speech(6), T0, WALL)
    session.connection_lost(T0)
    assert session.hello("tok")["last_seq"] == 6
    outcomes = session.handle(welcome(9, recovered=True), T0, WALL)
    for seq in (7, 8, 9, 10):  # replay 7..9, then live 10
        outcomes += session.handle(speech(seq), T0, WALL)
    assert failures(outcomes) == []
    assert session.stream.lost == 0 and session.stream.resumes == 1


def test_a_resume_answered_with_a_snapshot_counts_the_skipped_events_as_lost() -> None:
    session = joined(5)
    session.connection_lost(T0)
    session.hello("tok")
    session.handle(welcome(1200, recovered=False), T0, WALL)
    out = session.handle(snapshot(1200), T0, WALL)
    assert [(o.name, o.size) for o in out] == [(STREAM_GAP, 1195)]
    assert session.stream.unrecovered == 1 and session.stream.last_seq == 1200


def test_a_resume_that_replays_nothing_new_is_fine() -> None:
    tracker = StreamTracker()
    tracker.on_welcome(4, recovered=False)
    assert tracker.on_snapshot(4) is None
    tracker.on_welcome(4, recovered=True)
    assert tracker.on_event(5) == (True, None)
    assert tracker.on_snapshot(3) is None and tracker.last_seq == 5  # an older snapshot never moves us back


def test_rate_limited_requests_wait_retry_ms_then_go_again_with_the_same_key() -> None:
    session = joined()
    ask = session.ask("सवाल", T0)
    limited = via_wire({"t": "error", "re": ask["id"], "code": "rate_limited", "msg": "x", "retry_ms": 2500})
    out = session.handle(limited, T0 + 0.01, WALL)
    assert [(o.name, o.error) for o in out] == [(ASK_ACK + RATE_LIMITED, None)]  # a limit, not a failure
    assert session.due(T0 + 2) == [] and session.resend(T0 + 2) == []  # not before retry_ms, not even on reconnect
    assert session.expire(T0 + 100, timeout_s=30) == []  # waiting out a limit is not a lost ack
    assert session.due(T0 + 2.6) == [ask]
    out = session.handle(via_wire({"t": "ack", "re": ask["id"], "key": ask["key"], "qid": "q1"}), T0 + 3, WALL)
    assert [(o.name, o.ms) for o in out] == [(ASK_ACK_RESENT, pytest.approx(3000.0))]


def test_a_request_limited_too_often_fails() -> None:
    session = joined()
    ask = session.ask("सवाल", T0)
    limited = via_wire({"t": "error", "re": ask["id"], "code": "rate_limited", "msg": "x", "retry_ms": 10})
    for _ in range(MAX_RETRIES):
        assert failures(session.handle(limited, T0, WALL)) == []
        session.due(T0 + 1)
    assert [o.error for o in session.handle(limited, T0, WALL)] == ["error rate_limited"]


def test_any_message_with_a_seq_is_a_stream_event_even_of_a_type_we_do_not_know() -> None:
    session = joined(5)
    session.handle(via_wire({"t": "settings", "seq": 6, "ts": 1, "slow_mode": 30}), T0, WALL)
    session.handle(via_wire({"t": "some_future_event", "seq": 7}), T0, WALL)
    assert failures(session.handle(speech(8), T0, WALL)) == [] and session.stream.last_seq == 8
    # An ack's seq is the seq its action got, not an event: it must not move the stream.
    speech_req = session.request("speech_ack", {"t": "speech", "text": "x"}, T0)
    session.handle(via_wire({"t": "ack", "re": speech_req["id"], "seq": 9}), T0, WALL)
    assert session.stream.last_seq == 8 and failures(session.handle(speech(9), T0, WALL)) == []


def poll(seq: int, pid: str, state: str, options: int = 3) -> dict[str, Any]:
    p = {"pid": pid, "question": "?", "options": [str(i) for i in range(options)], "state": state}
    p["counts"] = [0] * options
    return via_wire({"t": "poll", "seq": seq, "ts": 1, "p": p})


def test_polls_open_and_close_and_each_is_voted_once() -> None:
    session = ClientSession()
    session.handle(welcome(4), T0, WALL)
    session.handle(snapshot(4, polls=[poll(3, "p1", "open", 4)["p"], poll(2, "p0", "closed")["p"]]), T0, WALL)
    assert session.open_polls == {"p1": 4}
    session.handle(poll(5, "p2", "open", 2), T0, WALL)
    vote = session.poll_vote("p2", 1, T0)
    assert vote["pid"] == "p2" and vote["option"] == 1 and "key" in vote and session.voted == {"p2"}
    if "poll_vote" in CLIENT_MESSAGES:  # polls arrived in the node after v1's first release
        parse_client_message(server_decode(encode(vote), Encoding.MSGPACK), Limits(), Encoding.MSGPACK)
    session.handle(poll(6, "p1", "closed", 4), T0, WALL)
    assert session.open_polls == {"p2": 2}


def test_the_leader_learns_the_pid_of_its_poll_and_a_node_without_polls_is_left_alone() -> None:
    session = joined()
    create = session.request("poll_create_ack", {"t": "poll_create", "question": "?", "options": ["a", "b"]}, T0)
    session.handle(via_wire({"t": "ack", "re": create["id"], "pid": "p7"}), T0, WALL)
    assert session.created_polls == ["p7"] and session.polls_supported
    create = session.request("poll_create_ack", {"t": "poll_create", "question": "?", "options": ["a", "b"]}, T0)
    unknown = via_wire({"t": "error", "re": create["id"], "code": "unknown_type", "msg": "x"})
    assert session.handle(unknown, T0, WALL) == [] and not session.polls_supported


def test_citizens_spread_over_loopback_addresses_only_on_loopback() -> None:
    url = "ws://127.0.0.1:8000/ws"
    assert [source_ip(url, i, 10, 0) for i in (0, 9, 10, 2499, 2500)] == [
        "127.100.0.1",
        "127.100.0.1",
        "127.100.0.2",
        "127.100.0.250",
        "127.100.1.1",
    ]
    assert source_ip(url, 0, 10, 3) == "127.103.0.1"  # another locust process on this machine
    assert source_ip(url, 5, 0, 0) is None  # turned off
    assert source_ip("wss://townhall.example.org/ws", 5, 10, 0) is None
    assert source_ip("ws://10.0.0.5:8000/ws", 5, 10, 0) is None
    assert ws_url("http://127.0.0.1:8000") == url and ws_url("https://a.example/") == "wss://a.example/ws"


def test_these_modules_keep_locust_and_gevent_out_of_the_test_process() -> None:
    # locust monkey-patches the standard library on import; the test suite must never have imported it.
    assert "locust" not in sys.modules and "gevent" not in sys.modules


def test_flaky_citizens_report_latencies_apart_but_losses_under_the_common_name() -> None:
    session = ClientSession("citizen", suffix=FLAKY)
    session.handle(welcome(5), T0, WALL)
    session.handle(snapshot(5), T0, WALL)
    ask = session.ask("सवाल", T0)
    out = session.handle(speech(6, stamp_speech("x", WALL - 3)), T0, WALL)
    out += session.handle(via_wire({"t": "ack", "re": ask["id"], "key": ask["key"], "qid": "q1"}), T0, WALL)
    out += session.handle(speech(8), T0, WALL)
    assert [o.name for o in out] == [SPEECH_DELIVERY_FLAKY, ASK_ACK + FLAKY, STREAM_GAP]


def test_a_staff_resume_answered_with_its_documented_snapshot_loses_nothing() -> None:
    # Moderators and admins always get a snapshot (docs/protocol.md, section 3). A CI run of the rolling restart once
    # failed on a moderator whose reconnect raced a public event: that snapshot replaces the state, nothing is lost.
    session = ClientSession(role="moderator")
    session.handle(via_wire({**welcome(5), "role": "moderator"}), T0, WALL)
    session.handle(snapshot(5, queue=[]), T0, WALL)
    session.connection_lost(T0)
    assert session.hello("tok")["last_seq"] == 5
    session.handle(via_wire({**welcome(9), "role": "moderator"}), T0, WALL)
    out = session.handle(snapshot(9, queue=[]), T0, WALL)
    assert failures(out) == []
    assert session.stream.lost == 0 and session.stream.resynced == 1 and session.stream.last_seq == 9
    assert failures(session.handle(speech(10), T0, WALL)) == [] and session.stream.last_seq == 10


def test_a_citizen_snapshot_after_a_staff_session_still_counts_as_lost() -> None:
    # The role comes from each welcome, not from who the locust user was created as.
    session = ClientSession(role="moderator")
    session.handle(welcome(5), T0, WALL)  # the node says citizen
    session.handle(snapshot(5), T0, WALL)
    session.connection_lost(T0)
    session.hello("tok")
    session.handle(welcome(9), T0, WALL)
    assert [o.name for o in failures(session.handle(snapshot(9), T0, WALL))] == [STREAM_GAP]
