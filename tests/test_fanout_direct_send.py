"""Direct sends (issue 19 item 4, direct_send.py): the fan-out sends on a listener's socket while its transport holds
nothing; a partial send or EAGAIN hands the rest to the transport, and everything after it goes through the transport
until it drained, so frames keep their order; the slow-consumer cap and its 4009 still hold; the socket object never
closes the transport's file descriptor. The node tests run with the sends batched through io_uring
(`--io-uring on`, uring_send.py) and with one send(2) each (`off`, the fallback)."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import msgpack
import pytest

from jansamvad.connection import ConnState, WsConnection
from jansamvad.hub import Hub
from jansamvad.protocol.codes import CloseCode
from jansamvad.server import RunningServer
from jansamvad.uring_send import open_sender
from tests.helpers import RawClient, joined, make_hall
from tests.test_fanout import frames, settle, started
from tests.test_fanout_fast_path import FastRecorder, connection_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture(params=["on", "off"])
def io_uring(request: pytest.FixtureRequest) -> str:
    if request.param == "on":
        ring = open_sender("auto")
        if ring is None:
            pytest.skip("io_uring is not available on this machine (uring_send.py falls back to direct sends)")
        ring.close()
    return request.param  # type: ignore[no-any-return]


def sends_went(server: RunningServer, io_uring: str) -> None:
    """The broadcasts took the path asked for: batches through the ring, or no ring at all."""
    sender = server.node.fanout.sender
    if io_uring == "on":
        assert sender is not None and sender.usable and sender.sends > 0
    else:
        assert sender is None


SPEECHES = 30
TEXT = "सबको पहुँचना चाहिए।" * 50  # ~2.9 KB of UTF-8 per speech: 30 of them overflow 2 x 4 KiB of kernel buffers


async def stalled_citizen(server: RunningServer, token: str, sub: str) -> tuple[RawClient, WsConnection]:
    """A joined citizen that stopped reading, with small kernel buffers on both ends (a stalled phone)."""
    client = await RawClient.open(server, rcvbuf=4096)
    client.send_message({"t": "hello", "token": token})
    async with asyncio.timeout(5):
        while not (server.node.hub.users.get(sub) and connection_of(server, sub).paused is None):
            await asyncio.sleep(0.02)  # welcome, snapshot and the resume through the flusher
    await asyncio.sleep(0.05)
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]  # asyncio's socket transport
    return client, connection_of(server, sub)


async def speeches_read(client: RawClient, count: int) -> list[dict[str, Any]]:
    """Read frames until `count` speech events came (other events in between are skipped)."""
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    got: list[dict[str, Any]] = []
    while len(got) < count:
        opcode, payload = await client.read_frame()
        assert opcode == 0x2, f"unexpected opcode {opcode}"
        message = msgpack.unpackb(payload)
        if message.get("t") == "speech":
            got.append(message)
    return got


async def test_fanout_direct_send_partial_send_hands_the_rest_to_the_transport_in_order(
    make_server: Any, io_uring: str
) -> None:
    server = await make_server(
        send_buffer_bytes=4096, staff_msgs_per_s=10_000.0, staff_msg_burst=10_000, io_uring=io_uring
    )
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    client, conn = await stalled_citizen(server, hall.citizen_token(sub="c-stalled"), "c-stalled")
    assert conn.sock is not None and conn.fast_write == conn.sock.send  # direct sends while the transport is empty

    acks = [await leader.request({"t": "speech", "text": f"{i} {TEXT}"}) for i in range(SPEECHES)]
    async with asyncio.timeout(5):
        while not conn.held:  # the last speeches' flush
            await asyncio.sleep(0.02)
    # The kernel's buffers filled: a send took part of a blob (or none), the transport holds the rest and every
    # later speech queued behind it.
    assert conn.held and conn.fast_write is None
    assert conn.transport is not None and conn.transport.get_write_buffer_size() > 0
    assert server.node.slow_consumer_drops == 0  # far under max_buffered_bytes

    got = await speeches_read(client, SPEECHES)
    assert [m["seq"] for m in got] == [ack["seq"] for ack in acks]
    assert [m["text"] for m in got] == [f"{i} {TEXT}" for i in range(SPEECHES)]  # no frame cut or spliced
    async with asyncio.timeout(5):
        while conn.held:
            await asyncio.sleep(0.02)
    assert conn.fast_write == conn.sock.send  # drained: direct sends again

    ack = await leader.request({"t": "speech", "text": "फिर से सीधे"})
    (after,) = await speeches_read(client, 1)
    assert after["seq"] == ack["seq"]
    sends_went(server, io_uring)


async def test_fanout_direct_send_stalled_reader_still_gets_4009(make_server: Any, io_uring: str) -> None:
    server = await make_server(
        send_buffer_bytes=4096,
        max_buffered_bytes=16 * 1024,
        staff_msgs_per_s=10_000.0,
        staff_msg_burst=10_000,
        io_uring=io_uring,
    )
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    reader = await joined(server, hall.citizen_token(sub="c-reader"))
    client, conn = await stalled_citizen(server, hall.citizen_token(sub="c-stalled"), "c-stalled")
    assert conn.fast_write is not None

    for i in range(SPEECHES):
        ack = await leader.request({"t": "speech", "text": f"{i} {TEXT}"})
        assert (await reader.recv_until(lambda m: m.get("t") == "speech"))["seq"] == ack["seq"]
    # ~87 KB of speech against 16 KiB of the node's buffer and 2 x 4 KiB of the kernel's: closed with 4009 once.
    assert server.node.slow_consumer_drops == 1
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    assert await client.close_code() == CloseCode.SLOW_CONSUMER
    sends_went(server, io_uring)


async def test_fanout_direct_send_socket_is_detached_when_the_connection_is_lost(make_server: Any) -> None:
    server = await make_server()
    hall = await make_hall(server)
    citizen = await joined(server, hall.citizen_token(sub="c-gone"))
    await asyncio.sleep(0.1)
    conn = connection_of(server, "c-gone")
    sock = conn.sock
    assert sock is not None and sock.fileno() >= 0
    await citizen.close()
    async with asyncio.timeout(5):
        while conn.state is not ConnState.CLOSED:
            await asyncio.sleep(0.02)
    # Detached in connection_lost, before the transport closed the fd: the object never closes a number the kernel
    # may already have given to the next connection.
    assert conn.sock is None and sock.fileno() == -1
    del sock
    await joined(server, hall.citizen_token(sub="c-next"))  # the node goes on accepting on its fds


async def test_fanout_direct_send_rest_of_a_partial_send_and_later_ticks_keep_their_order() -> None:
    fanout = await started(tick_s=0.001)
    hub = Hub()
    partial, again = FastRecorder(), FastRecorder()
    partial.take = 5  # the kernel took 5 bytes of the blob
    again.take = 0  # EAGAIN: it took none
    whole = FastRecorder()
    for listener in (partial, again, whole):
        hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    fanout.enqueue(room, 1, {"t": "speech", "text": "पहला"})
    await settle()
    fanout.enqueue(room, 2, {"t": "speech", "text": "दूसरा"})
    await settle()
    for listener in (partial, again, whole):
        assert [frames(b"".join(listener.writes))] == [
            [
                {"t": "speech", "text": "पहला", "seq": 1},
                {"t": "speech", "text": "दूसरा", "seq": 2},
            ]
        ]
    assert [sent for _, sent in partial.rests] == [5] and [sent for _, sent in again.rests] == [0]
    assert whole.rests == []
    await fanout.stop()


async def test_fanout_direct_send_listeners_gone_mid_fanout_spare_the_rest(make_server: Any, io_uring: str) -> None:
    # Three writes per slice: every batch holds listeners whose peer has gone (reset) next to ones still reading.
    server = await make_server(writes_per_yield=3, staff_msgs_per_s=10_000.0, staff_msg_burst=10_000, io_uring=io_uring)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    stay, gone = [], []
    for i in range(6):  # joined alternately: the room's members interleave
        stay.append(await joined(server, hall.citizen_token(sub=f"c-stay-{i}")))
        raw = await RawClient.open(server)
        raw.send_message({"t": "hello", "token": hall.citizen_token(sub=f"c-gone-{i}")})
        gone.append(raw)
    async with asyncio.timeout(5):
        while not all(
            server.node.hub.users.get(f"c-gone-{i}") and connection_of(server, f"c-gone-{i}").paused is None
            for i in range(6)
        ):
            await asyncio.sleep(0.02)
    first = await leader.request({"t": "speech", "text": "सब सुन रहे हैं"})
    for raw in gone:  # RST, and the leader speaks before the node has read it: sends to a dead peer, mid-batch
        raw.writer.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        raw.writer.transport.abort()
    acks = [first] + [await leader.request({"t": "speech", "text": f"{i} बाकी के लिए"}) for i in range(5)]
    for session in stay:
        got = [await session.recv_until(lambda m: m.get("t") == "speech") for _ in acks]
        assert [m["seq"] for m in got] == [ack["seq"] for ack in acks]  # every speech, once, in order
    async with asyncio.timeout(5):
        while any(server.node.hub.users.get(f"c-gone-{i}") for i in range(6)):
            await asyncio.sleep(0.02)  # the node found every reset peer and let it go
    ack = await leader.request({"t": "speech", "text": "अंत"})
    for session in stay:
        assert (await session.recv_until(lambda m: m.get("t") == "speech"))["seq"] == ack["seq"]
    sends_went(server, io_uring)
