"""The staff lane (/ws?lane=staff): leaders and moderators connect through their own handshake budget, so a storm of
citizen reconnects that spends the citizens' budget never makes them wait; citizens may not use it (4003)."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect

from jansamvad.protocol.codes import CloseCode
from jansamvad.server import RunningServer
from tests.helpers import RawClient, Session, make_hall

pytestmark = pytest.mark.anyio

STAFF_PATH = "/ws?lane=staff"


async def staff_session(ws_url: str) -> Session:
    """A protocol session on the staff lane (closed by the fixtures, or by the caller, at the end)."""
    ws = await connect(ws_url + "?lane=staff", subprotocols=["jansamvad.v1.msgpack"], open_timeout=5)  # type: ignore[list-item]
    session = Session(ws, "msgpack")
    Session.opened.append(session)
    return session


async def test_staff_lane_refuses_a_citizen_token_with_4003(server: RunningServer) -> None:
    hall = await make_hall(server)
    citizen = await staff_session(server.ws_url)
    await citizen.send({"t": "hello", "token": hall.citizen_token()})
    code, reason = await citizen.expect_close()
    assert code == CloseCode.FORBIDDEN and "staff lane" in reason


async def test_staff_lane_admits_staff_when_the_citizen_handshake_budget_is_spent(make_server: Any) -> None:
    server = await make_server(handshakes_per_second=2)
    hall = await make_hall(server)
    statuses = [(await RawClient.open(server)).status for _ in range(6)]
    assert 503 in statuses  # the citizens' budget is spent
    leader = await staff_session(server.ws_url)
    welcome, _ = await leader.hello(hall.leader)
    assert welcome["role"] == "leader"
    moderator = await staff_session(server.ws_url)
    welcome, _ = await moderator.hello(hall.moderator)
    assert welcome["role"] == "moderator"


async def test_staff_lane_has_its_own_budget_and_cap(make_server: Any) -> None:
    server = await make_server(staff_handshakes_per_second=2, max_staff_connections=100)
    statuses = [(await RawClient.open(server, path=STAFF_PATH)).status for _ in range(5)]
    assert statuses.count(101) >= 2 and 503 in statuses
    capped = await make_server(max_staff_connections=1)
    hall = await make_hall(capped)
    # Upgrades that never say hello hold no slot: otherwise anyone could lock the staff out by opening idle sockets.
    idle = [await RawClient.open(capped, path=STAFF_PATH) for _ in range(3)]
    assert [client.status for client in idle] == [101, 101, 101]
    leader = await staff_session(capped.ws_url)
    welcome, _ = await leader.hello(hall.leader)
    assert welcome["role"] == "leader"
    second = await RawClient.open(capped, path=STAFF_PATH)
    assert (second.status, second.header("Retry-After")) == (503, "2")
    citizen = await RawClient.open(capped)  # the citizen lane is not touched by the staff cap
    assert citizen.status == 101


async def test_staff_lane_hello_over_the_cap_is_closed_with_1013(make_server: Any) -> None:
    server = await make_server(max_staff_connections=1)
    hall = await make_hall(server)
    first, second = await staff_session(server.ws_url), await staff_session(server.ws_url)  # both upgraded first
    welcome, _ = await first.hello(hall.leader)
    assert welcome["role"] == "leader"
    await second.send({"t": "hello", "token": hall.moderator})
    code, reason = await second.expect_close()
    assert code == CloseCode.TRY_AGAIN_LATER and "full" in reason
    await first.close()
    third = await staff_session(server.ws_url)  # the slot is free again once the session left
    welcome, _ = await third.hello(hall.moderator)
    assert welcome["role"] == "moderator"


async def test_staff_lane_unknown_lane_is_a_400(server: RunningServer) -> None:
    client = await RawClient.open(server, path="/ws?lane=vip")
    assert client.status == 400
