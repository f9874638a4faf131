"""PNG charts of a run with matplotlib (the `bench` extra): latency vs N, memory vs N, CPU per delivery vs N."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .targets import CPU_PER_DELIVERY, MEMORY


def render(results: dict[str, Any], out_dir: Path, prefix: str = "bench") -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no charts", file=sys.stderr)
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    subtitle = f"{results['meta']['started']}, {results['meta']['pinning_short']}"

    broadcast = sorted(results.get("broadcast", []), key=lambda r: r["n"])
    if broadcast:
        ns = [r["n"] for r in broadcast]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(
            ns,
            [r["n"] * r["cpu"]["us_per_delivery"] / 1000 for r in broadcast],
            ":",
            color="gray",
            label="N × node CPU per delivery (fan-out time)",
        )
        for label, key, pct, style in (
            ("first receiver p50", "first_receiver_ms", "p50", "x-"),
            ("last receiver p50", "last_receiver_ms", "p50", "o-"),
            ("last receiver p99", "last_receiver_ms", "p99", "s-"),
            ("each receipt p50", "delivery_ms", "p50", "^--"),
            ("each receipt p99", "delivery_ms", "p99", "v--"),
        ):
            ax.plot(ns, [r["latency"].get(key, {}).get(pct, float("nan")) for r in broadcast], style, label=label)
        ax.set_xlabel("citizens on one node (N)")
        ax.set_ylabel("publish → receipt, ms")
        ax.set_title(f"Single broadcast latency vs N\n{subtitle}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(_save(fig, out_dir / f"{prefix}-latency.png"))

    memory = sorted(results.get("memory", []), key=lambda r: r["n"])
    if memory:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot([r["n"] for r in memory], [r["kb_per_conn"] for r in memory], "o-", label="node RSS per connection")
        ax.axhline(MEMORY.limit, color="tab:red", linestyle=":", label=f"target ≤ {MEMORY.limit:g} KB")
        ax.set_xlabel("idle joined citizens on one node (N)")
        ax.set_ylabel("KB per connection")
        ax.set_ylim(bottom=0)
        ax.set_title(f"Memory per idle connection vs N\n{subtitle}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(_save(fig, out_dir / f"{prefix}-memory.png"))

    burst = sorted(results.get("burst", []), key=lambda r: r["n"])
    if broadcast or burst:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        if broadcast:
            ax.plot(ns, [r["cpu"]["us_per_delivery"] for r in broadcast], "o-", label="single broadcast")
        if burst:
            per_tick = burst[0]["messages_per_round"]
            ax.plot(
                [r["n"] for r in burst],
                [r["cpu"]["us_per_delivery"] for r in burst],
                "s-",
                label=f"burst, {per_tick} per tick",
            )
        floors = [f for f in results.get("floor", []) if f.get("clients") == "on the other core"]
        if floors:
            ax.plot(
                [f["n"] for f in floors],
                [f["cpu"]["us_per_delivery"] for f in floors],
                "D",
                color="black",
                label="floor: bare write, no engine",
            )
        ax.axhline(CPU_PER_DELIVERY.limit, color="tab:red", linestyle=":", label="target ≤ 5 µs (single)")
        ax.axhline(1.0, color="tab:purple", linestyle=":", label="1 µs = 1M deliveries / core-s (burst target)")
        ax.set_xlabel("citizens on one node (N)")
        ax.set_ylabel("node CPU µs per delivery")
        ax.set_ylim(bottom=0)
        ax.set_title(f"Node CPU per delivery vs N\n{subtitle}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(_save(fig, out_dir / f"{prefix}-cpu.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
