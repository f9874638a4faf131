"""The floor: a minimal WebSocket broadcaster with no engine at all, to measure what one write per listener costs.

It accepts the bench's citizens (upgrade, any hello, a `welcome`), then on command writes one pre-framed speech to
every connection with `transport.write`, exactly the syscall path of the node's fan-out, and nothing else: no rooms,
no ticks, no buffer checks. Node CPU per delivery minus this process's CPU per delivery is what the engine adds.

Commands are JSON lines on stdin (like worker.py): `broadcast {text_bytes}` → `{seq}`; `count` → `{conns}`.
The process exits on `exit`, at stdin EOF, or after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
import time
from typing import Any, cast

import msgpack
import uvloop

from jansamvad.protocol.codec import OP_BINARY, server_frame

from .children import stdin_commands
from .leader import speech_text

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FloorConn(asyncio.Protocol):
    __slots__ = ("buf", "conns", "state", "transport")

    def __init__(self, conns: dict[FloorConn, None]) -> None:
        self.conns = conns
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.state = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.state == 0:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            key = b""
            for line in self.buf[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: jansamvad.v1.msgpack\r\n\r\n"
            )
            self.state, data, self.buf = 1, self.buf[end + 4 :], b""
            if not data:
                return
        if self.state == 1:  # the hello: not checked, this is not the node
            self.transport.write(server_frame(msgpack.packb({"t": "welcome", "seq": 0}), OP_BINARY))
            self.state = 2
            self.conns[self] = None
        elif data and data[0] & 0x0F == 0x8:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.pop(self, None)
        self.transport = None


async def serve(port: int, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    conns: dict[FloorConn, None] = {}
    server = await loop.create_server(lambda: FloorConn(conns), "127.0.0.1", port, backlog=4096)
    seq = 0
    try:
        async for cmd in stdin_commands(lifetime):
            reply: dict[str, Any]
            if cmd["op"] == "broadcast":
                seq += 1
                message = {"t": "speech", "seq": seq, "text": speech_text(f"f{seq}", int(cmd["text_bytes"]))}
                frame = server_frame(
                    msgpack.packb({**message, "final": True, "ts": int(time.time() * 1000)}), OP_BINARY
                )
                for conn in list(conns):
                    if conn.transport is not None:
                        conn.transport.write(frame)
                reply = {"seq": seq}
            else:
                reply = {"conns": len(conns)}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        server.close()
        for conn in list(conns):
            if conn.transport is not None:
                conn.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.lifetime))


if __name__ == "__main__":
    main()
