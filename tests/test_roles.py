"""The server checks the role on every message (docs/protocol.md, section 3): the whole matrix, over real sockets."""

from __future__ import annotations

from typing import Any

import pytest

from jansamvad.models import Status
from jansamvad.protocol.roles import Role
from jansamvad.server import RunningServer
from tests.helpers import Hall, Session, joined, make_hall

pytestmark = pytest.mark.anyio

# Each message a role may or may not send, in a form that is otherwise valid.
MESSAGES: dict[str, dict[str, Any]] = {
    "ask": {"t": "ask", "key": "role-test-1", "text": "सवाल"},
    "upvote": {"t": "upvote", "qid": "q1"},
    "speech": {"t": "speech", "text": "भाषण"},
    "announce": {"t": "announce", "text": "घोषणा"},
    "go_live": {"t": "go_live"},
    "end": {"t": "end"},
    "approve": {"t": "moderate", "qid": "q1", "action": "approve"},
    "reject": {"t": "moderate", "qid": "q1", "action": "reject"},
    "answer": {"t": "moderate", "qid": "q1", "action": "answer"},
    "pin": {"t": "moderate", "qid": "q1", "action": "pin"},
    "unpin": {"t": "moderate", "qid": "q1", "action": "unpin"},
    "poll_vote": {"t": "poll_vote", "pid": "p1", "option": 0},
    "poll_create": {"t": "poll_create", "question": "?", "options": ["a", "b"]},
    "poll_open": {"t": "poll_open", "pid": "p1"},
    "poll_close": {"t": "poll_close", "pid": "p1"},
    "claim": {"t": "claim", "qid": "q1"},
    "release": {"t": "release", "qid": "q1"},
    "restrict": {"t": "restrict", "sub": "c-asker", "action": "timeout"},
    "restrict_global": {"t": "restrict", "sub": "c-asker", "action": "ban", "scope": "global"},
    "slow_mode": {"t": "slow_mode", "seconds": 10},
    "audience": {"t": "audience", "people": 30},
}

ALLOWED = {
    "citizen": {"ask", "upvote", "poll_vote"},
    "moderator": {"approve", "reject", "answer", "pin", "unpin", "claim", "release", "restrict", "slow_mode"},
    "leader": {
        "speech",
        "announce",
        "go_live",
        "end",
        "answer",
        "pin",
        "unpin",
        "poll_create",
        "poll_open",
        "poll_close",
        "slow_mode",
    },
    # Citizens' actions are counted per citizen: an admin does not ask or vote (nor say it is a booth screen).
    "admin": set(MESSAGES) - {"ask", "upvote", "poll_vote", "audience"},
    # A booth screen listens and says how many people watch it: nothing else (jansamvad/screens.py).
    "screen": {"audience"},
}


async def session_for(server: RunningServer, hall: Hall, role: str) -> Session:
    if role == "citizen":
        return await joined(server, hall.citizen_token(sub="c-role"))
    if role == "admin":
        return await joined(server, hall.admin, th=hall.th)
    if role == "screen":
        return await joined(server, server.node.tokens.issue(sub="s-role", role=Role.SCREEN, th=hall.th, ttl_s=600)[0])
    return await joined(server, getattr(hall, role))


@pytest.mark.parametrize("role", sorted(ALLOWED))
@pytest.mark.parametrize("name", sorted(MESSAGES))
async def test_roles_every_message_is_checked(server: RunningServer, role: str, name: str) -> None:
    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    asker = await joined(server, hall.citizen_token(sub="c-asker"))
    await asker.request({"t": "ask", "key": "role-setup", "text": "पहले से पूछा गया"})  # q1 exists, pending
    session = await session_for(server, hall, role)
    answer = await session.request(MESSAGES[name])
    if name in ALLOWED[role]:
        assert answer.get("code") != "forbidden", answer
    else:
        assert (answer["t"], answer["code"]) == ("error", "forbidden"), answer


async def test_roles_citizen_never_sees_the_moderation_queue(server: RunningServer) -> None:
    hall = await make_hall(server)
    watcher = await Session.open(server)
    _, snapshot = await watcher.hello(hall.citizen_token(sub="c-watch"))
    assert snapshot is not None and "queue" not in snapshot
    asker = await joined(server, hall.citizen_token(sub="c-ask"))
    await asker.request({"t": "ask", "key": "queue-test", "text": "छुपा सवाल"})
    await watcher.send({"t": "ping"})
    seen = [await watcher.recv()]
    while seen[-1]["t"] != "pong":
        seen.append(await watcher.recv())
    assert not [m for m in seen if m["t"].startswith("queue")]


async def test_roles_leader_does_not_get_the_queue_but_moderator_does(server: RunningServer) -> None:
    hall = await make_hall(server)
    _, leader_snapshot = await (await Session.open(server)).hello(hall.leader)
    _, moderator_snapshot = await (await Session.open(server)).hello(hall.moderator)
    assert leader_snapshot is not None and "queue" not in leader_snapshot
    assert moderator_snapshot is not None and moderator_snapshot["queue"] == []


async def test_roles_citizen_of_another_townhall_cannot_act_here(server: RunningServer) -> None:
    hall = await make_hall(server)
    other = await make_hall(server, "दूसरा टाउन हॉल")
    session = await Session.open(server)
    await session.send({"t": "hello", "token": other.citizen_token(), "th": hall.th})
    assert (await session.expect_close())[0] == 4003


async def test_roles_moderator_token_cannot_moderate_another_townhall(server: RunningServer) -> None:
    hall = await make_hall(server)
    other = await make_hall(server, "दूसरा टाउन हॉल")
    session = await Session.open(server)
    await session.send({"t": "hello", "token": hall.moderator, "th": other.th})
    assert (await session.expect_close())[0] == 4003


async def test_roles_admin_token_needs_a_townhall(server: RunningServer) -> None:
    hall = await make_hall(server)
    session = await Session.open(server)
    await session.send({"t": "hello", "token": hall.admin})
    assert (await session.expect_close())[0] == 4000
