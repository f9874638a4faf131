"""The edge without sockets: the gateway's admission rules and client addresses, and one turn of the keepalive wheel,
on stand-in connections (gateway.py, keepalive.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import pytest

from jansamvad.connection import ConnState, WsConnection
from jansamvad.gateway import Gateway
from jansamvad.keepalive import turn
from jansamvad.protocol.codes import CloseCode
from tests.helpers import node_settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class Host:
    def open_session(self, conn: WsConnection) -> Any:
        return None


class Conn:
    """What the gateway and the wheel read and call on a connection."""

    def __init__(self, ip: str = "192.0.2.1", *, staff_lane: bool = False) -> None:
        self.ip, self.staff_lane = ip, staff_lane
        self.client: Any = None
        self.state = ConnState.OPEN
        self.opened_at = self.last_seen = self.closing_since = 0.0
        self.pinged = False
        self.pings = 0
        self.closed: CloseCode | None = None
        self.aborted = False
        self.frames: list[bytes] = []

    def close(self, code: CloseCode, detail: str = "") -> None:
        self.closed = code

    def fail(self, code: CloseCode, detail: str = "") -> None:
        self.closed = code

    def abort(self) -> None:
        self.aborted = True

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


def gateway(**settings: Any) -> tuple[Gateway, Counter[str]]:
    rejected: Counter[str] = Counter()
    gw = Gateway(node_settings(**settings), Host(), Counter(), rejected)
    gw.start(asyncio.get_running_loop())
    gw.accepting = True
    return gw, rejected


def admit(gw: Gateway, conn: Conn) -> int | None:
    return gw.admit(cast(WsConnection, conn))


async def test_gateway_refuses_everyone_while_not_accepting() -> None:
    gw, rejected = gateway()
    gw.accepting = False
    assert admit(gw, Conn()) == 5 and rejected == {"not_ready": 1}


async def test_gateway_rate_refusals_are_told_the_queue_outside_not_one_second() -> None:
    """Beyond `handshakes_per_second` a storm's clients are told when to come back from the queue outside
    (join_backlog.py), as for `joining`: 500 refused in a second while 100 join is a 5 s queue, so the next refusal
    says 2 s (half of it, at most doubling a second), not 1 s for everyone to knock again."""
    gw, rejected = gateway(handshakes_per_second=100)
    clock = [gw.clock]
    gw._now = lambda: clock[0]  # type: ignore[method-assign]
    admitted = 0
    while admit(gw, conn := Conn()) is None:  # the bucket's burst: these join
        gw.connection_opened(cast(WsConnection, conn))
        gw.session_joined(cast(WsConnection, conn))
        admitted += 1
    assert admitted == 100
    assert {admit(gw, Conn()) for _ in range(499)} == {1}  # the first second: nobody has measured a queue yet
    clock[0] += 1.0
    while (told := admit(gw, conn := Conn())) is None:  # a second's refill joins
        gw.connection_opened(cast(WsConnection, conn))
        gw.session_joined(cast(WsConnection, conn))
    assert told == 2 and rejected["rate"] == 501


async def test_gateway_caps_connections_per_ip_but_not_the_staff_lane() -> None:
    gw, rejected = gateway(max_connections_per_ip=2, handshakes_per_second=1000)
    for _ in range(2):
        conn = Conn()
        assert admit(gw, conn) is None
        gw.connection_opened(cast(WsConnection, conn))
    assert admit(gw, Conn()) == 10 and rejected == {"per_ip": 1}
    assert admit(gw, Conn(staff_lane=True)) is None  # a leader behind the same NAT
    assert admit(gw, Conn("198.51.100.7")) is None


async def test_gateway_trusts_forwarded_for_only_from_its_proxies() -> None:
    gw, _ = gateway(trusted_proxies=("10.0.0.0/8",))
    assert gw.client_ip("10.1.2.3", ["spoofed, 203.0.113.9"]) == "203.0.113.9"
    assert gw.client_ip("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"


async def test_gateway_keepalive_turn_pings_idle_and_closes_silent_hellos() -> None:
    gw, _ = gateway(ping_interval_s=20.0, ping_timeout_s=20.0, hello_timeout_s=10.0)
    idle, no_hello = Conn(), Conn()
    no_hello.client = type("Waiting", (), {"claims": None, "inbox": None, "limited_answers": 3})()
    idle.client = type("Joined", (), {"claims": object(), "inbox": None, "limited_answers": 3})()
    for conn in (idle, no_hello):
        gw.connection_made(cast(WsConnection, conn))
    turn(gw, 25.0)
    assert gw.clock == 25.0
    assert idle.pinged and len(idle.frames) == 1 and idle.closed is None and idle.client.limited_answers == 0
    assert no_hello.closed is CloseCode.HELLO_TIMEOUT and not no_hello.frames
    turn(gw, 45.0)  # silent for ping_interval + ping_timeout
    assert idle.closed is CloseCode.INTERNAL_ERROR and idle.aborted
