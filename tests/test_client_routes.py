"""The session's table of handlers (client.ROUTES) and its checks before a handler runs: role, rate, inline answers.

These run a `Client` without a socket: a stand-in connection keeps the frames the session writes and a stand-in node
has the real settings and metrics. Only the synchronous path is exercised (nothing reaches a store or a broker), so
no broker is mocked; the handlers themselves are walked over real sockets in test_protocol_walk.py and test_roles.py.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import msgpack
import pytest

from jansamvad.auth import Claims
from jansamvad.client import ROUTES, Client, Handling
from jansamvad.conn_state import ConnState
from jansamvad.metrics import NodeMetrics
from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.codes import CloseCode
from jansamvad.protocol.messages import CLIENT_MESSAGES, VERBS
from jansamvad.protocol.records import CLIENT_RECORDS
from jansamvad.protocol.roles import Role
from jansamvad.settings import Settings

# One otherwise valid message of every client type but hello, as msgpack bytes of the wire.
VALID: dict[str, dict[str, Any]] = {
    "ping": {"t": "ping", "id": 1},
    "leave": {"t": "leave"},
    "react": {"t": "react", "kind": "clap"},
    "ask": {"t": "ask", "id": 2, "key": "route-key-1", "text": "सवाल"},
    "upvote": {"t": "upvote", "id": 3, "qid": "q1"},
    "poll_vote": {"t": "poll_vote", "id": 4, "pid": "p1", "option": 0},
    "speech": {"t": "speech", "id": 5, "text": "भाषण"},
    "audio": {"t": "audio", "data": b"\x1a\x45"},
    "announce": {"t": "announce", "id": 6, "text": "घोषणा"},
    "go_live": {"t": "go_live", "id": 7},
    "end": {"t": "end", "id": 8},
    "poll_create": {"t": "poll_create", "id": 9, "question": "?", "options": ["a", "b"]},
    "poll_open": {"t": "poll_open", "id": 10, "pid": "p1"},
    "poll_close": {"t": "poll_close", "id": 11, "pid": "p1"},
    "moderate": {"t": "moderate", "id": 12, "qid": "q1", "action": "pin"},
    "slow_mode": {"t": "slow_mode", "id": 13, "seconds": 10},
    "claim": {"t": "claim", "id": 14, "qid": "q1"},
    "release": {"t": "release", "id": 15, "qid": "q1"},
    "restrict": {"t": "restrict", "id": 16, "sub": "c-1", "action": "timeout"},
}


class StandInConnection:
    """What a session uses of its connection, keeping the frames and the close."""

    def __init__(self) -> None:
        self.encoding = Encoding.MSGPACK
        self.state = ConnState.OPEN
        self.transport = None
        self.frames: list[bytes] = []
        self.closed: CloseCode | None = None

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: CloseCode, reason: str = "") -> None:
        self.closed = code

    def answers(self) -> list[dict[str, Any]]:
        # Server frames here are short and unmasked: a 2-byte header, then the payload.
        out = [msgpack.unpackb(frame[2:]) for frame in self.frames]
        self.frames.clear()
        return out


class StandInTally:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str, str]] = []

    def count(self, th: str, what: str, unit: str) -> None:
        self.counted.append((th, what, unit))


class StandInNode:
    """The node's settings, metrics and clock (the clock moves only when a test moves it)."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.metrics = NodeMetrics()
        self.clock = 100.0
        self.tally = StandInTally()
        self.reactions: list[str] = []

    def clock_precise(self) -> float:
        return self.clock

    def count_reaction(self, th: str, kind: str) -> None:
        self.reactions.append(kind)


def joined_client(role: Role) -> tuple[Client, StandInNode, StandInConnection]:
    node, conn = StandInNode(), StandInConnection()
    client = Client(cast(Any, node), cast(Any, conn))
    client.claims = Claims(sub=f"{role}-1", role=role, th="th1", name="", region="", exp=0)
    client.th = "th1"
    return client, node, conn


def wire(message: dict[str, Any]) -> bytes:
    return cast(bytes, msgpack.packb(message, use_bin_type=True))


def test_routes_name_every_client_message_type_once() -> None:
    assert {record.type for record in ROUTES} == set(CLIENT_MESSAGES)
    assert len(ROUTES) == len(CLIENT_MESSAGES) == len(CLIENT_RECORDS)
    handlers = [route.handler for route in ROUTES.values()]
    assert len(set(handlers)) == len(handlers)  # no handler serves two types


