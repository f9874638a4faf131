"""The bench clients' source-address sockets (loadtest/bench/sockets.py): the port comes at connect(), not at bind."""

from __future__ import annotations

import asyncio
import socket

import pytest
from loadtest.bench.sockets import bound_socket, connect_from

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def test_bench_sockets_bound_socket_has_no_port_until_it_connects() -> None:
    """bind((source, 0)) alone would have searched for and taken a port (getsockname says which); with
    IP_BIND_ADDRESS_NO_PORT the bound socket holds none yet."""
    sock = bound_socket("127.0.0.3")
    try:
        assert sock.getsockname() == ("127.0.0.3", 0)
    finally:
        sock.close()


async def test_bench_sockets_connect_from_connects_from_the_source_address() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        sock = await connect_from("127.0.0.7", "127.0.0.1", server.getsockname()[1])
        try:
            address, port = sock.getsockname()
            assert address == "127.0.0.7" and port != 0
            accepted, peer = await asyncio.get_running_loop().sock_accept(server)
            accepted.close()
            assert peer == (address, port)
        finally:
            sock.close()
    finally:
        server.close()
