"""An outside join client: the `websockets` library's client, none of the bench's code, to cross-check join rates.

Each connection does what a citizen's page does: TCP connect, HTTP upgrade with the JSON (or msgpack) subprotocol,
`hello` with a pre-minted citizen token, then waits for `welcome` and `snapshot` (or a `welcome` with
`recovered: true`). It keeps every connection open (a growing room) until its stdin closes or --hold-s passes, so a
parent can measure the nodes' CPU while the room grows.

    python loadtest/join_client.py --url ws://127.0.0.1:8001/ws --url ws://127.0.0.1:8002/ws \
        --tokens tokens.txt --concurrency 100 --encoding json

Prints one JSON line: joined, failed (by reason), started/finished (CLOCK_MONOTONIC ns), connect ms percentiles.
Bounded: every connection has a timeout, the whole run --max-s, the hold --hold-s. Load goes to the URLs given
(the bench passes loopback addresses only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect

SUBPROTOCOLS = {"json": "jansamvad.v1.json", "msgpack": "jansamvad.v1.msgpack"}


def _decode(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, str):
        out: dict[str, Any] = json.loads(frame)
    else:
        out = msgpack.unpackb(frame, raw=False)
    return out


async def join_one(url: str, token: str, encoding: str, source: str, timeout: float) -> ClientConnection:
    """Connect, say hello, and return once the join's own frames (welcome, snapshot) arrived."""
    async with asyncio.timeout(timeout):
        ws = await connect(
            url,
            subprotocols=[SUBPROTOCOLS[encoding]],  # type: ignore[list-item]
            compression=None,
            open_timeout=timeout,
            ping_interval=None,
            max_queue=None,
            local_addr=(source, 0),
        )
        hello = {"t": "hello", "token": token}
        await ws.send(json.dumps(hello) if encoding == "json" else msgpack.packb(hello))
        while True:
            msg = _decode(await ws.recv())
            t = msg.get("t")
            if t == "snapshot" or (t == "welcome" and msg.get("recovered")):
                return ws
            if t == "error":
                await ws.close()
                raise RuntimeError(f"error_{msg.get('code')}")


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    with open(opts.tokens, encoding="utf-8") as f:
        tokens = [line.strip() for line in f if line.strip()]
    failed: Counter[str] = Counter()
    open_conns: list[ClientConnection] = []
    connect_ms: list[float] = []
    next_index = 0

    async def runner() -> None:
        nonlocal next_index
        while next_index < len(tokens) and failed.total() < max(50, len(tokens) // 20):
            i = next_index
            next_index += 1
            url = opts.url[i % len(opts.url)]
            # A distinct loopback source per 20,000 connections keeps the ephemeral port range out of the way.
            source = f"127.{opts.source_block}.{i // 20_000}.1"
            started = time.monotonic_ns()
            try:
                ws = await join_one(url, tokens[i], opts.encoding, source, opts.timeout)
            except (OSError, TimeoutError) as exc:
                failed[type(exc).__name__] += 1
                continue
            except Exception as exc:  # a refused upgrade, a close, an error frame: counted by what it was
                failed[str(exc)[:40] or type(exc).__name__] += 1
                continue
            connect_ms.append((time.monotonic_ns() - started) / 1e6)
            open_conns.append(ws)

    loop = asyncio.get_running_loop()
    if opts.wait_go:  # a parent that measures from the first join: "ready", then it sends one line
        print(json.dumps({"ready": len(tokens)}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    started_ns = time.monotonic_ns()
    async with asyncio.timeout(opts.max_s):
        async with asyncio.TaskGroup() as group:
            for _ in range(min(opts.concurrency, len(tokens))):
                group.create_task(runner())
    finished_ns = time.monotonic_ns()
    ms = sorted(connect_ms)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 1) if ms else 0.0

    wall = (finished_ns - started_ns) / 1e9
    result = {
        "joined": len(open_conns),
        "failed": dict(failed),
        "started_ns": started_ns,
        "finished_ns": finished_ns,
        "wall_s": round(wall, 3),
        "per_wall_s": round(len(open_conns) / wall) if wall else 0,
        "connect_ms": {"p50": pct(50), "p99": pct(99), "max": pct(100)},
    }
    print(json.dumps(result), flush=True)
    # Hold the room: until the parent closes our stdin (or the hold ends), then close every connection.
    try:
        async with asyncio.timeout(opts.hold_s):
            await loop.run_in_executor(None, sys.stdin.read)
    except TimeoutError:
        pass
    for ws in open_conns:
        ws.transport.abort()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", required=True, help="ws://host:port/ws; repeat for several nodes")
    parser.add_argument("--tokens", required=True, help="a file of citizen tokens, one a line")
    parser.add_argument("--encoding", choices=sorted(SUBPROTOCOLS), default="json")
    parser.add_argument("--concurrency", type=int, default=100, help="joins in flight")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per join")
    parser.add_argument("--max-s", type=float, default=300.0, help="seconds for all the joins")
    parser.add_argument("--hold-s", type=float, default=120.0, help="seconds to hold the connections at most")
    parser.add_argument("--wait-go", action="store_true", help="print a ready line, start on a line from stdin")
    parser.add_argument("--source-block", type=int, default=60, help="second octet of the 127/8 source addresses")
    opts = parser.parse_args(argv)
    asyncio.run(run(opts))
    sys.stdout.flush()
    os._exit(0)  # the hold's stdin reader is a thread that may still wait: do not wait for it


if __name__ == "__main__":
    main()
