"""Leader connections in the orchestrator: go live, then speak, one message or a burst in one write, and await acks.

A speech text starts with `time.monotonic_ns()` taken just before the write, so every receiver can compute its
latency. The node rate-limits staff per connection (token bucket: 200 burst, 50/s), so the `Leaders` pool spreads
speeches over as many leader connections as the scenario needs and never counts on the refill.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role

from . import wire
from .conn import BenchConn, Recorder
from .connect import OpenResult, open_one

STAFF_BURST = 200
MESSAGES_PER_LEADER = 150  # stay well inside the bucket without relying on its refill
ACK_TIMEOUT_S = 10.0
# A realistic speech chunk: the live transcript of a sentence or two (Hindi, about 100 bytes in UTF-8).
PADDING = "नमस्ते बिहार, आज हम सड़क, पानी और रोज़गार पर बात करेंगे। "


class SpeechRejected(RuntimeError):
    pass


class LeaderConn(BenchConn):
    __slots__ = ("pending",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    def on_message(self, msg: dict[str, Any], now: int) -> None:
        if msg.get("t") in ("ack", "error") and "re" in msg:
            fut = self.pending.pop(msg["re"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        super().on_message(msg, now)


def speech_text(tag: str, size: int) -> str:
    """`<send monotonic ns> <tag> <padding>`: the timestamp first, so a receiver reads it with one split."""
    head = f"{time.monotonic_ns()} {tag} "
    pad = (PADDING * (size // len(PADDING.encode()) + 1)).encode()[: max(0, size - len(head))]
    return head + pad.decode("utf-8", "ignore")


class Leaders:
    """Leader connections for one town hall, opened on demand; each carries at most MESSAGES_PER_LEADER speeches."""

    def __init__(self, host: str, port: int, secret: str, th: str) -> None:
        self.host, self.port, self.th = host, port, th
        self.tokens = TokenService(secret)
        self.recorder = Recorder()
        self.request = wire.upgrade_request(host, port)
        self.conns: list[tuple[LeaderConn, list[int]]] = []  # connection, [messages sent]
        self._ids = itertools.count(1)
        self._ip_slot = itertools.count(1)

    async def _open(self) -> LeaderConn:
        n = next(self._ip_slot)
        token, _ = self.tokens.issue(sub=f"l-bench-{n}", role=Role.LEADER, th=self.th, ttl_s=7200, name="नेता")
        hello = wire.message_frame({"t": "hello", "token": token})

        def factory(joined: asyncio.Future[dict[str, object]]) -> LeaderConn:
            return LeaderConn(self.request, hello, self.recorder, joined)

        result = OpenResult()
        conn = await open_one(factory, self.host, self.port, f"127.254.0.{n % 250 + 1}", 15.0, result)
        if conn is None:
            raise SpeechRejected(f"leader could not join: {dict(result.failed)}")
        self.conns.append((conn, [0]))
        return conn

    async def _with_budget(self, count: int) -> tuple[LeaderConn, list[int]]:
        if count > MESSAGES_PER_LEADER:
            raise ValueError(f"at most {MESSAGES_PER_LEADER} messages at once")
        for conn, sent in self.conns:
            if sent[0] + count <= MESSAGES_PER_LEADER and conn.transport is not None:
                return conn, sent
        await self._open()
        return self.conns[-1]

    async def reserve(self, per_call: int, calls: int) -> None:
        """Open leader connections up front so that `calls` sends of `per_call` messages need no handshake later."""
        capacity = sum((MESSAGES_PER_LEADER - sent[0]) // per_call for _, sent in self.conns)
        while capacity < calls:
            await self._open()
            capacity += MESSAGES_PER_LEADER // per_call

    async def request_all(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send messages (each gets an id) in one write on one leader connection; their acks or errors, in order."""
        conn, sent = await self._with_budget(len(messages))
        loop = asyncio.get_running_loop()
        futures = []
        frames = []
        for message in messages:
            msg_id = next(self._ids)
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            conn.pending[msg_id] = fut
            futures.append(fut)
            frames.append(wire.message_frame({**message, "id": msg_id}))
        sent[0] += len(messages)
        conn.write(b"".join(frames))
        async with asyncio.timeout(ACK_TIMEOUT_S):
            return list(await asyncio.gather(*futures))

    async def go_live(self) -> int:
        (reply,) = await self.request_all([{"t": "go_live"}])
        if reply.get("t") != "ack":
            raise SpeechRejected(f"go_live: {reply}")
        return int(reply["seq"])

    async def speak(self, count: int, tag: str, size: int) -> tuple[list[int], list[dict[str, Any]]]:
        """`count` speeches in one write; (seqs acked, errors). The texts are built right before the write."""
        replies = await self.request_all(
            [{"t": "speech", "text": speech_text(f"{tag}.{k}", size), "final": True} for k in range(count)]
        )
        seqs = [int(r["seq"]) for r in replies if r.get("t") == "ack"]
        errors = [r for r in replies if r.get("t") != "ack"]
        return seqs, errors

    def close(self) -> None:
        for conn, _ in self.conns:
            conn.close()
        self.conns = []

    def __len__(self) -> int:
        return len(self.conns)
