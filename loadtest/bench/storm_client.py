"""The storm bench's lean client: a real client of the protocol at a fraction of a streams client's CPU.

`StormClient` (storm.py, also tests/test_chaos.py) reads with asyncio streams: per rejoin a StreamReader and
StreamWriter, a reading task, an Event and a task to wait on it, and two awaits per frame. At 120,000 clients on this
machine its processes took 1.5 ms of CPU per rejoin, more than the node (docs/benchmarks.md, "Reconnect storm:
120,000"). `LeanStormClient` does the same protocol as one `asyncio.Protocol` per connection on uvloop, as the
million's lean client (lean.py) does: frames are split out of each read in one call, nothing is awaited per frame,
and the one coroutine per client (`connect`) awaits a single future per try.

What it still does, as the real clients do (docs/protocol.md):
- the WebSocket upgrade with `hello` (its citizen token and, after the first join, the `last_seq` it saw, so the node
  resumes it: `welcome.recovered`) in the subprotocol offer, as the citizen's page joins (docs/protocol.md, section
  1); with `in_offer=False`, or from a node that answers the plain `jansamvad.v1.msgpack`, the hello goes as the first
  frame after the 101;
- HTTP 503: waits `Retry-After` x0.5-1.5 (jitter) and tries again; a 503 without `Retry-After` is a failure;
- a refused, reset or silent (15 s) connect before the 101: backs off 0.1-0.5 s and tries again;
- closed after the 101 but before `welcome` (1013, 4008; docs/protocol.md says reconnect): 0.5-1.5 s, again;
- answers every ping with a pong; keeps every `speech` seq in arrival order (the bench checks the list is exactly
  the spoken seqs, in order, once each); anything it does not expect (an `error`, a frame it cannot parse, another
  HTTP status) is kept in `problems` and fails the bench.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any, cast

import msgpack

from . import wire
from .sockets import connect_from

HEAD_TIMEOUT_S = 15.0  # the streams client's wait for the response head
_unpackb = msgpack.unpackb

# How a try ended (the result of its future).
JOINED, REFUSED, CLOSED_EARLY = "joined", "refused", "closed_early"
# This process's tries closed after the 101 before `welcome`, by close code ("none": no close frame): which timeout
# of the node (4008 hello, 1013 join) a storm ran into.
EARLY_CLOSES: Counter[str] = Counter()
LATE_CLOSES: Counter[str] = Counter()  # the same after `welcome` (not the bench's own drops): why one fell behind


class _Try(asyncio.Protocol):
    """One connection of a client: from the connect to its loss. A try that was dropped reports nothing more."""

    __slots__ = ("client", "transport", "waiter", "buf", "upgraded", "timer")

    def __init__(self, client: LeanStormClient, waiter: asyncio.Future[Any]) -> None:
        self.client: LeanStormClient | None = client
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Any] | None = waiter
        self.buf = b""
        self.upgraded = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        assert self.client is not None
        self.transport.write(self.client.upgrade())
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self._end, REFUSED)

    def _end(self, outcome: Any) -> None:
        """This try is over before `welcome`: tell the waiting `connect` how, and let the socket go."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(outcome)
        self.waiter = None
        self.client = None
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            return
        if self.buf:
            data, self.buf = self.buf + data, b""
        if not self.upgraded:
            head_end = data.find(wire.HEAD_END)
            if head_end < 0:
                if len(data) > wire.MAX_HEAD_BYTES:
                    self._problem(client, f"response head over {wire.MAX_HEAD_BYTES} bytes")
                else:
                    self.buf = data
                return
            try:
                status, headers = wire.parse_response_head(data[:head_end])
            except ValueError as exc:
                self._problem(client, str(exc))
                return
            if status != 101:
                if status != 503:
                    self._problem(client, f"HTTP {status} to the upgrade")
                    return
                retry_after = headers.get("retry-after")
                if retry_after is None or not retry_after.isdigit():  # docs/protocol.md: every 503 says when
                    self._problem(client, f"HTTP 503 without a Retry-After in seconds: {retry_after!r}")
                    return
                self._end(int(retry_after))
                return
            self.upgraded = True
            if self.timer is not None:  # from here the node's hello and join timeouts bound the wait
                self.timer.cancel()
                self.timer = None
            chosen = headers.get("sec-websocket-protocol")
            if chosen not in (wire.SUBPROTOCOL, wire.WITH_HELLO if client.in_offer else None):
                self._problem(client, f"the node chose {chosen!r}, which this client did not offer")
                return
            if chosen != wire.WITH_HELLO:  # not taken from the offer (or not offered): the hello goes as a frame
                self.transport.write(client.hello())  # type: ignore[union-attr]
            data = data[head_end + 4 :]
        frames, self.buf = wire.split_frames(data)
        for first, payload in frames:
            opcode = first & 0x0F
            if first & 0x80 == 0:
                self._problem(client, "a fragmented frame (the node never fragments)")
                return
            if opcode == wire.OP_BINARY:
                try:
                    message = _unpackb(payload)
                    t = message["t"]
                except Exception as exc:
                    self._problem(client, f"an unreadable message: {exc!r}")
                    return
                if t == "speech":
                    seq = message["seq"]
                    client.seqs.append(seq)
                    client.last_seq = seq
                elif t == "welcome":
                    client.recovered = message.get("recovered")
                    if self.waiter is not None and not self.waiter.done():
                        self.waiter.set_result(JOINED)
                    self.waiter = None
                elif t == "snapshot":
                    seq = message["seq"]
                    client.last_seq = seq if client.last_seq is None else max(client.last_seq, seq)
                elif t == "error":
                    self._problem(client, f"error {message!r}")
                    return
            elif opcode == wire.OP_PING:
                self.transport.write(wire.client_frame(wire.OP_PONG, payload))  # type: ignore[union-attr]
            elif opcode == wire.OP_CLOSE:
                (EARLY_CLOSES if self.waiter is not None else LATE_CLOSES)[str(wire.close_code(payload))] += 1
                self._end(CLOSED_EARLY)  # after welcome nobody waits: the bench's next storm reconnects it
                return
            else:
                self._problem(client, f"opcode {opcode:#x}")
                return

    def _problem(self, client: LeanStormClient, what: str) -> None:
        client.problems.append(what)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(AssertionError(what))
            self.waiter = None
        self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is None and self.client is not None:  # joined, and gone without a close frame
            LATE_CLOSES["none"] += 1
        if self.waiter is not None:  # lost before welcome: before the 101 a refused connect, after it a close
            if self.upgraded:
                EARLY_CLOSES["none"] += 1
            self._end(CLOSED_EARLY if self.upgraded else REFUSED)

    def drop(self) -> None:
        """Gone without a close handshake; nothing of it counts any more."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.cancel()
        self.waiter = None
        self._end(None)


class LeanStormClient:
    """`StormClient`'s interface (connect, drop, stop and the same counters), on one protocol object per try."""

    __slots__ = (
        "port", "token", "rng", "source", "in_offer", "request", "head", "seqs", "last_seq", "rejected",
        "most_retry_after", "refused", "closed_early", "recovered", "problems", "_try",
    )  # fmt: skip

    def __init__(
        self, port: int, token: str, rng: random.Random, source: str | None = None, in_offer: bool = True
    ) -> None:
        self.port, self.token, self.rng, self.source, self.in_offer = port, token, rng, source, in_offer
        self.request, self.head = _request(port)
        self.seqs: list[int] = []
        self.last_seq: int | None = None
        self.rejected = 0  # HTTP 503 answers
        self.most_retry_after = 0
        self.refused = 0  # connects refused, reset or unanswered before the 101
        self.closed_early = 0  # closed after the 101 but before welcome, and reconnected
        self.recovered: bool | None = None
        self.problems: list[str] = []  # anything a correct node never sends: fails the bench
        self._try: _Try | None = None

    def _hello(self) -> dict[str, object]:
        message: dict[str, object] = {"t": "hello", "token": self.token}
        if self.last_seq is not None:
            message["last_seq"] = self.last_seq
        return message

    def hello(self) -> bytes:
        """The hello as a frame: for a node that did not take it from the offer."""
        return wire.message_frame(self._hello())

    def upgrade(self) -> bytes:
        """This try's upgrade request: with the hello (and the `last_seq` of now) in its offer, or the shared one."""
        if self.in_offer:
            return wire.hello_offer(self.head, self._hello())
        return self.request

    async def connect(self) -> None:
        """Until joined: each try connects, upgrades and says hello; a 503 or an early close is tried again."""
        loop = asyncio.get_running_loop()
        rng = self.rng
        while True:
            waiter: asyncio.Future[Any] = loop.create_future()
            attempt = self._try = _Try(self, waiter)
            try:
                if self.source:
                    sock = await connect_from(self.source, "127.0.0.1", self.port)
                    await loop.create_connection(lambda a=attempt: a, sock=sock)
                else:
                    await loop.create_connection(lambda a=attempt: a, "127.0.0.1", self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                continue
            outcome = await waiter  # an AssertionError for a problem
            if outcome == JOINED:
                return
            if outcome == REFUSED:
                self.refused += 1
                await asyncio.sleep(rng.uniform(0.1, 0.5))
            elif outcome == CLOSED_EARLY:
                self.closed_early += 1
                await asyncio.sleep(rng.uniform(0.5, 1.5))
            else:
                self.rejected += 1
                self.most_retry_after = max(self.most_retry_after, outcome)
                await asyncio.sleep(outcome * rng.uniform(0.5, 1.5))

    def drop(self) -> None:
        """The connection vanishes without a close handshake (a network blip, a load balancer restart)."""
        if self._try is not None:
            self._try.drop()
            self._try = None

    async def stop(self) -> None:
        self.drop()


_REQUESTS: dict[int, tuple[bytes, bytes]] = {}


def _request(port: int) -> tuple[bytes, bytes]:
    """One upgrade request per port for all the clients of a process, and its head (for the offers with a hello)."""
    if port not in _REQUESTS:
        request = wire.upgrade_request("127.0.0.1", port)
        _REQUESTS[port] = request, wire.request_head(request)
    return _REQUESTS[port]
