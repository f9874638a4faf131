"""The WebSocket's socket options (issue 19 item 4): a broadcast is one small write per listener, which Nagle's
algorithm may hold back behind the previous one's unacknowledged data. uvloop sets TCP_NODELAY on every accepted
socket; asyncio's loop (`--loop asyncio`) only when the listening socket says IPPROTO_TCP, which server.bind_socket
now does (it said 0). Both loops run this test (conftest.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.helpers import joined, make_hall
from tests.test_fanout_fast_path import connection_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


async def test_socket_options_websocket_sends_without_nagle(make_server: Any) -> None:
    server = await make_server()
    hall = await make_hall(server)
    await joined(server, hall.citizen_token(sub="c-nodelay"))
    conn = connection_of(server, "c-nodelay")
    assert conn.transport is not None
    sock = conn.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
