"""The kernel's send buffer of a WebSocket (`--send-buffer-bytes`): how much a stalled reader can hide in the kernel.

Linux autotunes a TCP socket's send buffer from its MSS and congestion window, up to `net.ipv4.tcp_wmem`'s maximum
(4 MB by default): on loopback (64 KB MSS) that is megabytes per socket right after the handshake, on a real link
tens to hundreds of KB. Whatever the kernel holds is invisible to the node's own cap (`max_buffered_bytes`), so a
phone that stopped reading is skipped (audio) or closed with 4009 (speech) only after both have filled. A fixed
SO_SNDBUF bounds the kernel's share: the slow-consumer policy then acts after about max_buffered_bytes + twice this,
and the kernel memory a deployment of 2G phones can pin is bounded too. 0 keeps the kernel's autotuning.
"""

from __future__ import annotations

import socket
from typing import Any


def cap_send_buffer(transport: Any, size: int) -> None:
    """Fix the send buffer of the transport's socket at `size` bytes (Linux reports and uses twice that).

    Setting SO_SNDBUF turns the kernel's autotuning off for this socket, which is the point. A transport without a
    socket (a test double, a pipe) is left alone.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
