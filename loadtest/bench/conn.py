"""One bench connection: an asyncio Protocol that upgrades, says hello and records when each speech event arrives.

There is no task per connection. The work per received frame is kept small because all client processes share one
core: split the frame, unpack the msgpack map, and for a speech event count it and its latency in the process-wide
`Recorder`. A speech text starts with the leader's `time.monotonic_ns()` at send time; CLOCK_MONOTONIC is one clock
for every process on a Linux machine, so receive minus send is the publish-to-receipt latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, cast

import msgpack

from . import wire
from .stats import Histogram, bucket

_monotonic_ns = time.monotonic_ns
_unpackb = msgpack.unpackb

HANDSHAKE, HELLO, OPEN, CLOSED = 0, 1, 2, 3


class Rejected(Exception):
    """The node answered the upgrade with something other than 101 (503 carries Retry-After)."""

    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class Closed(Exception):
    """The connection closed before `welcome`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code} before welcome")
        self.code = code


class HelloFailed(Exception):
    """The node answered `hello` with an `error` message instead of `welcome`."""

    def __init__(self, code: str) -> None:
        super().__init__(f"error {code} instead of welcome")
        self.code = code


class Recorder:
    """What every connection of one process received: per-seq counts, best and worst latency per seq, a histogram."""

    def __init__(self) -> None:
        self.reset()
        self.open_joined = 0  # connections past `welcome` and not yet lost
        self.closes: Counter[int] = Counter()  # close codes received from the node (or 1006 for a bare TCP close)
        self.wait_seq = 0
        self.wait_event: asyncio.Event | None = None

    def reset(self) -> None:
        self.counts: dict[int, int] = {}
        self.max_lat_ns: dict[int, int] = {}
        self.min_lat_ns: dict[int, int] = {}
        self.hist: Histogram = {}
        self.gaps = 0  # events skipped on a connection (seq jumped)
        self.dups = 0  # events seen twice or out of order on a connection
        self.bad_frames = 0
        self.other: Counter[str] = Counter()  # other message types (viewers, errors, ...)

    def speech(self, seq: int, text: str, now: int) -> None:
        lat = now - int(text[: text.index(" ")])
        count = self.counts.get(seq)
        if count is None:
            self.counts[seq] = 1
            self.max_lat_ns[seq] = self.min_lat_ns[seq] = lat
        else:
            self.counts[seq] = count + 1
            if lat > self.max_lat_ns[seq]:
                self.max_lat_ns[seq] = lat
            elif lat < self.min_lat_ns[seq]:
                self.min_lat_ns[seq] = lat
        key = bucket(lat // 1000)
        self.hist[key] = self.hist.get(key, 0) + 1
        if seq == self.wait_seq:
            self._check_wait()

    def _check_wait(self) -> None:
        if self.wait_event is not None and self.counts.get(self.wait_seq, 0) >= self.open_joined:
            self.wait_event.set()

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Until every joined connection of this process has received `seq`; False on timeout."""
        self.wait_seq, self.wait_event = seq, asyncio.Event()
        self._check_wait()
        try:
            async with asyncio.timeout(timeout):
                await self.wait_event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.wait_seq, self.wait_event = 0, None

    def lost(self, joined: bool, code: int) -> None:
        self.closes[code] += 1
        if joined:
            self.open_joined -= 1
            if self.wait_event is not None:
                self._check_wait()


class BenchConn(asyncio.Protocol):
    __slots__ = ("buf", "close_code", "hello", "joined", "last_seq", "recorder", "request", "state", "transport")

    def __init__(self, request: bytes, hello: bytes, recorder: Recorder, joined: asyncio.Future[dict[str, Any]]):
        self.request = request
        self.hello = hello
        self.recorder = recorder
        self.joined = joined
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.state = HANDSHAKE
        self.last_seq = 0
        self.close_code = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = _monotonic_ns()
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if self.state == HANDSHAKE:
            data = self._handshake(data)
            if not data:
                return
        frames, self.buf = wire.split_frames(data)
        for first, payload in frames:
            opcode = first & 0x0F
            if opcode == wire.OP_BINARY and first & 0x80:
                self.on_message(_unpackb(payload), now)
            elif opcode == wire.OP_PING:
                self.write(wire.client_frame(wire.OP_PONG, payload))
            elif opcode == wire.OP_CLOSE:
                self.close_code = wire.close_code(payload)
                self._abort()
                return
            elif opcode != wire.OP_PONG:
                self.recorder.bad_frames += 1

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self.state == OPEN
        self.state = CLOSED
        code = self.close_code or 1006
        self.recorder.lost(was_open, code)
        if not self.joined.done():
            self.joined.set_exception(Closed(code))
        self.transport = None

    # Protocol steps

    def _handshake(self, data: bytes) -> bytes:
        end = data.find(wire.HEAD_END)
        if end < 0:
            if len(data) > wire.MAX_HEAD_BYTES:
                self._abort()
            else:
                self.buf = data
            return b""
        status, headers = wire.parse_response_head(data[:end])
        if status != 101:
            if not self.joined.done():
                self.joined.set_exception(Rejected(status, float(headers.get("retry-after", "1") or 1)))
            self._abort()
            return b""
        self.state = HELLO
        self.write(self.hello)
        self.hello = b""
        return data[end + len(wire.HEAD_END) :]

    def on_message(self, msg: dict[str, Any], now: int) -> None:
        t = msg.get("t")
        seq = msg.get("seq")
        if seq is not None and t != "welcome" and t != "snapshot":
            # An event of the town hall's stream: it must be the next seq on this connection, exactly once.
            last = self.last_seq
            if seq != last + 1:
                if seq <= last:
                    self.recorder.dups += 1
                    return
                self.recorder.gaps += seq - last - 1
            self.last_seq = seq
            if t == "speech":
                self.recorder.speech(seq, msg["text"], now)
                return
        if self.state == HELLO and t == "error":
            if not self.joined.done():
                self.joined.set_exception(HelloFailed(str(msg.get("code"))))
            self._abort()
            return
        if t == "welcome" and self.state == HELLO:
            self.state = OPEN
            self.last_seq = msg["seq"]
            self.recorder.open_joined += 1
            if not self.joined.done():
                self.joined.set_result(msg)
        elif t is not None:
            self.recorder.other[str(t)] += 1

    # Writing and closing

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Leave politely (close frame) and drop the socket; the node sees the close frame or the reset."""
        if self.transport is not None and self.state == OPEN:
            self.transport.write(wire.close_frame(1000))
        self._abort()
