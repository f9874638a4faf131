"""The bench's load client (loadtest/bench) without sockets: frames, masking, the receipt bookkeeping, percentiles."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from loadtest.bench import wire
from loadtest.bench.conn import OPEN, BenchConn, HelloFailed, Recorder
from loadtest.bench.stats import bucket, hist_percentiles, merge, percentiles
from loadtest.bench.targets import CPU_PER_DELIVERY, MEMORY

from jansamvad.protocol.codec import OP_BINARY, server_frame


def unmask(frame: bytes) -> tuple[int, bytes]:
    """What a server reads: opcode and unmasked payload of one client frame."""
    first, second = frame[0], frame[1]
    assert first & 0x80 and second & 0x80, "final and masked"
    length, pos = second & 0x7F, 2
    if length == 126:
        (length,), pos = struct.unpack("!H", frame[2:4]), 4
    elif length == 127:
        (length,), pos = struct.unpack("!Q", frame[2:10]), 10
    key, payload = frame[pos : pos + 4], frame[pos + 4 :]
    assert len(payload) == length
    return first & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_client_frames_are_masked_and_round_trip(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert unmask(wire.client_frame(wire.OP_BINARY, payload)) == (wire.OP_BINARY, payload)


def test_split_frames_keeps_an_incomplete_tail() -> None:
    frames = [server_frame(b"a" * n, OP_BINARY) for n in (3, 200, 70_000)]
    data = b"".join(frames)
    for cut in (1, 2, 3, len(frames[0]) + 1, len(frames[0]) + 3, len(data) - 1):
        done, rest = wire.split_frames(data[:cut])
        again, tail = wire.split_frames(rest + data[cut:])
        assert [p for _, p in done + again] == [b"a" * 3, b"a" * 200, b"a" * 70_000]
        assert tail == b""


def test_response_head_and_close_code() -> None:
    status, headers = wire.parse_response_head(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nX: y")
    assert status == 503 and headers["retry-after"] == "2"
    with pytest.raises(ValueError):
        wire.parse_response_head(b"SSH-2.0-OpenSSH")
    assert wire.close_code(struct.pack("!H", 4009) + b"slow") == 4009
    assert wire.close_code(b"") == 1005


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def frame(message: dict[str, Any]) -> bytes:
    return server_frame(msgpack.packb(message), OP_BINARY)


def speech(seq: int, sent_ns: int) -> bytes:
    return frame({"t": "speech", "seq": seq, "text": f"{sent_ns} r{seq} नमस्ते", "final": True, "ts": 0})


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(
    loop: asyncio.AbstractEventLoop, recorder: Recorder
) -> tuple[BenchConn, FakeTransport, asyncio.Future[dict[str, Any]]]:
    joined: asyncio.Future[dict[str, Any]] = loop.create_future()
    conn = BenchConn(b"GET /ws ...", b"HELLO", recorder, joined)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, joined


def test_upgrade_hello_welcome_and_speech_receipts_in_one_read(loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    conn, transport, joined = connect(loop, recorder)
    sent = time.monotonic_ns() - 3_000_000  # 3 ms ago
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    data += frame({"t": "welcome", "seq": 4}) + frame({"t": "snapshot", "seq": 4})
    conn.data_received(data + speech(5, sent) + speech(6, sent)[:7])  # the last frame arrives in two reads
    conn.data_received(speech(6, sent)[7:] + server_frame(b"", 0x9))
    assert transport.written[:2] == [b"GET /ws ...", b"HELLO"]
    assert unmask(transport.written[2]) == (wire.OP_PONG, b"")
    assert conn.state == OPEN and joined.result()["seq"] == 4
    assert recorder.counts == {5: 1, 6: 1} and recorder.open_joined == 1
    assert 3_000_000 <= recorder.max_lat_ns[5] < 1_000_000_000
    assert (recorder.gaps, recorder.dups) == (0, 0)


def test_gaps_and_duplicates_are_counted_not_recorded(loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    conn, _, joined = connect(loop, recorder)
    now = time.monotonic_ns()
    conn.data_received(b"HTTP/1.1 101 OK\r\n\r\n" + frame({"t": "welcome", "seq": 0}))
    conn.data_received(speech(1, now) + speech(3, now) + speech(3, now) + speech(2, now))
    assert recorder.counts == {1: 1, 3: 1}
    assert (recorder.gaps, recorder.dups) == (1, 2)


def test_an_error_instead_of_welcome_fails_the_join(loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    conn, transport, joined = connect(loop, recorder)
    conn.data_received(b"HTTP/1.1 101 OK\r\n\r\n" + frame({"t": "error", "code": "internal", "msg": "x"}))
    assert isinstance(joined.exception(), HelloFailed) and transport.aborted


def test_histogram_buckets_and_percentiles() -> None:
    assert [bucket(v) for v in (0, 255, 256, 1000, 123_456)] == [0, 255, 256, 1000, 123_392]
    assert all(abs(bucket(v) - v) <= v * 0.008 for v in range(1, 200_000, 997))
    hist = merge({}, {"1000": 98, "2000": 1})
    merge(hist, {3000: 1})
    assert hist_percentiles(hist) == {"count": 100, "p50": 1.0, "p90": 1.0, "p99": 2.0, "p99.9": 3.0, "max": 3.0}
    assert percentiles([5.0, 1.0, 3.0], (50,)) == {"count": 3, "p50": 3.0, "max": 5.0}


def test_targets_are_only_judged_at_their_size() -> None:
    assert MEMORY.judge(5.5, "N = 19,500", 19_500)["status"] == "met"
    assert CPU_PER_DELIVERY.judge(10.4, "N = 19,520", 19_520)["status"] == "missed"
    assert CPU_PER_DELIVERY.judge(4.0, "N = 1,000", 1_000)["status"] == "indicative"


@pytest.mark.anyio
@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
async def test_read_frame_reads_server_frames_of_every_length_from_a_stream(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    reader = asyncio.StreamReader()
    reader.feed_data(server_frame(payload, OP_BINARY) + server_frame(b"p", wire.OP_PING))
    assert await wire.read_frame(reader) == (wire.OP_BINARY, payload)
    assert await wire.read_frame(reader) == (wire.OP_PING, b"p")
