"""The keepalive wheel on a big node (issue 19 item 4): joined, quiet connections are looked at in slices, each every
`stride` turns, so a turn costs a fraction of a full pass; what needs a timely look (a hello not yet said, a closing
handshake, a per-second counter) is still looked at every turn."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from jansamvad.connection import ConnState, WsConnection
from jansamvad.keepalive import FULL_PASS_UP_TO, MAX_STRIDE, stride, turn
from jansamvad.protocol.codes import CloseCode
from tests.helpers import joined, make_hall
from tests.test_fanout_fast_path import connection_of
from tests.test_gateway import Conn, gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

MANY = FULL_PASS_UP_TO + 500


def joined_conn() -> Conn:
    conn = Conn()
    conn.client = type("Joined", (), {"claims": object(), "inbox": None, "limited_answers": 0})()
    return conn


def big_node(**settings: Any) -> tuple[Any, list[Conn]]:
    gw, _ = gateway(ping_interval_s=20.0, ping_timeout_s=20.0, hello_timeout_s=10.0, **settings)
    conns = [joined_conn() for _ in range(MANY)]
    for conn in conns:
        gw.connection_made(cast(WsConnection, conn))
    turn(gw, 1.0)  # the first turn looks at every new connection (all watched) and lets the joined ones go
    assert not gw.watched
    return gw, conns


async def test_keepalive_slices_ping_each_quiet_connection_once_within_a_stride() -> None:
    gw, conns = big_node()
    assert stride(gw) == MAX_STRIDE == 5  # a quarter of the 20 s ping interval
    pinged = []
    for t in range(5):
        turn(gw, 21.0 + t)  # all of them silent for more than ping_interval
        pinged.append(sum(c.pinged for c in conns))
    assert pinged[0] < MANY // 4, "a turn looks at one slice, not at every connection"
    assert pinged[-1] == MANY and all(len(c.frames) == 1 for c in conns)  # every one, exactly once
    for t in range(5):
        turn(gw, 41.0 + t)  # silent for ping_interval + ping_timeout
    assert all(c.closed is CloseCode.INTERNAL_ERROR and c.aborted for c in conns)


async def test_keepalive_slices_still_look_at_hellos_closings_and_counters_every_turn() -> None:
    gw, conns = big_node()
    no_hello = Conn()
    no_hello.client = type("Waiting", (), {"claims": None, "inbox": None, "limited_answers": 0})()
    no_hello.opened_at = 1.0
    gw.connection_made(cast(WsConnection, no_hello))
    closing = conns[0]
    closing.state, closing.closing_since = ConnState.CLOSING, 1.0
    gw.watched.add(cast(WsConnection, closing))  # what WsConnection.close / fail / a close frame do
    counted = conns[1]
    counted.pings, counted.client.limited_answers = 3, 2
    gw.watched.add(cast(WsConnection, counted))  # what its first packet since the last turn does (data_received)

    turn(gw, 2.0)
    assert (counted.pings, counted.client.limited_answers) == (0, 0)
    assert cast(WsConnection, counted) not in gw.watched  # joined and quiet again: back to the slices
    turn(gw, 7.0)  # past close_timeout (5 s) for the closing one
    assert closing.aborted
    turn(gw, 12.0)  # past hello_timeout (10 s)
    assert no_hello.closed is CloseCode.HELLO_TIMEOUT


async def test_keepalive_slices_a_small_node_looks_at_everything_every_turn() -> None:
    gw, _ = gateway(ping_interval_s=20.0, ping_timeout_s=20.0)
    conns = [joined_conn() for _ in range(10)]
    for conn in conns:
        gw.connection_made(cast(WsConnection, conn))
    assert stride(gw) == 1
    turn(gw, 21.0)
    assert all(c.pinged for c in conns)
    short, _ = gateway(ping_interval_s=2.0, ping_timeout_s=2.0)
    for _ in range(MANY):
        short.connection_made(cast(WsConnection, joined_conn()))
    assert stride(short) == 1  # short keepalive settings keep their precision however many connections


async def test_keepalive_slices_a_connection_is_watched_from_its_first_packet_of_a_second(make_server: Any) -> None:
    server = await make_server()
    gw = server.node.gateway
    (wheel,) = [task for task in asyncio.all_tasks() if task.get_name() == "jansamvad-keepalive"]
    wheel.cancel()  # this test turns the wheel by hand
    hall = await make_hall(server)
    citizen = await joined(server, hall.citizen_token(sub="c-watch"))
    conn = connection_of(server, "c-watch")
    assert conn in gw.watched  # new: looked at every turn until it is joined and quiet
    turn(gw, gw.clock + 1.0)
    assert conn not in gw.watched
    await citizen.ws.ping()  # a packet: its per-second counters (pings here) must be reset at the next turn
    async with asyncio.timeout(3):
        while conn.pings == 0:
            await asyncio.sleep(0.01)
    assert conn in gw.watched
    turn(gw, gw.clock + 1.0)
    assert conn.pings == 0 and conn not in gw.watched


async def test_keepalive_slices_take_back_a_connection_whose_join_was_given_up() -> None:
    gw, conns = big_node()
    given_up = conns[2]
    given_up.client.claims = None  # what abandon_join does after the wheel let it go as joined
    given_up.client.inbox = None
    for t in range(MAX_STRIDE):
        turn(gw, 2.0 + t)  # within one stride its slice comes round
    assert cast(WsConnection, given_up) in gw.watched
    turn(gw, 12.0)  # past hello_timeout (10 s) from its opening at 0
    assert given_up.closed is CloseCode.HELLO_TIMEOUT


async def test_keepalive_slices_look_at_a_connection_every_stride_while_others_come_and_go() -> None:
    # A connection's slice is fixed (its hash), so connections that open or close between rounds do not move it to
    # another turn: with a list sliced by position it could be looked at after 1 to 2 x stride - 1 turns.
    gw, conns = big_node()
    every = stride(gw)
    looked_at: dict[int, list[int]] = {id(c): [] for c in conns}
    for t in range(4 * every):
        turn(gw, 20.5 + t)  # all silent past ping_interval, not yet past ping_interval + ping_timeout
        for c in conns:
            if c.pinged:  # this turn looked at it: it pinged; forget the ping so that the next look pings again
                looked_at[id(c)].append(t)
                c.pinged = False
        for _ in range(400):  # others come and go between turns (the set of connections grows and reorders)
            gw.connection_made(cast(WsConnection, Conn()))
        for extra in [c for c in gw.connections if c not in conns][:300]:
            gw.connection_lost(extra)
    gaps = {b - a for turns in looked_at.values() for a, b in zip(turns, turns[1:], strict=False)}
    assert all(len(turns) == 4 for turns in looked_at.values()) and gaps == {every}, gaps
