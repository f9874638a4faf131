"""The lean load client of `make million`: one process holds up to ~19k real citizen sessions in little memory.

Each connection is a real client of the protocol: TCP connect, the WebSocket upgrade (subprotocol
jansamvad.v1.msgpack) with `hello` and its own citizen token (HS256, minted here with the run's secret, as the REST API
would) in the subprotocol offer, as the citizen's page joins (`--hello message`: the hello as the first frame after
the 101, the page's way before 2026-12-04), `welcome`, then it stays joined, answers every keepalive ping with a
pong, and checks the town hall's events by `seq` (each must be the next one on that connection: a gap or a repeat is
counted).

Lean, because at a million the load client is half of the machine's memory:
- one small object per connection (`LeanConn`, six slots) and its uvloop transport; no task, no future, no buffer
  once joined (the join's waiter is dropped after `welcome`, a partial frame is kept only until its rest arrives);
- what was received is counted process-wide (`Tally`: per seq, how many connections got it and when the last one
  did), not per connection;
- a small socket receive buffer (SO_RCVBUF, `--rcvbuf`), uvloop's one shared read buffer per process;
- tokens are minted one at a time at connect, with hmac from the standard library (no JWT library loaded).

Commands arrive as JSON lines on stdin, each answered by one JSON line on stdout (logs on stderr):
  open    {count}            open and join `count` more citizens at this process's handshake rate
  wait    {seq, timeout}     until every joined connection here has received event `seq`
  collect {}                 counts per seq, last receipt per seq, gaps, repeats, pings, closes, RSS, CPU
  exit    {}
The process exits by itself when stdin closes (the orchestrator is gone) or after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import resource
import socket
import sys
import time
from collections import Counter
from typing import Any, cast

import msgpack
import uvloop

from . import wire
from .children import stdin_commands
from .sockets import connect_from

HANDSHAKE, HELLO, OPEN, CLOSED = 0, 1, 2, 3
# A join that fails the way a busy cluster fails (503 with Retry-After; closed with 1013 "try again later" when the
# node's join could not finish in --join-timeout; the connection lost or timed out before `welcome`) is tried again,
# as the citizen page does (client_web/js/conn.js: backoff from 0.5 s doubling, with jitter), at most this many tries
# in all. Every retry is counted by its reason; only a join that failed every try counts as failed.
MAX_ATTEMPTS = 6
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.5, 10.0
RETRY_CLOSE_CODES = frozenset({1001, 1012, 1013})  # going away, restarting, try again later (docs/protocol.md)
_unpackb = msgpack.unpackb
_now = time.monotonic_ns


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class Minter:
    """Citizen tokens exactly as `TokenService.issue` makes them (HS256 JWT: sub, role, th, iat, exp, aud, name)."""

    HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')

    def __init__(self, secret: str, th: str, ttl_s: int) -> None:
        self.key = secret.encode()
        self.th = th
        self.ttl_s = ttl_s

    def hello(self, sub: str, in_offer: bool = False) -> bytes:
        """The hello frame, or with `in_offer` the whole upgrade request with the hello in its offer."""
        now = int(time.time())
        claims = {"sub": sub, "role": "citizen", "th": self.th, "iat": now, "exp": now + self.ttl_s, "aud": "jansamvad"}
        claims["name"] = "नागरिक"
        signing = self.HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = signing + b"." + _b64(hmac.new(self.key, signing, hashlib.sha256).digest())
        hello = {"t": "hello", "token": token.decode()}
        if in_offer:
            return wire.hello_offer(REQUEST_HEAD, hello)
        return wire.message_frame(hello)


class Tally:
    """Everything this process's connections received, counted once for all of them."""

    def __init__(self) -> None:
        self.joined = 0  # past `welcome` and not lost since
        self.counts: dict[int, int] = {}  # seq -> connections that received it (each at most once: see LeanConn)
        self.last_ns: dict[int, int] = {}  # seq -> when the last of them did (CLOCK_MONOTONIC, one clock per machine)
        self.gaps = 0
        self.repeats = 0
        self.pings = 0
        self.bad_frames = 0
        self.closes: Counter[int] = Counter()
        self.other: Counter[str] = Counter()
        self.wait_seq = 0
        self.wait_event: asyncio.Event | None = None

    def event(self, seq: int, now: int) -> None:
        self.counts[seq] = self.counts.get(seq, 0) + 1
        self.last_ns[seq] = now
        if seq == self.wait_seq:
            self.check_wait()

    def check_wait(self) -> None:
        if self.wait_event is not None and self.counts.get(self.wait_seq, 0) >= self.joined:
            self.wait_event.set()


TALLY = Tally()


class Rejected(Exception):
    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


