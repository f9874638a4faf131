"""The keepalive wheel: one timer for every connection of a node, never one per connection.

Once a second it advances the gateway's coarse clock, resets the per-second counters (pings received, rate_limited
answers), pings connections that have been quiet, and closes or reaps the ones that never said hello, stopped
answering, or hang in a closing handshake.

A node with many connections does not look at every one every second (at 10,000 that pass alone cost about 1 % of a
core, issue 19): connections that need a timely look (upgrading, waiting for hello, closing, or with a per-second
counter to reset) are in the gateway's `watched` set and are checked every turn; the joined, quiet rest is checked in
slices, each connection every `stride` turns (its slice is fixed by its hash, so a round's new or closed connections
do not move the others to another turn). Their ping then goes out between ping_interval and ping_interval +
stride seconds of silence, and a silent one is failed up to stride seconds after ping_interval + ping_timeout: the
stride is at most a quarter of the shorter of the two (5 s by default). Up to FULL_PASS_UP_TO connections every turn
checks all of them, as it always did.
"""

from __future__ import annotations

import asyncio

from jansamvad.connection import ConnState, WsConnection
from jansamvad.gateway import Gateway
from jansamvad.protocol.codec import PING_FRAME
from jansamvad.protocol.codes import CloseCode

WHEEL_INTERVAL_S = 1.0
FULL_PASS_UP_TO = 2_000  # a full pass over this many costs well under a millisecond
MAX_STRIDE = 5


async def run_wheel(gateway: Gateway) -> None:
    """Turn the wheel until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(WHEEL_INTERVAL_S)
        turn(gateway, loop.time())


def stride(gateway: Gateway) -> int:
    """Turns between two looks at a joined, quiet connection (1: every turn)."""
    settings = gateway.settings
    if len(gateway.connections) <= FULL_PASS_UP_TO:
        return 1
    shorter = min(settings.ping_interval_s, settings.ping_timeout_s)
    return max(1, min(MAX_STRIDE, int(shorter / 4 / WHEEL_INTERVAL_S)))


def turn(gateway: Gateway, now: float) -> None:
    """One turn of the wheel at loop time `now`."""
    gateway.clock = now
    every = stride(gateway)
    watched = gateway.watched
    if every == 1:
        gateway.wheel_round = []
        for conn in list(gateway.connections):
            _check(gateway, conn, now)
        for conn in list(watched):
            if _settled(conn) or conn.state is ConnState.CLOSED:
                watched.discard(conn)  # kept accurate for when the node grows past FULL_PASS_UP_TO
        return
    for conn in list(watched):
        _check(gateway, conn, now)
        if _settled(conn) or conn.state is ConnState.CLOSED:
            watched.discard(conn)
    if gateway.wheel_slot >= every or len(gateway.wheel_round) != every:
        slices: list[list[WsConnection]] = [[] for _ in range(every)]
        for conn in gateway.connections:
            slices[hash(conn) % every].append(conn)
        gateway.wheel_round, gateway.wheel_slot = slices, 0
    ping_after = gateway.settings.ping_interval_s
    dead_after = ping_after + gateway.settings.ping_timeout_s
    is_open = ConnState.OPEN
    for conn in gateway.wheel_round[gateway.wheel_slot]:
        # The common case first, inlined: settled and not yet due for its ping, so the checks below would do
        # nothing. On a quiet node that is nearly every connection, and their calls and set lookup were about half
        # of a turn (issue 19).
        session = conn.client
        if (
            now - conn.last_seen <= ping_after
            and conn.state is is_open
            and conn.pings == 0
            and session is not None
            and session.claims is not None
            and session.limited_answers == 0
        ):
            continue
        if conn in watched or conn.state is ConnState.CLOSED:
            continue
        if _settled(conn):
            _check_idle(conn, now - conn.last_seen, ping_after, dead_after)
        else:
            watched.add(conn)  # e.g. its join was given up: its hello timeout is looked at every turn again
    gateway.wheel_slot += 1
    if gateway.wheel_slot >= every:
        gateway.wheel_round = []  # the next turn takes a fresh list (new connections, none of the closed)


def _settled(conn: WsConnection) -> bool:
    """Joined, open and with nothing to reset: the sliced checks are enough for it."""
    session = conn.client
    return (
        conn.state is ConnState.OPEN
        and session is not None
        and session.claims is not None
        and conn.pings == 0
        and session.limited_answers == 0
    )


def _check(gateway: Gateway, conn: WsConnection, now: float) -> None:
    settings = gateway.settings
    state = conn.state
    if state is ConnState.OPEN:
        conn.pings = 0
        session = conn.client
        if session is not None:
            session.limited_answers = 0
        if session is not None and session.claims is None and session.inbox is None:
            if now - conn.opened_at > settings.hello_timeout_s:
                conn.close(CloseCode.HELLO_TIMEOUT)
                return
        ping_after = settings.ping_interval_s
        _check_idle(conn, now - conn.last_seen, ping_after, ping_after + settings.ping_timeout_s)
    elif state is ConnState.HANDSHAKE:
        if now - conn.opened_at > settings.hello_timeout_s:
            conn.abort()
    elif state is ConnState.CLOSING and now - conn.closing_since > settings.close_timeout_s:
        conn.abort()


def _check_idle(conn: WsConnection, idle: float, ping_after: float, dead_after: float) -> None:
    if idle > dead_after:
        conn.fail(CloseCode.INTERNAL_ERROR, "keepalive timeout")
        conn.abort()
    elif idle > ping_after and not conn.pinged:
        conn.pinged = True
        conn.send_frame(PING_FRAME)
