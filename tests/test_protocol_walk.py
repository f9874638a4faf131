"""Walk every client message type of docs/protocol.md section 4 over a real socket and check its documented answer."""

from __future__ import annotations

from typing import Any

import pytest

from jansamvad.models import PollState, Status
from jansamvad.protocol.messages import CLIENT_MESSAGES
from jansamvad.protocol.roles import Role
from jansamvad.server import RunningServer
from tests.helpers import Session, joined, make_hall

pytestmark = pytest.mark.anyio

# type -> (who sends it, the message, the documented answer: the `t` it gets back, or None for no answer)
WALK: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "ping": ("citizen", {"t": "ping"}, "pong"),
    "ask": ("citizen", {"t": "ask", "id": 1, "key": "walk-key-1", "text": "प्रश्न"}, "ack"),
    "upvote": ("citizen", {"t": "upvote", "id": 2, "qid": "q1"}, "ack"),
    "react": ("citizen", {"t": "react", "kind": "heart"}, None),
    "speech": ("leader", {"t": "speech", "id": 3, "text": "भाषण"}, "ack"),
    "audio": ("leader", {"t": "audio", "data": b"\x00"}, None),
    "announce": ("leader", {"t": "announce", "id": 4, "text": "घोषणा"}, "ack"),
    "go_live": ("leader", {"t": "go_live", "id": 5}, "ack"),
    "moderate": ("moderator", {"t": "moderate", "id": 6, "qid": "q1", "action": "pin"}, "ack"),
    "poll_vote": ("citizen", {"t": "poll_vote", "id": 8, "pid": "p1", "option": 1}, "ack"),
    "poll_create": (
        "leader",
        {"t": "poll_create", "id": 9, "question": "सबसे ज़रूरी?", "options": ["सड़क", "बिजली"]},
        "ack",
    ),
    "poll_open": ("leader", {"t": "poll_open", "id": 10, "pid": "p2"}, "ack"),
    "poll_close": ("leader", {"t": "poll_close", "id": 11, "pid": "p1"}, "ack"),
    "claim": ("moderator", {"t": "claim", "id": 12, "qid": "q1"}, "ack"),
    "release": ("moderator", {"t": "release", "id": 13, "qid": "q1"}, "ack"),
    "restrict": ("moderator", {"t": "restrict", "id": 14, "sub": "c-asker", "action": "timeout", "seconds": 60}, "ack"),
    "slow_mode": ("leader", {"t": "slow_mode", "id": 15, "seconds": 30}, "ack"),
    "end": ("leader", {"t": "end", "id": 7}, "ack"),
    "mode": ("citizen", {"t": "mode", "id": 16, "mode": "audio"}, "ack"),
    "leave": ("citizen", {"t": "leave"}, None),
    "audience": ("screen", {"t": "audience", "id": 17, "people": 40}, "ack"),
}


def test_walk_covers_every_client_message_type() -> None:
    assert set(WALK) | {"hello"} == set(CLIENT_MESSAGES)


@pytest.mark.parametrize("name", sorted(WALK))
async def test_walk_client_message_gets_its_documented_answer(server: RunningServer, name: str) -> None:
    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    asker = await joined(server, hall.citizen_token(sub="c-asker"))
    qid = (await asker.request({"t": "ask", "key": "walk-setup", "text": "पहले"}))["qid"]
    await server.node.store.decide(hall.th, qid, "approve", "m-walk", "")
    first_poll = await server.node.store.create_poll(hall.th, "पहला", ["हाँ", "नहीं"])
    await server.node.store.set_poll_state(hall.th, first_poll.pid, PollState.OPEN, "l-walk")
    await server.node.store.create_poll(hall.th, "दूसरा", ["हाँ", "नहीं"])
    role, message, answer = WALK[name]
    tokens = {"citizen": hall.citizen_token(sub="c-walker"), "leader": hall.leader, "moderator": hall.moderator}
    tokens["screen"] = server.node.tokens.issue(sub="s-walker", role=Role.SCREEN, th=hall.th, ttl_s=600)[0]
    session = await joined(server, tokens[role])
    await session.send(message)
    if name == "leave":
        assert (await session.expect_close())[0] == 1000
        return
    if answer is None:  # fire-and-forget: nothing comes back, and the session goes on
        await session.send({"t": "ping"})
        assert (await session.recv_until(lambda m: m["t"] in ("pong", "error")))["t"] == "pong"
        return
    reply = await session.recv_until(lambda m: m["t"] in (answer, "error"))
    assert reply["t"] == answer, reply
    if "id" in message:
        assert reply["re"] == message["id"]


async def test_walk_hello_gets_welcome_then_snapshot(server: RunningServer) -> None:
    hall = await make_hall(server)
    session = await Session.open(server)
    welcome, snapshot = await session.hello(hall.citizen_token())
    assert welcome["t"] == "welcome" and snapshot is not None and snapshot["t"] == "snapshot"
