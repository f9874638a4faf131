"""The whole town hall over real sockets: leader, moderator and citizens, on both wire encodings."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from jansamvad.models import PollState
from jansamvad.protocol.codes import CloseCode
from jansamvad.server import RunningServer
from tests.helpers import RawClient, Session, joined, make_hall

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_townhall_flow_speech_question_moderation_answer(server: RunningServer, encoding: str) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    moderator = await joined(server, hall.moderator)
    citizen = await Session.open(server, encoding)
    welcome, snapshot = await citizen.hello(hall.citizen_token())
    assert welcome["role"] == "citizen" and welcome["status"] == "scheduled" and welcome["name"] == "सीता"
    assert snapshot is not None and snapshot["questions"] == [] and "queue" not in snapshot

    ack = await leader.request({"t": "go_live"})
    assert ack["t"] == "ack"
    status = await citizen.recv_until(lambda m: m["t"] == "status")
    assert (status["status"], status["seq"]) == ("live", ack["seq"])

    ack = await leader.request({"t": "speech", "text": "नमस्ते बिहार, आज हम सड़कों पर बात करेंगे।"})
    speech = await citizen.recv_until(lambda m: m["t"] == "speech")
    assert speech["text"] == "नमस्ते बिहार, आज हम सड़कों पर बात करेंगे।" and speech["seq"] == ack["seq"]

    ack = await citizen.request({"t": "ask", "key": "key-0001", "text": "हमारे गाँव में सड़क कब बनेगी?"})
    assert ack["t"] == "ack" and ack["key"] == "key-0001" and "dup" not in ack
    qid = ack["qid"]
    queued = await moderator.recv_until(lambda m: m["t"] == "queue_add")
    assert queued["q"]["qid"] == qid and queued["q"]["state"] == "pending" and queued["q"]["region"] == "Patna"

    ack = await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    assert ack["state"] == "approved"
    public = await citizen.recv_until(lambda m: m["t"] == "question")
    assert public["q"]["qid"] == qid and public["q"]["state"] == "approved"
    assert "sub" not in public["q"], "the public question must not reveal the author's id"

    own = await citizen.request({"t": "upvote", "qid": qid})
    assert own["code"] == "own_question"  # an asker cannot push their own question up
    neighbour = await joined(server, hall.citizen_token(sub="c-neighbour"))
    ack = await neighbour.request({"t": "upvote", "qid": qid})
    assert ack["votes"] == 1
    votes = await citizen.recv_until(lambda m: m["t"] == "votes" and m["v"].get(qid) == 1)
    assert votes["v"] == {qid: 1} and votes["g"] == {qid: 1}

    ack = await leader.request({"t": "moderate", "qid": qid, "action": "answer"})
    assert ack["state"] == "answered"
    answered = await citizen.recv_until(lambda m: m["t"] == "question")
    assert answered["q"]["state"] == "answered"

    # Viewers are the citizens (the asker and the neighbour); the leader and the moderator are staff.
    viewers = await citizen.recv_until(lambda m: m["t"] == "viewers" and m["n"] == 2, skipped=True)
    assert (viewers["n"], viewers["staff"]) == (2, 2)

    await leader.request({"t": "end"})
    ended = await citizen.recv_until(lambda m: m["t"] == "status")
    assert ended["status"] == "ended"
    code, _ = await citizen.expect_close()
    assert code == 4005


async def test_townhall_second_citizen_sees_approved_question_in_snapshot(server: RunningServer) -> None:
    hall = await make_hall(server)
    moderator = await joined(server, hall.moderator)
    first = await joined(server, hall.citizen_token(sub="c-first"))
    ack = await first.request({"t": "ask", "key": "key-0002", "text": "बिजली कब आएगी?"})
    await moderator.request({"t": "moderate", "qid": ack["qid"], "action": "approve"})
    second = await Session.open(server)
    _, snapshot = await second.hello(hall.citizen_token(sub="c-second"))
    assert snapshot is not None
    assert [q["text"] for q in snapshot["questions"]] == ["बिजली कब आएगी?"]


async def test_townhall_moderator_snapshot_has_the_pending_queue(server: RunningServer) -> None:
    hall = await make_hall(server)
    citizen = await joined(server, hall.citizen_token())
    await citizen.request({"t": "ask", "key": "key-0003", "text": "पानी?"})
    moderator = await Session.open(server)
    _, snapshot = await moderator.hello(hall.moderator)
    assert snapshot is not None and [q["text"] for q in snapshot["queue"]] == ["पानी?"]


async def test_townhall_ask_retry_with_same_key_is_not_duplicated(server: RunningServer) -> None:
    hall = await make_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token())
    first = await citizen.request({"t": "ask", "key": "retry-key-1", "text": "एक ही सवाल"})
    await citizen.close()
    # The same citizen reconnects (a new connection) and resends its outbox entry with the same key.
    again = await joined(server, hall.citizen_token())
    second = await again.request({"t": "ask", "key": "retry-key-1", "text": "एक ही सवाल"})
    assert second["qid"] == first["qid"] and second["dup"] is True
    pending = await server.node.store.questions(hall.th, ["pending"])  # type: ignore[list-item]
    assert len(pending) == 1
    queued = await moderator.recv_until(lambda m: m["t"] == "queue_add")
    assert queued["q"]["qid"] == first["qid"]


async def test_townhall_upvote_counts_once_per_user(server: RunningServer) -> None:
    hall = await make_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token(sub="c-asker"))
    qid = (await citizen.request({"t": "ask", "key": "key-0004", "text": "सवाल"}))["qid"]
    await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    voter = await joined(server, hall.citizen_token(sub="c-voter"))
    assert (await voter.request({"t": "upvote", "qid": qid}))["votes"] == 1
    again = await voter.request({"t": "upvote", "qid": qid})
    assert again["votes"] == 1 and again["dup"] is True


async def test_townhall_reactions_arrive_as_totals_not_per_tap(server: RunningServer) -> None:
    hall = await make_hall(server)
    watcher = await joined(server, hall.citizen_token(sub="c-watch"))
    tapper = await joined(server, hall.citizen_token(sub="c-tap"))
    for _ in range(15):
        await tapper.send({"t": "react", "kind": "clap"})
    totals = await watcher.recv_until(lambda m: m["t"] == "reactions" and m["c"].get("clap") == 15, timeout=3)
    assert totals["c"] == {"clap": 15}


async def test_townhall_audio_chunks_reach_citizens_and_late_joiners_get_init(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    citizen = await joined(server, hall.citizen_token(sub="c-early"), mode="audio")  # audio is opt-in
    await leader.request({"t": "go_live"})
    await leader.send({"t": "audio", "data": b"\x1aE\xdf\xa3init", "init": True, "mime": "audio/webm;codecs=opus"})
    await leader.send({"t": "audio", "data": b"chunk-2"})
    first = await citizen.recv_until(lambda m: m["t"] == "audio")
    second = await citizen.recv_until(lambda m: m["t"] == "audio")
    assert (first["data"], first["init"], second["data"], second["n"]) == (b"\x1aE\xdf\xa3init", True, b"chunk-2", 2)
    late = await Session.open(server)
    await late.hello(hall.citizen_token(sub="c-late"), mode="audio")
    init = await late.recv_until(lambda m: m["t"] == "audio")
    assert init["init"] is True and init["data"] == b"\x1aE\xdf\xa3init"


async def test_townhall_json_session_gets_audio_as_base64(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    citizen = await joined(server, hall.citizen_token(), encoding="json", mode="audio")
    await leader.request({"t": "go_live"})
    await leader.send({"t": "audio", "data": b"\x00\x01"})
    chunk = await citizen.recv_until(lambda m: m["t"] == "audio")
    assert chunk["data"] == "AAE="


async def test_townhall_ping_gets_pong_and_leave_closes_normally(server: RunningServer) -> None:
    hall = await make_hall(server)
    citizen = await joined(server, hall.citizen_token())
    await citizen.send({"t": "ping"})
    assert (await citizen.recv_until(lambda m: m["t"] == "pong"))["t"] == "pong"
    await citizen.send({"t": "leave"})
    code, _ = await citizen.expect_close()
    assert code == 1000


async def test_townhall_admin_token_joins_any_townhall_as_staff(server: RunningServer) -> None:
    hall = await make_hall(server)
    admin = await Session.open(server)
    welcome, snapshot = await admin.hello(hall.admin, th=hall.th)
    assert welcome["role"] == "admin" and snapshot is not None and "queue" in snapshot


async def test_townhall_poll_open_after_the_end_is_refused(server: RunningServer) -> None:
    # `end` closes every open poll (docs/protocol.md section 4): an admin, who may still join an ended town hall,
    # must not open one afterwards (it would stay open, and vote-less, for good).
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    pid = (await leader.request({"t": "poll_create", "question": "ठीक?", "options": ["हाँ", "नहीं"]}))["pid"]
    await leader.request({"t": "end"})
    admin = await joined(server, hall.admin, th=hall.th)
    answer = await admin.request({"t": "poll_open", "pid": pid})
    assert (answer["t"], answer["code"]) == ("error", "bad_state")
    assert [p.state for p in await server.node.store.polls(hall.th, PollState)] == [PollState.DRAFT]


async def test_townhall_shutdown_tells_clients_to_reconnect_then_closes_1012(make_server: Any) -> None:
    server = await make_server(close_timeout_s=1.0)
    hall = await make_hall(server)
    citizen = await joined(server, hall.citizen_token())
    stopping = asyncio.get_running_loop().create_task(server.stop())
    notice = await citizen.recv_until(lambda m: m["t"] == "reconnect")
    assert 0 <= notice["after_ms"] < 5000
    code, _ = await citizen.expect_close()
    assert code == 1012
    await stopping


async def read_messages_until(client: RawClient, done: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The node's messages to a raw client, in order, until `done(messages)` holds."""
    messages: list[dict[str, Any]] = []
    while not done(messages):
        opcode, payload = await client.read_frame(timeout)
        if opcode == 0x8:
            raise AssertionError(f"closed: {int.from_bytes(payload[:2], 'big')} {payload[2:].decode()}")
        messages.append(msgpack.unpackb(payload, raw=False))
    return messages


