"""Scenario 4, handshakes: connect + HTTP upgrade + hello + welcome, many in parallel, on a fresh node.

Two rates: per wall second (the client processes share one core, so this can be client-bound) and per node CPU
second (handshakes one node process can take per second of its own CPU: the capacity of one core).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..harness import BenchOptions, Stage
from ..stats import percentiles
from .common import cpu_summary

DRAIN_TIMEOUT_S = 30.0


async def _wait_connections(stage: Stage, at_most: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if (await stage.server.stats())["connections"] <= at_most:
            return
        await asyncio.sleep(0.2)


async def measure(opts: BenchOptions, *, per_rep: int, reps: int, workers: int, concurrency: int) -> dict[str, Any]:
    stage = await Stage.create(opts, per_rep, "handshake", workers=workers)
    runs: list[dict[str, Any]] = []
    try:
        base = (await stage.server.stats())["connections"]
        for rep in range(reps):
            k = len(stage.pool)
            shares = [per_rep // k + (1 if i < per_rep % k else 0) for i in range(k)]
            cpu_before = stage.server.cpu()
            replies = await stage.pool.call_each(
                "open",
                60.0 + per_rep / 200,
                [
                    {
                        "host": "127.0.0.1",
                        "port": stage.server.port,
                        "secret": stage.secret,
                        "th": stage.th,
                        "count": share,
                        "concurrency": concurrency,
                        "timeout": 30.0,
                    }
                    for share in shares
                ],
            )
            cpu_delta = stage.server.cpu() - cpu_before
            joined = sum(r["joined"] for r in replies)
            wall_ns = max(r["finished_ns"] for r in replies) - min(r["started_ns"] for r in replies)
            connect_ms = [ms for r in replies for ms in r["connect_ms"]]
            failed: dict[str, int] = {}
            for r in replies:
                for key, count in r["failed"].items():
                    failed[key] = failed.get(key, 0) + count
            cpu = cpu_summary(cpu_delta, wall_ns / 1e9, 0.0, 0)
            runs.append(
                {
                    "rep": rep,
                    "requested": per_rep,
                    "joined": joined,
                    "lost": per_rep - joined,
                    "failed": failed,
                    "retries": sum(r["retries"] for r in replies),
                    "wall_s": round(wall_ns / 1e9, 3),
                    "per_wall_s": round(joined / (wall_ns / 1e9)),
                    "per_server_cpu_s": round(joined / cpu_delta.seconds) if cpu_delta.seconds else None,
                    "server_cpu_us_per_handshake": round(cpu_delta.seconds * 1e6 / max(1, joined), 1),
                    "server_cpu": cpu,
                    "connect_ms": percentiles(connect_ms, (50, 99)),
                }
            )
            await stage.pool.call_all("close", 30.0)
            await _wait_connections(stage, base)
    finally:
        await stage.close()
    best = max(runs, key=lambda r: r["per_server_cpu_s"] or 0)
    return {
        "scenario": "handshake",
        "per_rep": per_rep,
        "reps": reps,
        "workers": workers,
        "concurrency_per_worker": concurrency,
        "lost": sum(r["lost"] for r in runs),
        "per_wall_s_median": sorted(r["per_wall_s"] for r in runs)[len(runs) // 2],
        "per_server_cpu_s_median": sorted(r["per_server_cpu_s"] or 0 for r in runs)[len(runs) // 2],
        "best": {k: best[k] for k in ("per_wall_s", "per_server_cpu_s")},
        "runs": runs,
    }
