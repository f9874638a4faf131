"""Scenario 1, memory: node RSS per idle joined connection (VmRSS before and after joining N citizens, over N)."""

from __future__ import annotations

from typing import Any

from ..harness import Stage
from ..procstat import tcp_mem_kb

WARMUP_CITIZENS = 20  # joined before the baseline, so one-time allocations (imports, caches) are not counted
SETTLE_S = 2.0  # after joining: the presence tick and the viewers broadcast have run


async def measure(stage: Stage, n: int) -> dict[str, Any]:
    await stage.add_citizens(WARMUP_CITIZENS)
    await stage.settle(SETTLE_S)
    rss_before, tcp_before = stage.server.rss_kb(), tcp_mem_kb()
    join = await stage.add_citizens(n)
    await stage.settle(SETTLE_S)
    rss_after, tcp_after = stage.server.rss_kb(), tcp_mem_kb()
    stats = await stage.server.stats()
    receipts = await stage.collect()  # what the citizens got while the room filled up
    joined = join["joined"]
    return {
        "scenario": "memory",
        "n": n,
        "joined": joined,
        "lost": n - joined,
        "join": join,
        "join_rate_per_s": round(joined / join["wall_s"]) if join["wall_s"] else None,
        "server_connections": stats.get("connections"),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "kb_per_conn": round((rss_after - rss_before) / joined, 2) if joined else None,
        # Kernel TCP buffer memory, machine-wide and for both ends of each loopback pair: for context only.
        "tcp_buffers_kb_delta": tcp_after - tcp_before,
        "client_rss_mb": round(join["client_rss_kb"] / 1024, 1),
        # The node sends the viewer count to every listener once per presence tick while it changes: during a join
        # ramp that is a broadcast to the whole room every second.
        "viewers_updates_received": receipts.other.get("viewers", 0),
    }
