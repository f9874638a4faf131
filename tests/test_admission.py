"""Admission that fits Indian mobile networks (admission.py, gateway.py; docs/operations.md "Admission and CGNAT"):
IPv6 counted per prefix, a CGNAT pool of many tokens behind one address let in, and what one device or one network
can do without a valid token bounded."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import pytest

from jansamvad.admission import NetworkBuckets, network_key
from jansamvad.connection import ConnState, WsConnection
from jansamvad.gateway import Gateway
from jansamvad.protocol.codes import CloseCode
from jansamvad.protocol.roles import Role
from tests.helpers import RawClient, make_hall, node_settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Session:
    def __init__(self) -> None:
        self.claims: object | None = None
        self.inbox = None
        self.limited_answers = 0

    def on_message(self, data: bytes) -> None: ...

    def on_closed(self) -> None: ...


class Host:
    def open_session(self, conn: WsConnection) -> Any:
        return Session()


class Conn:
    def __init__(self, ip: str) -> None:
        self.ip, self.staff_lane = ip, False
        self.client: Any = None
        self.state = ConnState.OPEN


class Claims:
    def __init__(self, sub: str) -> None:
        self.sub = sub


def gateway(**settings: Any) -> tuple[Gateway, Counter[str]]:
    rejected: Counter[str] = Counter()
    gw = Gateway(node_settings(**settings), Host(), Counter(), rejected)
    gw.start(asyncio.get_running_loop())
    gw.accepting = True
    return gw, rejected


def connect(gw: Gateway, ip: str) -> WsConnection | int:
    """A handshake from `ip` (a peer address): the open connection, or the Retry-After of its refusal."""
    conn = cast(WsConnection, Conn(gw.client_ip(ip, [])))
    retry = gw.admit(conn)
    if retry is not None:
        return retry
    gw.connection_opened(conn)
    return conn


def join(gw: Gateway, conn: WsConnection, device: str) -> bool:
    if not gw.session_joining(conn, device):
        return False
    cast(Session, conn.client).claims = Claims(device)
    gw.session_joined(conn)  # welcome sent
    return True


def test_admission_network_key_groups_ipv6_by_prefix() -> None:
    assert network_key("203.0.113.7", 64) == "203.0.113.7"
    assert network_key("2001:db8:1:2::1", 64) == network_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64)
    assert network_key("2001:db8:1:2::1", 64) == "2001:db8:1:2::/64"
    assert network_key("2001:db8:1:3::1", 64) != network_key("2001:db8:1:2::1", 64)
    assert network_key("2001:db8:1:3::1", 56) == network_key("2001:db8:1:2::1", 56)
    assert network_key("::ffff:203.0.113.7", 64) == "203.0.113.7"  # a dual-stack listener's IPv4 client
    assert network_key("fe80::1%eth0", 64) == "fe80::/64"


async def test_admission_ipv6_connections_count_per_prefix() -> None:
    gw, rejected = gateway(max_connections_per_ip=2)
    assert not isinstance(connect(gw, "2001:db8:1:2::1"), int)
    assert not isinstance(connect(gw, "2001:db8:1:2::2"), int)  # a fresh privacy address, same phone or home
    assert connect(gw, "2001:db8:1:2:ffff::9") == 10 and rejected == {"per_ip": 1}
    assert not isinstance(connect(gw, "2001:db8:1:3::1"), int)  # the neighbour's /64


async def test_admission_cgnat_pool_of_many_devices_behind_one_ip_is_admitted() -> None:
    """5,000 phones behind one carrier address, each with its own token, joining over 15 s: all in (the old default
    cap was 1,000 per IP)."""
    gw, rejected = gateway()
    loop = asyncio.get_running_loop()
    start = loop.time()
    joined = 0
    for i in range(5_000):
        # 2,000 at once (a booth reconnecting), then 200 a second: the clock is moved instead of waiting.
        gw._loop = cast(asyncio.AbstractEventLoop, FakeClock(start + max(0, i - 1_999) / 199))
        conn = connect(gw, "100.64.0.1")
        assert not isinstance(conn, int), (i, rejected)
        assert join(gw, conn, f"c-{i}")
        joined += 1
    assert joined == 5_000 and gw.per_ip["100.64.0.1"] == 5_000 and "100.64.0.1" not in gw.unjoined


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


async def test_admission_booth_reconnect_burst_then_the_network_is_rate_limited() -> None:
    gw, rejected = gateway(ip_handshake_burst=50, ip_handshakes_per_second=10)
    for _ in range(50):
        assert not isinstance(connect(gw, "192.0.2.1"), int)
    assert connect(gw, "192.0.2.1") == 1 and rejected == {"per_ip_rate": 1}
    assert not isinstance(connect(gw, "198.51.100.1"), int)  # another network has its own bucket


async def test_admission_unjoined_connections_per_network_are_capped_until_they_join() -> None:
    gw, rejected = gateway(max_unjoined_per_ip=2)
    first, second = connect(gw, "192.0.2.1"), connect(gw, "192.0.2.1")
    assert connect(gw, "192.0.2.1") == 2 and rejected == {"per_ip_unjoined": 1}
    assert join(gw, cast(WsConnection, first), "c-1")  # a valid token: no longer counted as unjoined
    third = connect(gw, "192.0.2.1")
    assert not isinstance(third, int)
    gw.connection_lost(cast(WsConnection, second))  # gone before joining: its slot is free again
    assert not isinstance(connect(gw, "192.0.2.1"), int)


async def test_admission_one_device_has_at_most_max_sessions_per_device() -> None:
    gw, rejected = gateway(max_sessions_per_device=3)
    sessions = []
    for _ in range(3):
        conn = connect(gw, "192.0.2.1")
        assert not isinstance(conn, int) and join(gw, conn, "c-phone")
        sessions.append(conn)
    extra = connect(gw, "192.0.2.1")
    assert not isinstance(extra, int) and not join(gw, extra, "c-phone")
    assert rejected == {"per_device": 1}
    assert join(gw, cast(WsConnection, connect(gw, "192.0.2.1")), "c-other")  # the phone next to it
    gw.connection_lost(sessions[0])
    assert join(gw, cast(WsConnection, connect(gw, "192.0.2.1")), "c-phone")  # a reconnect after the old one went


async def test_admission_failed_joins_lock_the_network_out_for_a_while() -> None:
    gw, rejected = gateway(failed_joins_per_minute_per_ip=3)
    for _ in range(3):
        conn = connect(gw, "192.0.2.1")
        assert not isinstance(conn, int)
        gw.connection_closing(conn, CloseCode.UNAUTHORIZED)
    assert connect(gw, "192.0.2.1") == 20 and rejected == {"failed_joins": 1}  # a token back in 20 s
    assert not isinstance(connect(gw, "198.51.100.1"), int)
    conn = connect(gw, "203.0.113.5")
    assert not isinstance(conn, int)
    for code in (CloseCode.TRY_AGAIN_LATER, CloseCode.HELLO_TIMEOUT) * 3:  # the node's trouble, or a late hello
        gw.connection_closing(conn, code)
    assert not isinstance(connect(gw, "203.0.113.5"), int)


async def test_admission_joins_in_flight_are_capped_so_a_storm_waits_at_the_door() -> None:
    """A storm that outruns the join path is answered 503 at the upgrade instead of timing out inside (1013)."""
    gw, rejected = gateway(max_joining=3)
    pending = [connect(gw, f"192.0.2.{i}") for i in range(3)]
    assert connect(gw, "192.0.2.9") == 1 and rejected == {"joining": 1}
    assert join(gw, cast(WsConnection, pending[0]), "c-0")  # welcomed: a slot is free
    assert not isinstance(connect(gw, "192.0.2.9"), int)
    gw.connection_lost(cast(WsConnection, pending[1]))  # gone before its welcome: a slot is free
    assert not isinstance(connect(gw, "192.0.2.10"), int)


def test_admission_network_buckets_forget_refilled_networks() -> None:
    buckets = NetworkBuckets(rate=10, burst=10)
    for i in range(3_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", now=0.0)
    for i in range(2_000):  # 100 s later every old bucket has refilled: the next prune drops them
        buckets.take(f"10.1.{i // 256}.{i % 256}", now=100.0)
    assert len(buckets) < 2_500  # not one bucket per network ever seen


# Through a real node and real sockets.


async def hello(client: RawClient, token: str) -> int | None:
    """Send hello; the close code if the node closes the session, None once it answered (welcome)."""
    client.send_message({"t": "hello", "token": token})
    opcode, payload = await client.read_frame()
    if opcode == 0x8:
        return int.from_bytes(payload[:2], "big")
    return None


async def test_admission_failed_token_flood_from_one_ip_is_bounded(make_server: Any) -> None:
    server = await make_server(failed_joins_per_minute_per_ip=5, trusted_proxies=("127.0.0.0/8",))
    hall = await make_hall(server)
    for _ in range(5):
        client = await RawClient.open(server)
        assert client.status == 101
        assert await hello(client, "not-a-token") == CloseCode.UNAUTHORIZED
    refused = await RawClient.open(server)
    assert refused.status == 503 and int(refused.header("Retry-After") or 0) >= 1
    assert server.node.metrics.handshakes_rejected["failed_joins"] == 1
    # Meanwhile a citizen from another network (named by the trusted balancer) gets in.
    other = await RawClient.open(server, headers="X-Forwarded-For: 203.0.113.9\r\n")
    assert other.status == 101 and await hello(other, hall.citizen_token()) is None


async def test_admission_a_device_over_its_session_cap_is_closed_with_1013(make_server: Any) -> None:
    server = await make_server(max_sessions_per_device=2)
    hall = await make_hall(server)
    token = hall.citizen_token(sub="c-one-phone")
    for _ in range(2):
        client = await RawClient.open(server)
        assert await hello(client, token) is None
    third = await RawClient.open(server)
    assert await hello(third, token) == CloseCode.TRY_AGAIN_LATER
    other = await RawClient.open(server)
    assert await hello(other, hall.citizen_token(sub="c-second-phone")) is None


async def test_admission_more_citizens_behind_one_address_than_the_old_cap(make_server: Any) -> None:
    """1,100 citizens from 127.0.0.1 with default settings (the old default admitted 1,000 per IP)."""
    server = await make_server()
    hall = await make_hall(server)
    tokens = [
        server.node.tokens.issue(sub=f"c-{i}", role=Role.CITIZEN, th=hall.th, ttl_s=600, name="x")[0]
        for i in range(1_100)
    ]
    codes: list[int | None] = []
    for start in range(0, len(tokens), 100):
        clients = await asyncio.gather(*(RawClient.open(server) for _ in range(100)))
        assert {c.status for c in clients} == {101}
        codes += await asyncio.gather(*(hello(c, t) for c, t in zip(clients, tokens[start : start + 100], strict=True)))
    assert codes == [None] * 1_100
    assert server.node.gateway.per_ip["127.0.0.1"] == 1_100


async def test_admission_joining_retry_after_grows_with_the_queue_outside() -> None:
    """A storm turned away at a full join queue is told to come back when the queue can have drained, not every second
    (each knock costs the node a refused handshake); join_backlog.py."""
    gw, rejected = gateway(max_joining=3)
    for i in range(3):
        connect(gw, f"192.0.2.{i}")
    assert {connect(gw, f"198.51.100.{i}") for i in range(200)} == {1}  # 200 waiting, nobody welcomed
    await asyncio.sleep(1.05)  # the next window: the estimate of the last one counts
    assert cast(int, connect(gw, "203.0.113.1")) > 1 and rejected == {"joining": 201}
