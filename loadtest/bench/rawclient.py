"""A lean raw WebSocket citizen for the one-off bench scripts (idle, questions, reactions): the upgrade and framing of
`wire.py` over an asyncio protocol, msgpack messages handed to `on_message`. (The main bench uses `conn.py`.)"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from loadtest.bench import wire


class RawCitizen(asyncio.Protocol):
    """Upgrades, sends `hello`, resolves `ready` on the snapshot, then hands every message to `on_message`."""

    def __init__(self, hello: bytes, ready: asyncio.Future[None]) -> None:
        self.hello, self.ready, self.buf, self.upgraded = hello, ready, b"", False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        transport.write(wire.upgrade_request(host, port))

    def send(self, message: dict[str, Any]) -> None:
        self.transport.write(wire.message_frame(message))

    def on_message(self, message: dict[str, Any]) -> None:
        """For subclasses: every message after the snapshot."""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(wire.HEAD_END)
            if end < 0:
                return
            self.upgraded, self.buf = True, self.buf[end + 4 :]
            self.transport.write(wire.client_frame(wire.OP_BINARY, self.hello))
        frames, self.buf = wire.split_frames(self.buf)
        for _, payload in frames:
            message = msgpack.unpackb(payload)
            if message.get("t") == "snapshot" and not self.ready.done():
                self.ready.set_result(None)
            else:
                self.on_message(message)
