"""The client side of RFC 6455 and of the JanSamvad msgpack subprotocol, by hand and nothing more.

The bench holds tens of thousands of sockets per process, so there is no WebSocket library here: one pre-built upgrade
request, masked client frames built in one call, and a parser for the server's frames (never masked, never
fragmented by JanSamvad).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import msgpack

SUBPROTOCOL = "jansamvad.v1.msgpack"
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 8192


def upgrade_request(host: str, port: int, path: str = "/ws") -> bytes:
    """One request for every connection of a process: the key only has to be 16 random bytes in base64."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
        "\r\n"
    ).encode("ascii")


WITH_HELLO = SUBPROTOCOL + "+hello"
_PROTOCOL_LINE = b"\r\nSec-WebSocket-Protocol: "


def request_head(request: bytes) -> bytes:
    """An `upgrade_request` without its subprotocol line and blank line: the part every offer with a hello shares."""
    return request[: request.index(_PROTOCOL_LINE)]


def hello_offer(head: bytes, hello: dict[str, Any]) -> bytes:
    """The whole upgrade request from `request_head(...)` with the hello in its subprotocol offer (docs/protocol.md,
    section 1): the `+hello` name, the plain one for a node that does not take it, and the hello entry (the msgpack
    hello, base64url without padding)."""
    entry = base64.urlsafe_b64encode(msgpack.packb(hello)).rstrip(b"=")
    name = SUBPROTOCOL.encode()
    return head + _PROTOCOL_LINE + name + b"+hello, " + name + b", jansamvad.v1.hello." + entry + HEAD_END


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of an HTTP/1.1 response head (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final client frame (RFC 6455 section 5.3: every client frame is masked)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 0x10000:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


def message_frame(message: dict[str, Any]) -> bytes:
    """A protocol message as one masked binary frame."""
    return client_frame(OP_BINARY, msgpack.packb(message, use_bin_type=True))


def close_frame(code: int = 1000) -> bytes:
    return client_frame(OP_CLOSE, struct.pack("!H", code))


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete server frames in `data` as (first byte, payload), and the bytes of an incomplete last frame.

    The first byte carries FIN and the opcode; JanSamvad never fragments, and the caller treats FIN=0 as an error.
    """
    frames: list[tuple[int, bytes]] = []
    pos = 0
    end = len(data)
    while end - pos >= 2:
        first = data[pos]
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            if end - pos < 4:
                break
            length = (data[pos + 2] << 8) | data[pos + 3]
            start = pos + 4
        elif length == 127:
            if end - pos < 10:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            start = pos + 10
        stop = start + length
        if stop > end:
            break
        frames.append((first, data[start:stop]))
        pos = stop
    return frames, data[pos:]


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame from a stream, as (opcode, payload): for clients on asyncio streams (storm.py)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)
