"""A message in one whole frame, taken without websockets' parser (frames_in.py): taken only where websockets would
parse the same bytes into that one message (or pong) without an error, with the same opcode and payload; everything
else is left to websockets, the same with no protocol made yet as with a fresh one. A session joins whether its hello
comes whole or in pieces, and a connection the edge opened makes websockets' protocol only when it needs it."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import msgpack
import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from jansamvad.frames_in import whole_message
from jansamvad.server import RunningServer
from tests.helpers import RawClient, make_hall

pytestmark = pytest.mark.timeout(30)

MAX = 65_536


def protocol() -> ServerProtocol:
    return ServerProtocol(state=State.OPEN, max_size=MAX)


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True, wide: int = 0) -> bytes:
    """A client frame; `wide` 2 or 8 writes the length in that many bytes even when it would fit in fewer."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if wide == 8 or n > 0xFFFF:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    elif wide == 2 or n >= 126:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | n])
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def websockets_reads(data: bytes) -> tuple[Opcode, bytes] | None:
    """The one message websockets parses `data` into, leaving nothing behind; None for anything else."""
    ws = protocol()
    ws.receive_data(data)
    events = ws.events_received()
    if ws.parser_exc is not None or ws.data_to_send() or ws.reader.buffer or len(events) != 1:
        return None
    event = events[0]
    if not isinstance(event, Frame) or not event.fin or event.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.PONG):
        return None
    return event.opcode, bytes(event.data)


def cases() -> list[bytes]:
    out = []
    for opcode, fin, rsv, masked, size, wide in itertools.product(
        (0, 1, 2, 3, 8, 9, 10), (True, False), (0, 1, 4), (True, False), (0, 5, 125, 126, 300, MAX, MAX + 1), (0, 2, 8)
    ):
        if wide == 2 and size > 0xFFFF:
            continue
        out.append(frame(opcode, os.urandom(size), fin=fin, rsv=rsv, masked=masked, wide=wide))
    whole = frame(1, b'{"t": "hello"}')
    out += [whole[:-1], whole + b"\x00", whole + whole, whole[:1], whole[:2], b""]
    out.append(frame(1, b"no mask", masked=False) + b"\x00" * 4)  # as long as a masked one would be
    return out


def test_whole_message_agrees_with_websockets_and_takes_the_plain_frames() -> None:
    taken = 0
    for data in cases():
        fast = whole_message(protocol(), data, None)
        assert whole_message(None, data, MAX) == fast, data[:16]  # no protocol yet: what a fresh one gives
        if fast is not None:
            assert fast == websockets_reads(data), data[:16]
            taken += 1
        elif data and data[0] in (0x81, 0x82) and len(data) > 1 and data[1] & 0x80:
            # A plain masked text or binary frame with FIN: left to websockets only when it is not whole or too big.
            assert websockets_reads(data) is None or len(data) > MAX, data[:16]
    # Text and binary, each size within the limit in each way to write its length (MAX itself needs 8 bytes for it);
    # pongs of 0, 5 and 125 bytes with the length in the first byte (a longer one is an error websockets answers).
    assert taken == 2 * (5 * 3 + 2) + 3


def test_whole_message_leaves_a_protocol_that_is_not_idle_to_websockets() -> None:
    whole = frame(1, b"after")
    started = protocol()
    started.receive_data(frame(1, b"first part", fin=False))  # a fragmented message under way
    assert whole_message(started, whole, MAX) is None
    partial = protocol()
    partial.receive_data(whole[:3])  # half a frame buffered
    assert whole_message(partial, whole, MAX) is None
    failed = protocol()
    failed.receive_data(frame(1, b"reserved bit", rsv=4))  # read whole, then websockets failed the connection
    assert failed.state is not State.OPEN and not failed.reader.buffer and whole_message(failed, whole, MAX) is None
    limited = protocol()
    limited.max_message_size = 4  # a citizen's smaller limit after its join
    assert whole_message(limited, whole, MAX) is None
    idle = protocol()
    idle.receive_data(frame(2, b"one"))
    idle.events_received()
    assert whole_message(idle, whole, MAX) == (Opcode.TEXT, b"after")
    assert whole_message(None, whole, 4) is None  # no protocol yet: the limit given is the one looked at


@pytest.mark.anyio
@pytest.mark.parametrize("pieces", [1, 3])
async def test_whole_message_a_hello_in_one_read_or_in_pieces_joins(server: RunningServer, pieces: int) -> None:
    hall = await make_hall(server)
    client = await RawClient.open(server)
    hello = {"t": "hello", "token": hall.citizen_token(sub=f"c-{pieces}")}
    data = frame(2, msgpack.packb(hello, use_bin_type=True))
    step = -(-len(data) // pieces)
    for start in range(0, len(data), step):
        client.writer.write(data[start : start + step])
        await client.writer.drain()
        await asyncio.sleep(0.05)  # each piece its own read
    kinds: list[Any] = []
    while "snapshot" not in kinds:
        opcode, payload = await client.read_frame()
        assert opcode == 0x2
        kinds.append(msgpack.unpackb(payload)["t"])
    assert kinds[0] == "welcome"
    client.close()


@pytest.mark.anyio
async def test_whole_message_an_edge_connection_makes_websockets_protocol_only_when_it_needs_one(
    server: RunningServer,
) -> None:
    """A joined citizen whose frames all come whole (hello, pong, a ping message) holds no ServerProtocol; the first
    frame that needs websockets (a fragmented message) makes one, and the session goes on as before; a close too."""
    hall = await make_hall(server)
    client = await RawClient.open(server)
    client.send_message({"t": "hello", "token": hall.citizen_token(sub="c-lazy")})
    while msgpack.unpackb((await client.read_frame())[1])["t"] != "snapshot":
        pass
    (conn,) = [c for c in server.node.gateway.connections if c.client is not None and c.client.claims is not None]
    assert conn.ws is None
    conn.pinged = True  # every packet read clears it: seen cleared, the pong was read alone (nothing else was sent)
    client.send_frame(0xA, b"")  # an unasked pong: nothing to answer
    await client.writer.drain()
    async with asyncio.timeout(5):
        while conn.pinged:
            await asyncio.sleep(0.005)
    assert conn.ws is None
    client.send_message({"t": "ping", "id": 1})
    assert msgpack.unpackb((await client.read_frame())[1])["t"] == "pong"
    assert conn.ws is None
    ping = msgpack.packb({"t": "ping", "id": 2}, use_bin_type=True)
    client.send_frame(0x2, ping[:3], fin=False)  # a fragmented message: websockets' parser from here on
    client.send_frame(0x0, ping[3:])
    assert msgpack.unpackb((await client.read_frame())[1]) == {"t": "pong", "re": 2}
    assert conn.ws is not None
    client.send_frame(0x8, (1000).to_bytes(2, "big"))  # websockets answers the close, as before
    assert await client.close_code() == 1000


@pytest.mark.anyio
async def test_whole_message_a_node_closes_an_edge_connection_without_a_protocol_yet(server: RunningServer) -> None:
    """The node's own close (here a bad message after the join) makes the protocol it needs for the close frame."""
    hall = await make_hall(server)
    client = await RawClient.open(server)
    client.send_message({"t": "hello", "token": hall.citizen_token(sub="c-lazy-close")})
    while msgpack.unpackb((await client.read_frame())[1])["t"] != "snapshot":
        pass
    client.send_frame(0x1, b'{"t": "ping"}')  # text on the msgpack subprotocol: closed with 1003
    assert await client.close_code() == 1003
