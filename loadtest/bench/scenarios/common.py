"""Helpers shared by the scenarios: idle CPU baseline, CPU per delivery, and the delivered == expected check."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..harness import Receipts, Stage
from ..procstat import CpuSample, cpu
from ..stats import hist_percentiles, percentiles


async def idle_cpu_rate(stage: Stage, seconds: float) -> float:
    """CPU seconds per second the node spends with everyone joined and nothing said (keepalive wheel, presence)."""
    return await idle_cpu_rate_pid(stage.server.pid, seconds)


async def idle_cpu_rate_pid(pid: int, seconds: float) -> float:
    before, t0 = cpu(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu(pid) - before).seconds / (time.monotonic() - t0)


def check_delivery(receipts: Receipts, seqs: list[int], citizens: int) -> dict[str, Any]:
    """delivered == expected, per event: every joined citizen must have every acked event exactly once, in order."""
    expected = citizens * len(seqs)
    delivered = sum(receipts.counts.get(seq, 0) for seq in seqs)
    return {
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "ok": delivered == expected and receipts.gaps == 0 and receipts.dups == 0,
        "gaps": receipts.gaps,
        "duplicates": receipts.dups,
        "bad_frames": receipts.bad_frames,
        "closes": dict(receipts.closes),
    }


def cpu_summary(delta: CpuSample, wall_s: float, idle_rate: float, deliveries: int) -> dict[str, Any]:
    cpu_s = delta.seconds
    net_s = max(0.0, cpu_s - idle_rate * wall_s)
    out: dict[str, Any] = {
        **delta.as_dict(),
        "wall_s": round(wall_s, 3),
        "idle_cpu_pct": round(idle_rate * 100, 2),
        "system_share_pct": round(100 * delta.system_s / max(1e-9, delta.user_s + delta.system_s), 1),
    }
    if deliveries:
        out["us_per_delivery"] = round(cpu_s * 1e6 / deliveries, 3)
        out["us_per_delivery_net_of_idle"] = round(net_s * 1e6 / deliveries, 3)
        out["deliveries_per_cpu_s"] = round(deliveries / cpu_s) if cpu_s else None
        out["deliveries_per_wall_s"] = round(deliveries / wall_s) if wall_s else None
    return out


def latency_summary(receipts: Receipts, seqs: list[int]) -> dict[str, Any]:
    """Publish -> first and -> last receiver (one value per event), publish -> each receipt (every delivery), in ms.

    The first receiver shows the fixed part of the path (tick, broker hop); first to last is the fan-out itself.
    """
    first = [receipts.min_lat_ns[seq] / 1e6 for seq in seqs if seq in receipts.min_lat_ns]
    last = [receipts.max_lat_ns[seq] / 1e6 for seq in seqs if seq in receipts.max_lat_ns]
    return {
        "first_receiver_ms": percentiles(first, (50, 99)),
        "last_receiver_ms": percentiles(last, (50, 99)),
        "delivery_ms": hist_percentiles(receipts.hist),
    }
