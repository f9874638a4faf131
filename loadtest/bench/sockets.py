"""Client sockets on a chosen source address (127.x.y.z, or a network namespace's own) for the bench's clients.

Linux's IP_BIND_ADDRESS_NO_PORT (not in Python's socket module): a socket bound to a source address gets its port at
connect(), unique per 4-tuple. Without it, `bind((source, 0))` searches the ephemeral range for a port that no other
socket on that address holds, in the kernel, at every connect; with tens of thousands of loopback sockets on the
machine that search was most of a client process's CPU (the joins bench's slow runs; the storm's first connect of
120,000 took 230 s).
"""

from __future__ import annotations

import asyncio
import socket

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def bound_socket(source: str) -> socket.socket:
    """A non-blocking TCP socket on `source` whose port the kernel picks at connect()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def connect_from(source: str, host: str, port: int) -> socket.socket:
    """A TCP connection to (host, port) from `source`, connected on the running loop; the caller owns the socket."""
    sock = bound_socket(source)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock
