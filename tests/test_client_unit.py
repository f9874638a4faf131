"""The session logic (client.py) without a socket: a `Client` over a stand-in connection and a small owner that
implements `ClientOwner` with the real parts (memory store, token service, moderation policy, tally, metrics).
No broker is involved: `join` records what the node would have been asked to do."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from jansamvad.auth import TokenService
from jansamvad.broker.memory import MemoryBroker
from jansamvad.client import Client
from jansamvad.connection import ConnState, WsConnection
from jansamvad.join_reads import JoinReads
from jansamvad.limiter.memory import MemoryRateLimiter
from jansamvad.metrics import NodeMetrics
from jansamvad.models import Question, Townhall
from jansamvad.moderation.grouping import QuestionGrouper
from jansamvad.moderation.policy import Policy
from jansamvad.protocol.codec import Encoding, decode, encode
from jansamvad.protocol.codes import CloseCode
from jansamvad.protocol.roles import Role
from jansamvad.rollup.tally import UnitTally
from jansamvad.store.memory import MemoryStore
from tests.helpers import node_settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class FakeConnection:
    """What a Client touches of its WsConnection: frames out, close, the encoding and a few flags."""

    def __init__(self, *, staff_lane: bool = False) -> None:
        self.encoding = Encoding.JSON
        self.state = ConnState.OPEN
        self.transport = None
        self.staff_lane = staff_lane
        self.ip = "192.0.2.1"
        self.paused: list[tuple[str, int, bytes]] | None = None
        self.fast_write = None  # always the fan-out's checked path (write_broadcast)
        self.frames: list[bytes] = []
        self.closed: tuple[CloseCode, str] | None = None
        self.max_message_bytes = 0

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: CloseCode, detail: str = "") -> None:
        if self.closed is None:
            self.closed = (code, detail)
            self.state = ConnState.CLOSING

    def set_max_message_bytes(self, limit: int) -> None:
        self.max_message_bytes = limit

    def joining(self, device: str | None) -> bool:
        return True  # admission's per-device cap is the gateway's (tests/test_gateway.py)

    def joined(self) -> None:
        pass

    def messages(self) -> list[dict[str, Any]]:
        """The frames sent, decoded (JSON text frames: a 2-byte header for short ones)."""
        out = []
        for frame in self.frames:
            length = frame[1] & 0x7F
            start = 2 if length < 126 else 4
            out.append(decode(frame[start:], Encoding.JSON))
        return out


class FakeOwner:
    """A ClientOwner with real stores and services; `join` only records the call."""

    def __init__(self) -> None:
        self.settings = node_settings(citizen_msgs_per_s=1.0, citizen_msg_burst=2)
        self.metrics = NodeMetrics()
        self.tokens = TokenService(self.settings.secret)
        self.store = MemoryStore()
        self.join_reads = JoinReads(
            self.store, MemoryBroker(), snapshot_speech=10, top_votes=10, history_size=100, epoch=lambda: 0
        )
        self.limiter = MemoryRateLimiter()
        self.policy = Policy.load(self.settings.moderation_dir)
        self.tally = UnitTally()
        self.staff_joined = 0
        self.joins: list[tuple[Client, int | None]] = []
        self.left: list[Client] = []
        self.reactions: list[tuple[str, str]] = []

    @property
    def clock(self) -> float:
        return asyncio.get_running_loop().time()

    def clock_precise(self) -> float:
        return asyncio.get_running_loop().time()

    def count_reaction(self, th: str, kind: str) -> None:
        self.reactions.append((th, kind))

    async def grouper(self, th: str) -> QuestionGrouper:
        return QuestionGrouper(self.settings.group_threshold)

    async def join(self, client: Client, last_seq: int | None, townhall: Townhall, last_mseq: int | None) -> None:
        self.joins.append((client, last_seq))

    def abandon_join(self, client: Client) -> None:
        client.claims = None

    def leave(self, client: Client) -> None:
        self.left.append(client)

    async def publish_event(self, th: str, message: Mapping[str, Any]) -> int:
        return 1

    async def publish_event_once(self, th: str, message: Mapping[str, Any], key: str) -> tuple[int, bool]:
        return 1, False

    async def publish_moderation(self, th: str, message: Mapping[str, Any], key: str = "") -> int:
        return 1

    async def publish_question_notice(self, th: str, q: Question) -> None:
        return None

    async def publish_audio(self, th: str, data: bytes, init: bool, mime: str) -> None:
        return None

    async def end_townhall(self, th: str, by: str) -> tuple[Townhall, int]:
        raise NotImplementedError

    async def kick(self, sub: str, th: str) -> None:
        return None


def session(owner: FakeOwner, conn: FakeConnection) -> Client:
    return Client(owner, cast(WsConnection, conn))


def send(client: Client, message: dict[str, Any]) -> None:
    client.on_message(encode(message, Encoding.JSON))


async def settle(client: Client) -> None:
    """Let the session's worker handle what is queued."""
    for _ in range(100):
        if client.worker is None:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the session's worker did not finish")


async def test_client_unit_first_message_that_is_not_hello_closes_with_bad_hello() -> None:
    owner, conn = FakeOwner(), FakeConnection()
    send(session(owner, conn), {"t": "ping"})
    assert conn.closed is not None and conn.closed[0] is CloseCode.BAD_HELLO


