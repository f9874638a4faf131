"""The storm bench's own parts (loadtest/bench/storm.py) against a real node: its leader must outlive a long storm."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from loadtest.bench.storm import Leader

from jansamvad.server import RunningServer
from tests import helpers
from tests.helpers import joined, make_hall

pytestmark = pytest.mark.anyio

# This module's anyio_backend: asyncio only (the bench's leader is websockets' asyncio client).
asyncio_client_loop = helpers.asyncio_client_loop

PING_S = 1.0  # --ping-interval and --ping-timeout (the keepalive wheel turns once a second): 2 s without a pong
CITIZENS = 30  # each join sends the room a new `viewers` count: more frames than websockets' buffer (16) holds
PRESENCE_S = 0.05  # --presence-interval: the room's `viewers` count goes out at most this often


@pytest.mark.timeout(30)
async def test_storm_leader_survives_a_long_connect_without_speaking(
    make_server: Callable[..., Awaitable[RunningServer]],
) -> None:
    """While the storm's clients connect the leader says nothing for longer than the node's keepalive allows, and the
    room's `viewers` counts keep arriving. It must still answer the node's pings: its next speech is acknowledged
    (before, it stopped reading after 16 frames and the node closed it with 1011 for want of a pong)."""
    server = await make_server(ping_interval_s=PING_S, ping_timeout_s=PING_S, presence_interval_s=PRESENCE_S)
    hall = await make_hall(server)
    leader = await Leader.join(server.base_url, hall.leader)
    try:
        await leader.request({"t": "go_live"})
        for i in range(CITIZENS):  # one at a time, so every count goes out on its own tick
            await joined(server, hall.citizen_token(sub=f"c-{i}"))
            await asyncio.sleep(PRESENCE_S * 2)
        await asyncio.sleep(PING_S * 4)  # several keepalive rounds with the leader silent
        reply = await leader.request({"t": "speech", "text": "सब वापस आ गए"})
        assert reply["t"] == "ack"
    finally:
        await leader.close()
