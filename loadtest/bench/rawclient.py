"""A lean raw WebSocket citizen for the one-off bench scripts (idle, questions, reactions): hand-written upgrade and
framing over an asyncio protocol, msgpack messages handed to `on_message`. (The main bench uses `conn.py`.)"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import msgpack

HEAD = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: jansamvad.v1.msgpack\r\n\r\n"
)


def masked(payload: bytes) -> bytes:
    """A client frame (RFC 6455 5.3: clients mask) carrying one binary message."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes((0x82, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x82, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawCitizen(asyncio.Protocol):
    """Upgrades, sends `hello`, resolves `ready` on the snapshot, then hands every message to `on_message`."""

    def __init__(self, hello: bytes, ready: asyncio.Future[None]) -> None:
        self.hello, self.ready, self.buf, self.upgraded = hello, ready, b"", False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(HEAD.format(key=base64.b64encode(os.urandom(16)).decode()).encode())

    def send(self, message: dict[str, Any]) -> None:
        self.transport.write(masked(msgpack.packb(message)))

    def on_message(self, message: dict[str, Any]) -> None:
        """For subclasses: every message after the snapshot."""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded, self.buf = True, self.buf[end + 4 :]
            self.transport.write(masked(self.hello))
        while len(self.buf) >= 2:
            n, start = self.buf[1] & 0x7F, 2
            if n >= 126:
                start = 4 if n == 126 else 10
                if len(self.buf) < start:
                    return
                n = int.from_bytes(self.buf[2:start], "big")
            if len(self.buf) < start + n:
                return
            payload, self.buf = self.buf[start : start + n], self.buf[start + n :]
            message = msgpack.unpackb(payload)
            if message.get("t") == "snapshot" and not self.ready.done():
                self.ready.set_result(None)
            else:
                self.on_message(message)