class ClosedEarly(Exception):
    """The node closed the connection with a close frame before `welcome`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code} before welcome")
        self.code = code


class LostEarly(ConnectionError):
    """The connection ended without a close frame before `welcome`: `reason` names the stage and the OS error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeanConn(asyncio.Protocol):
    __slots__ = ("buf", "hello", "last_seq", "state", "transport", "waiter")

    def __init__(self, hello: bytes, waiter: asyncio.Future[None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.hello = hello
        self.waiter: asyncio.Future[None] | None = waiter
        self.buf = b""
        self.state = HANDSHAKE
        self.last_seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.hello.startswith(b"GET "):  # the request with the hello in its offer
            self.transport.write(self.hello)
            self.hello = b""
        else:
            self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        now = _now()
        if self.buf:
            data, self.buf = self.buf + data, b""
        pos, end = 0, len(data)
        if self.state == HANDSHAKE:
            head_end = data.find(wire.HEAD_END)
            if head_end < 0:
                self.buf = data if end <= wire.MAX_HEAD_BYTES else b""
                return
            status, headers = wire.parse_response_head(data[:head_end])
            if status != 101:
                self._fail(Rejected(status, float(headers.get("retry-after", "1") or 1)))
                return
            self.state = HELLO
            if self.hello:  # the hello goes as a frame (--hello message)
                self.transport.write(self.hello)  # type: ignore[union-attr]
                self.hello = b""
            elif (chosen := headers.get("sec-websocket-protocol")) != wire.WITH_HELLO:  # the offer's hello not taken
                self._fail(RuntimeError(f"the node chose {chosen!r}, not {wire.WITH_HELLO}"))
                return
            pos = head_end + 4
        frames, self.buf = wire.split_frames(data[pos:] if pos else data)  # the bench's one frame parser
        for first, payload in frames:
            opcode = first & 0x0F
            if opcode == wire.OP_BINARY:
                self._message(_unpackb(payload), now)
            elif opcode == wire.OP_PING:
                TALLY.pings += 1
                self.transport.write(wire.client_frame(wire.OP_PONG, payload))  # type: ignore[union-attr]
            elif opcode == wire.OP_CLOSE:
                code = wire.close_code(payload)
                TALLY.closes[code] += 1
                if self.state != OPEN:
                    self._fail(ClosedEarly(code))
                    return
                self.transport.abort()  # type: ignore[union-attr]
                return
            else:
                TALLY.bad_frames += 1

    def _message(self, msg: dict[str, Any], now: int) -> None:
        t = msg.get("t")
        seq = msg.get("seq")
        if seq is not None and t != "welcome" and t != "snapshot":
            last = self.last_seq
            if seq != last + 1:  # every event of the town hall's stream, in order, exactly once
                if seq <= last:
                    TALLY.repeats += 1
                    return
                TALLY.gaps += seq - last - 1
            self.last_seq = seq
            TALLY.event(seq, now)
        elif t == "welcome" and self.state == HELLO:
            self.state = OPEN
            self.last_seq = msg["seq"]
            TALLY.joined += 1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
            self.waiter = None
        elif t == "error" and self.state == HELLO:
            self._fail(RuntimeError(f"error {msg.get('code')} instead of welcome"))
        elif t is not None:
            TALLY.other[str(t)] += 1

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.waiter = None
        if self.transport is not None:
            self.transport.abort()

    def give_up(self) -> None:
        """The opener is done with this try: drop the waiter without an exception nobody would read (an unread one
        is logged when the future is collected) and close what is open."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.cancel()
        self.waiter = None
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == OPEN:
            TALLY.joined -= 1
            TALLY.closes[1006] += 1
            TALLY.check_wait()
        elif self.waiter is not None:
            stage = "before_101" if self.state == HANDSHAKE else "before_welcome"
            errno = getattr(exc, "errno", None)
            self._fail(LostEarly(f"eof_{stage}" if exc is None else f"reset_{stage}_{errno}"))
        self.state = CLOSED
        self.transport = None


REQUEST = b""  # the one upgrade request of this process (set in main: its Host header names the first target)
REQUEST_HEAD = b""  # the same without its subprotocol line and blank line, for requests with the hello in the offer


class Opener:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.targets = [(t.split(":")[0], int(t.split(":")[1])) for t in opts.targets.split(",")]
        self.minter = Minter(opts.secret, opts.th, ttl_s=4 * 3600)
        self.conns: list[LeanConn] = []
        self.opened = 0
        self.failed: Counter[str] = Counter()  # joins that failed every try, by the last try's reason
        self.retried: Counter[str] = Counter()  # tries that failed and were tried again, by reason

    async def open(self, count: int) -> dict[str, Any]:
        first, self.opened = self.opened, self.opened + count
        failed_before, retried_before = Counter(self.failed), Counter(self.retried)
        interval = 1.0 / self.opts.rate
        started = time.monotonic()
        next_index = first
        give_up = max(20, count // 10)

        async def runner() -> None:
            nonlocal next_index
            while next_index < first + count and self.failed.total() - failed_before.total() < give_up:
                i = next_index
                next_index += 1
                delay = started + (i - first) * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.open_one(i)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.opts.concurrency, count)):
                group.create_task(runner())
        # This step's failures and retries (the process's totals are in `collect`).
        failed, retried = self.failed - failed_before, self.retried - retried_before
        return {"joined": TALLY.joined, "failed": dict(failed), "retried": dict(retried),
                "seconds": round(time.monotonic() - started, 3)}  # fmt: skip

    async def open_one(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.targets[(self.opts.index + i) % len(self.targets)]
        for attempt in range(MAX_ATTEMPTS):
            waiter: asyncio.Future[None] = loop.create_future()
            conn = LeanConn(self.minter.hello(f"c-{self.opts.index}-{i}", self.opts.hello == "offer"), waiter)
            try:
                async with asyncio.timeout(self.opts.timeout):
                    if self.opts.source:  # its port picked at connect(), not searched for at bind (sockets.py)
                        bound = await connect_from(self.opts.source, host, port)
                        transport, _ = await loop.create_connection(lambda c=conn: c, sock=bound)
                    else:
                        transport, _ = await loop.create_connection(lambda c=conn: c, host, port)
                    sock = transport.get_extra_info("socket")
                    if sock is not None and self.opts.rcvbuf:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.opts.rcvbuf)
                    await waiter
                self.conns.append(conn)
                return
            except Exception as exc:
                conn.give_up()  # whatever is left of this try goes
                reason, wait_s = failure(exc)
            if wait_s is None or attempt == MAX_ATTEMPTS - 1:
                self.failed[reason] += 1
                return
            self.retried[reason] += 1
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
            await asyncio.sleep(max(wait_s, backoff) * random.uniform(0.5, 1.0))


def failure(exc: Exception) -> tuple[str, float | None]:
    """A failed try's reason (for the counts) and the least wait before the next try (None: do not retry)."""
    if isinstance(exc, Rejected):
        return f"http_{exc.status}", (min(5.0, exc.retry_after) if exc.status == 503 else None)
    if isinstance(exc, ClosedEarly):
        return f"close_{exc.code}", (0.0 if exc.code in RETRY_CLOSE_CODES else None)
    if isinstance(exc, LostEarly):
        return exc.reason, 0.0
    if isinstance(exc, TimeoutError):
        return "timeout", 0.0
    if isinstance(exc, OSError):  # connect refused, reset, no route: the node host may be restarting
        return f"os_{exc.errno}", 0.0
    return type(exc).__name__, None  # a bug here or a protocol error: never hidden by a retry


def usage() -> dict[str, Any]:
    rss = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"rss_kb": rss, "cpu_s": round(ru.ru_utime + ru.ru_stime, 3)}


async def handle(opener: Opener, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "open":
        return {**await opener.open(int(cmd["count"])), **usage()}
    if op == "wait":
        TALLY.wait_seq, TALLY.wait_event = int(cmd["seq"]), asyncio.Event()
        TALLY.check_wait()
        try:
            async with asyncio.timeout(float(cmd["timeout"])):
                await TALLY.wait_event.wait()
            ok = True
        except TimeoutError:
            ok = False
        TALLY.wait_seq, TALLY.wait_event = 0, None
        return {"ok": ok, "joined": TALLY.joined, "got": TALLY.counts.get(int(cmd["seq"]), 0)}
    if op == "collect":
        t = TALLY
        return {"joined": t.joined, "counts": t.counts, "last_ns": t.last_ns, "gaps": t.gaps, "repeats": t.repeats,
                "pings": t.pings, "bad_frames": t.bad_frames, "closes": dict(t.closes), "other": dict(t.other),
                "failed": dict(opener.failed), "retried": dict(opener.retried), **usage()}  # fmt: skip
    raise ValueError(f"unknown op {op!r}")


async def serve(opts: argparse.Namespace) -> None:
    global REQUEST, REQUEST_HEAD
    opener = Opener(opts)
    host, port = opener.targets[0]
    REQUEST = wire.upgrade_request(host, port)
    REQUEST_HEAD = wire.request_head(REQUEST)
    print(json.dumps({"ready": True, **usage()}), flush=True)
    async for cmd in stdin_commands(opts.lifetime, limit=1 << 24):
        try:
            reply = await handle(opener, cmd)
        except Exception as exc:  # report, do not die: the orchestrator decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    os._exit(0)  # a million sockets are the kernel's to close; nothing here needs a graceful unwind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=int, required=True, help="this process's number (token subs, first target)")
    parser.add_argument("--targets", required=True, help="host:port,host:port,... connections go round robin")
    parser.add_argument("--secret", default=os.environ.get("JANSAMVAD_SECRET", ""), help="or JANSAMVAD_SECRET")
    parser.add_argument("--th", required=True, help="the town hall to join")
    parser.add_argument("--rate", type=float, default=200.0, help="handshakes a second started by this process")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight at most")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for one connect + upgrade + welcome")
    parser.add_argument("--rcvbuf", type=int, default=8192, help="SO_RCVBUF of each socket (0: the kernel's)")
    parser.add_argument("--source", default="", help="bind this source address (loopback mode)")
    parser.add_argument(
        "--hello", choices=("offer", "message"), default="offer", help="the hello in the subprotocol offer, or a frame"
    )
    parser.add_argument("--lifetime", type=float, default=3600.0, help="exit after this many seconds regardless")
    opts = parser.parse_args()
    uvloop.run(serve(opts))


if __name__ == "__main__":
    main()
