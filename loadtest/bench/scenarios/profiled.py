"""The profile pass: the broadcast, burst and handshake scenarios again on a fresh node, under py-spy.

Kept apart from the measured runs because sampling (py-spy pauses the node for each native stack) slows the node.
"""

from __future__ import annotations

from typing import Any

from ..harness import BenchOptions, Stage
from ..profile import PySpy, summarize
from . import broadcast


async def measure(
    opts: BenchOptions, *, n: int, rounds: int, burst_size: int, burst_rounds: int, handshakes: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": "profile", "n": n}
    stage = await Stage.create(opts, n + handshakes, "profile")
    try:
        spy = PySpy(stage.server.pid, opts.reports_dir / "profile-handshake.raw")
        spy.start()
        join = await stage.add_citizens(n)
        await spy.stop()
        out["handshake"] = {"joined": join["joined"], "wall_s": join["wall_s"], **summarize(spy.out)}

        phases = (("broadcast", rounds, 1), ("burst", burst_rounds, burst_size))
        for name, phase_rounds, per_round in phases:
            await stage.leaders.reserve(per_round, phase_rounds)
            spy = PySpy(stage.server.pid, opts.reports_dir / f"profile-{name}.raw")
            spy.start()
            result = await broadcast.measure(
                stage, rounds=phase_rounds, per_round=per_round, text_bytes=opts.text_bytes
            )
            await spy.stop()
            out[name] = {
                "deliveries": result["deliveries"],
                "check_ok": result["check"]["ok"],
                "us_per_delivery_under_profiler": result["cpu"]["us_per_delivery"],
                **summarize(spy.out),
            }
    finally:
        await stage.close()
    return out