async def test_client_unit_hello_with_a_bad_token_closes_with_unauthorized() -> None:
    owner, conn = FakeOwner(), FakeConnection()
    client = session(owner, conn)
    send(client, {"t": "hello", "token": "not-a-token"})
    await settle(client)
    assert conn.closed is not None and conn.closed[0] is CloseCode.UNAUTHORIZED
    assert owner.joins == []


async def test_client_unit_hello_joins_and_later_messages_are_rate_limited() -> None:
    owner, conn = FakeOwner(), FakeConnection()
    townhall = await owner.store.create_townhall("टेस्ट", "hi")
    token, _ = owner.tokens.issue(sub="c-1", role=Role.CITIZEN, th=townhall.id, ttl_s=600)
    client = session(owner, conn)
    send(client, {"t": "hello", "token": token, "last_seq": 4})
    await settle(client)
    assert conn.closed is None
    assert owner.joins == [(client, 4)] and client.th == townhall.id
    assert conn.max_message_bytes == owner.settings.citizen_max_message_bytes  # citizens get the small cap
    for n in range(3):  # a burst of 2: the third is refused
        send(client, {"t": "ping", "id": n})
    replies = conn.messages()
    assert [m["t"] for m in replies] == ["pong", "pong", "error"]
    assert replies[2]["code"] == "rate_limited" and replies[2]["re"] == 2 and replies[2]["retry_ms"] > 0


async def test_client_unit_citizen_on_the_staff_lane_is_refused() -> None:
    owner, conn = FakeOwner(), FakeConnection(staff_lane=True)
    townhall = await owner.store.create_townhall("टेस्ट", "hi")
    token, _ = owner.tokens.issue(sub="c-1", role=Role.CITIZEN, th=townhall.id, ttl_s=600)
    client = session(owner, conn)
    send(client, {"t": "hello", "token": token})
    await settle(client)
    assert conn.closed is not None and conn.closed[0] is CloseCode.FORBIDDEN
    assert owner.staff_joined == 0 and owner.joins == []


async def test_client_unit_closed_session_leaves_through_its_owner() -> None:
    owner, conn = FakeOwner(), FakeConnection()
    client = session(owner, conn)
    client.on_closed()
    assert owner.left == [client]


async def test_client_unit_hello_that_hangs_ends_in_1013_after_join_timeout() -> None:
    owner, conn = FakeOwner(), FakeConnection()
    owner.settings = node_settings(join_timeout_s=0.2)
    hung = asyncio.Event()

    async def join(client: Client, last_seq: int | None, townhall: Townhall, last_mseq: int | None) -> None:
        await hung.wait()  # a store or broker that never answers

    owner.join = join  # type: ignore[method-assign]
    townhall = await owner.store.create_townhall("टेस्ट", "hi")
    token, _ = owner.tokens.issue(sub="c-1", role=Role.CITIZEN, th=townhall.id, ttl_s=600)
    client = session(owner, conn)
    send(client, {"t": "hello", "token": token})
    assert client.worker is not None
    await client.worker
    assert conn.closed is not None and conn.closed[0] is CloseCode.TRY_AGAIN_LATER
    assert client.claims is None  # abandon_join undid it


async def test_client_unit_hello_join_looks_up_no_running_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPython 3.11 checks the pid on every running-loop lookup (a getpid syscall); the hello's join deadline makes
    # none (deadline.py), where asyncio.timeout made three. (asyncio's own helpers look it up through these names.)
    owner, conn = FakeOwner(), FakeConnection()
    townhall = await owner.store.create_townhall("टेस्ट", "hi")
    token, _ = owner.tokens.issue(sub="c-1", role=Role.CITIZEN, th=townhall.id, ttl_s=600)
    lookups: list[str] = []
    real_loop, real_task = asyncio.events.get_running_loop, asyncio.tasks.current_task

    def counted_loop() -> asyncio.AbstractEventLoop:
        lookups.append("get_running_loop")
        return real_loop()

    def counted_task(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[Any] | None:
        lookups.append("current_task")
        return real_task(loop)

    client = session(owner, conn)
    send(client, {"t": "hello", "token": token})
    assert client.worker is not None
    monkeypatch.setattr(asyncio.events, "get_running_loop", counted_loop)
    monkeypatch.setattr(asyncio.tasks, "current_task", counted_task)
    await client.worker
    monkeypatch.undo()
    assert owner.joins == [(client, None)] and conn.closed is None
    assert lookups == []


async def test_client_unit_joined_idle_session_keeps_no_inbox() -> None:
    """The worker's deque (~0.6 KB) goes with the work: none after the join, none after a queued message either."""
    owner, conn = FakeOwner(), FakeConnection()
    townhall = await owner.store.create_townhall("टेस्ट", "hi")
    token, _ = owner.tokens.issue(sub="c-1", role=Role.CITIZEN, th=townhall.id, ttl_s=600)
    client = session(owner, conn)
    send(client, {"t": "hello", "token": token})
    assert client.inbox is not None  # the hello waits in it for the worker
    await settle(client)
    assert client.claims is not None and client.inbox is None
    send(client, {"t": "ask", "id": 7, "key": "question-7", "text": "सड़क कब बनेगी?"})
    assert client.inbox is not None and client.worker is not None  # a store round trip: the worker's
    await settle(client)
    assert client.inbox is None
    assert [m.get("re") for m in conn.messages()] == [7]  # it was handled (its answer carries its id)
