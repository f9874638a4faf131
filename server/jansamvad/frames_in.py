"""websockets' frame parser per connection: a message that arrives as one whole frame in one read taken without it,
the protocol made for a connection (`new_protocol`: at the first frame that needs it, when the edge answered the
upgrade), and the parser of an open connection restarted without the handshake request it keeps.

Nearly every message a client sends (the hello of every join, a question, a vote) is one unfragmented frame that
arrives whole in one read. websockets' sans-I/O parser takes ~4 µs for it (the bytes into its StreamReader, its parser
generator resumed through `Frame.parse`, a `Frame`, an event list); such a frame needs only its header read and its
payload unmasked (websockets' own C `apply_mask`).

`whole_message` takes exactly that and nothing else, so the parser never sees a byte of it and stays where it was:
waiting for the next frame's header with an empty buffer. Its conditions are the ones under which websockets would
parse the same bytes into that one frame without an error: the protocol OPEN with nothing buffered and no fragmented
message under way (or no protocol yet: a fresh one is all of that), and the read exactly one frame with FIN set, no
reserved bit, opcode text or binary, the mask bit set, a length within the message limit and equal to what follows
the header. A pong (the answer to every keepalive ping, keepalive.py) is taken the same way when its length fits the
first byte: websockets does nothing with one the node did not wait for, and the node waits for none. Everything else
(other control frames, fragments, a frame split across reads or several frames in one, anything websockets would
refuse) goes to websockets as before, which also answers every protocol error.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.frames import Opcode
from websockets.headers import parse_subprotocol
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from jansamvad.protocol.subprotocols import WITH_HELLO, choose

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

_FIN_TEXT = 0x80 | Opcode.TEXT.value  # FIN, no reserved bit, opcode text
_FIN_BINARY = 0x80 | Opcode.BINARY.value
_FIN_PONG = 0x80 | Opcode.PONG.value
_MASKED = 0x80

# websockets logs every open and close at INFO through this logger; at a million connections that is noise.
_ws_log = logging.getLogger("jansamvad.websockets")
_ws_log.setLevel(logging.WARNING)


def _select_subprotocol(_: ServerProtocol, offered: Any) -> Subprotocol | None:
    name = choose(offered)[0]  # as the edge chooses (edge.parse_upgrade)
    return None if name is None else Subprotocol(name)  # None: msgpack, or JSON with ?enc=json


def offered_hello(ws: ServerProtocol, request: Request) -> str | None:
    """The hello entry's text when websockets' handshake chose a `+hello` subprotocol (protocol/subprotocols.py)."""
    if ws.subprotocol not in WITH_HELLO:
        return None
    offered = request.headers.get_all("Sec-WebSocket-Protocol")
    return choose(item for value in offered for item in parse_subprotocol(value))[1]


def new_protocol(origins: list[Origin | None] | None, state: State, max_size: int) -> ServerProtocol:
    """websockets' protocol for a connection: CONNECTING to do the handshake, OPEN after the edge did it."""
    return ServerProtocol(
        origins=origins, select_subprotocol=_select_subprotocol, state=state, max_size=max_size, logger=_ws_log
    )


def whole_message(ws: ServerProtocol | None, data: bytes, max_size: int | None) -> tuple[Opcode, bytes] | None:
    """(opcode, payload) when `data` is one whole frame websockets would take as a message or a pong, else None (see
    above). `ws` None: the connection has no protocol yet, and `max_size` is its message limit."""
    head = data[0] if data else 0
    if head != _FIN_TEXT and head != _FIN_BINARY and head != _FIN_PONG:
        return None
    if ws is not None:
        if (
            ws.state is not State.OPEN
            or ws.current_size is not None
            or ws.reader.buffer
            or ws.max_fragment_size is not None
        ):
            return None
        max_size = ws.max_message_size
    length = data[1] ^ _MASKED if len(data) > 1 else 128
    if head == _FIN_PONG:
        if length >= 126 or 6 + length != len(data):  # a control frame's length fits its first byte
            return None
        return Opcode.PONG, apply_mask(data[6:], data[2:6])
    if length < 126:
        start = 6
    elif length == 126:
        start, length = 8, int.from_bytes(data[2:4], "big")
    elif length == 127:
        start, length = 14, int.from_bytes(data[2:10], "big")
    else:
        return None  # not masked: websockets fails the connection
    if start + length != len(data) or (max_size is not None and length > max_size):
        return None
    payload = apply_mask(data[start:], data[start - 4 : start])
    return (Opcode.TEXT if head == _FIN_TEXT else Opcode.BINARY), payload


def release_handshake(ws: ServerProtocol) -> None:
    """Free the handshake request (about 1.6 KiB of headers per idle connection).

    websockets' parser generator keeps the request as a local of its suspended frame for the whole connection. Once
    the connection is open, a fresh generator parses frames exactly like the old one (`ServerProtocol.parse` goes
    straight to frame parsing when the state is OPEN). It is swapped only when nothing is buffered, so the old
    generator has consumed no byte of a frame yet (RFC 6455 clients send nothing before the 101 anyway).
    """
    if not ws.reader.buffer:
        ws.parser = ws.parse()
        next(ws.parser)
