"""Direct sends for the fan-out (issue 19 item 4): send(2) on a connection's socket while its transport holds nothing.

A broadcast to a listener whose transport buffer is empty needs none of the transport's bookkeeping: uvloop's
`write` copies the reference into its buffer list, tries `write(2)` (whose `vfs_write` + `fdget_pos` entry cost
more than `sendto`'s, measured in docs/benchmarks.md) and updates its counters. The fan-out instead calls
`socket.send` on a Python socket object over the same file descriptor, a C call that is one `sendto(2)`.

Order: a WebSocket's transport asks its connection to `pause_writing` as soon as it holds a byte (write buffer limits
0 / 0, connection.py) and calls `resume_writing` once it drained; the connection offers the direct send only in
between. A partial send or EAGAIN hands the rest of the blob to the transport (`WsConnection.write_rest`), which then
holds bytes, so every later frame goes through it until it drained: nothing overtakes what is queued.

File descriptor ownership: the socket object wraps the transport's fd and must never close it. `release` detaches it
in `connection_lost`, which both loops call *before* they close the fd (uvloop's `_call_connection_lost` closes the
handle after the protocol's callback, asyncio's closes its socket after it), so the object never outlives the fd's
number, which the kernel may give to the next accepted connection.
"""

from __future__ import annotations

import socket
from _socket import socket as Socket  # socket.socket's C base: all a send needs, without its Python __init__
from typing import Any

# Non-blocking as far as the object knows (a send never waits: EAGAIN hands the blob to the transport instead), set
# without a syscall: the descriptor already is O_NONBLOCK (the loop made it so).
_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK


__all__ = ["Socket", "release", "socket_of"]


def socket_of(transport: Any) -> Socket | None:
    """A socket object over the transport's fd, for `send` only; None for a transport without a socket (a test
    double, a pipe). The caller must `release` it before the transport closes the fd (see the module docstring)."""
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    fd = raw.fileno()
    if fd < 0:
        return None
    # The family from the getsockname the constructor makes anyway (it checks that the fd is a socket); the loop's
    # `raw.family` / `.type` / `.proto` would each build an enum. A WebSocket's transport is always a stream; the
    # protocol number is only reported, never used (uvloop's own socket object says 0 too).
    return Socket(-1, _STREAM, 0, fd)


def release(sock: Socket | None) -> None:
    """Forget the fd without closing it (the transport closes it)."""
    if sock is not None:
        sock.detach()