@pytest.mark.parametrize("record", list(ROUTES), ids=lambda record: record.type)
def test_routes_roles_are_the_documented_ones(record: Any) -> None:
    assert ROUTES[record].roles == CLIENT_MESSAGES[record.type].roles


@pytest.mark.parametrize("record", list(ROUTES), ids=lambda record: record.type)
def test_routes_handler_runs_where_its_handling_says(record: Any) -> None:
    route = ROUTES[record]
    worker = route.handling in (Handling.JOIN, Handling.QUEUED)
    assert inspect.iscoroutinefunction(route.handler) is worker


FORBIDDEN = [
    (name, role) for name, message in VALID.items() for role in Role if role not in CLIENT_MESSAGES[message["t"]].roles
]


@pytest.mark.parametrize(("name", "role"), FORBIDDEN)
def test_routes_role_that_may_not_send_gets_forbidden(name: str, role: Role) -> None:
    client, node, conn = joined_client(role)
    client.on_message(wire(VALID[name]))
    [answer] = conn.answers()
    what = VERBS[name]
    expected = {"t": "error", "code": "forbidden", "msg": f"a {role} may not {what}"}
    if "id" in VALID[name]:
        expected["re"] = VALID[name]["id"]
    assert answer == expected
    assert client.inbox is None and not node.reactions  # nothing was queued or counted


def test_routes_ping_is_answered_at_once_with_its_id() -> None:
    client, _, conn = joined_client(Role.CITIZEN)
    client.on_message(wire({"t": "ping", "id": 9}))
    client.on_message(wire({"t": "ping"}))
    assert conn.answers() == [{"t": "pong", "re": 9}, {"t": "pong"}]


def test_routes_leave_closes_normally() -> None:
    client, _, conn = joined_client(Role.MODERATOR)
    client.on_message(wire({"t": "leave"}))
    assert conn.closed is CloseCode.NORMAL and conn.answers() == []


def test_routes_hello_after_the_join_is_already_joined() -> None:
    client, _, conn = joined_client(Role.LEADER)
    client.on_message(wire({"t": "hello", "token": "x.y.z"}))
    [answer] = conn.answers()
    assert (answer["t"], answer["code"]) == ("error", "already_joined")


def test_routes_citizen_over_the_message_burst_is_told_when_to_come_back() -> None:
    client, node, conn = joined_client(Role.CITIZEN)
    burst = node.settings.citizen_msg_burst
    for _ in range(burst):
        client.on_message(wire({"t": "ping"}))
    client.on_message(wire({"t": "ping", "id": 5}))
    answers = conn.answers()
    assert answers[:burst] == [{"t": "pong"}] * burst
    # One message more than the burst: the next token comes in 1 / rate seconds.
    assert answers[burst] == {
        "t": "error",
        "code": "rate_limited",
        "msg": "too many messages",
        "re": 5,
        "retry_ms": int(1000 / node.settings.citizen_msgs_per_s),
    }
    node.clock += 1 / node.settings.citizen_msgs_per_s
    client.on_message(wire({"t": "ping", "id": 6}))
    assert conn.answers() == [{"t": "pong", "re": 6}]


def test_routes_staff_get_the_staff_burst() -> None:
    client, node, conn = joined_client(Role.MODERATOR)
    for _ in range(node.settings.staff_msg_burst):
        client.on_message(wire({"t": "ping"}))
    assert conn.answers() == [{"t": "pong"}] * node.settings.staff_msg_burst
    client.on_message(wire({"t": "ping"}))
    assert conn.answers()[0]["code"] == "rate_limited"


def test_routes_reactions_have_their_own_bucket_and_drop_silently() -> None:
    client, node, conn = joined_client(Role.CITIZEN)
    for _ in range(node.settings.reaction_burst + 5):
        client.on_message(wire({"t": "react", "kind": "heart"}))
    assert node.reactions == ["heart"] * node.settings.reaction_burst
    assert node.metrics.rate_limited["reactions"] == 5
    assert conn.answers() == []  # never an answer, over the rate or not
    client.on_message(wire({"t": "ping", "id": 1}))  # the message budget is untouched
    assert conn.answers() == [{"t": "pong", "re": 1}]


def test_routes_idle_session_holds_no_bucket() -> None:
    client, _, _ = joined_client(Role.CITIZEN)
    assert client.messages is None and client.reactions is None
