"""websockets' frame parser per connection: a message that arrives as one whole frame in one read taken without it,
and the parser of an open connection restarted without the handshake request it keeps.

Nearly every message a client sends (the hello of every join, a question, a vote) is one unfragmented frame that
arrives whole in one read. websockets' sans-I/O parser takes ~4 µs for it (the bytes into its StreamReader, its parser
generator resumed through `Frame.parse`, a `Frame`, an event list); such a frame needs only its header read and its
payload unmasked (websockets' own C `apply_mask`).

`whole_message` takes exactly that and nothing else, so the parser never sees a byte of it and stays where it was:
waiting for the next frame's header with an empty buffer. Its conditions are the ones under which websockets would
parse the same bytes into that one frame without an error: the protocol OPEN with nothing buffered and no fragmented
message under way, and the read exactly one frame with FIN set, no reserved bit, opcode text or binary, the mask bit
set, a length within the message limit and equal to what follows the header. Everything else (control frames,
fragments, a frame split across reads or several frames in one, anything websockets would refuse) goes to websockets
as before, which also answers every protocol error.
"""

from __future__ import annotations

from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

_FIN_TEXT = 0x80 | Opcode.TEXT.value  # FIN, no reserved bit, opcode text
_FIN_BINARY = 0x80 | Opcode.BINARY.value
_MASKED = 0x80


def whole_message(ws: ServerProtocol, data: bytes) -> tuple[Opcode, bytes] | None:
    """(opcode, payload) when `data` is one whole frame websockets would take as a message, else None (see above)."""
    head = data[0] if data else 0
    if head != _FIN_TEXT and head != _FIN_BINARY:
        return None
    if (
        ws.state is not State.OPEN
        or ws.current_size is not None
        or ws.reader.buffer
        or ws.max_fragment_size is not None
    ):
        return None
    length = data[1] ^ _MASKED if len(data) > 1 else 128
    if length < 126:
        start = 6
    elif length == 126:
        start, length = 8, int.from_bytes(data[2:4], "big")
    elif length == 127:
        start, length = 14, int.from_bytes(data[2:10], "big")
    else:
        return None  # not masked: websockets fails the connection
    if start + length != len(data) or (ws.max_message_size is not None and length > ws.max_message_size):
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