async def test_session_messages_sent_before_the_welcome_are_handled_after_the_join(server: RunningServer) -> None:
    # A client that pipelines (hello, then at once what it wants) must not be closed as a bad hello: the messages
    # wait for the join and are answered in order after the welcome (docs/protocol.md section 1).
    hall = await make_hall(server)
    client = await RawClient.open(server)
    hello = {"t": "hello", "token": hall.citizen_token()}
    client.send_messages(hello, {"t": "ping", "id": 7}, {**hello, "id": 9})
    messages = await read_messages_until(client, lambda got: any(m.get("re") == 9 for m in got))
    kinds = [m["t"] for m in messages]
    assert kinds[0] == "welcome"
    pong = next(i for i, m in enumerate(messages) if m["t"] == "pong")
    error = next(i for i, m in enumerate(messages) if m.get("re") == 9)
    assert messages[pong]["re"] == 7 and pong < error
    assert messages[error]["code"] == "already_joined"


async def test_session_too_many_messages_before_the_welcome_is_a_bad_hello(server: RunningServer) -> None:
    hall = await make_hall(server)
    client = await RawClient.open(server)
    pings = [{"t": "ping", "id": n} for n in range(40)]
    client.send_messages({"t": "hello", "token": hall.citizen_token()}, *pings)  # all read before the join is done
    assert await client.close_code() == CloseCode.BAD_HELLO
