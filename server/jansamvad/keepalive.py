"""The keepalive wheel: one timer for every connection of a node, never one per connection.

Once a second it advances the gateway's coarse clock, resets the per-second counters (pings received, rate_limited
answers), pings connections that have been quiet, and closes or reaps the ones that never said hello, stopped
answering, or hang in a closing handshake.
"""

from __future__ import annotations

import asyncio

from jansamvad.connection import ConnState
from jansamvad.gateway import Gateway
from jansamvad.protocol.codec import PING_FRAME
from jansamvad.protocol.codes import CloseCode

WHEEL_INTERVAL_S = 1.0


async def run_wheel(gateway: Gateway) -> None:
    """Turn the wheel until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(WHEEL_INTERVAL_S)
        turn(gateway, loop.time())


def turn(gateway: Gateway, now: float) -> None:
    """One turn of the wheel at loop time `now`."""
    settings = gateway.settings
    gateway.clock = now
    ping_after = settings.ping_interval_s
    dead_after = settings.ping_interval_s + settings.ping_timeout_s
    for conn in list(gateway.connections):
        state = conn.state
        if state is ConnState.OPEN:
            conn.pings = 0
            session = conn.client
            if session is not None:
                session.limited_answers = 0
            idle = now - conn.last_seen
            if session is not None and session.claims is None and session.inbox is None:
                if now - conn.opened_at > settings.hello_timeout_s:
                    conn.close(CloseCode.HELLO_TIMEOUT)
                    continue
            if idle > dead_after:
                conn.fail(CloseCode.INTERNAL_ERROR, "keepalive timeout")
                conn.abort()
            elif idle > ping_after and not conn.pinged:
                conn.pinged = True
                conn.send_frame(PING_FRAME)
        elif state is ConnState.HANDSHAKE:
            if now - conn.opened_at > settings.hello_timeout_s:
                conn.abort()
        elif state is ConnState.CLOSING and now - conn.closing_since > settings.close_timeout_s:
            conn.abort()
