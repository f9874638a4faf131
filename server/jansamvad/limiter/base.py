"""The RateLimiter interface: one token bucket per key.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each hit takes one. The Redis version
runs the same arithmetic in one Lua script, so limits hold across every node and worker.
"""

from __future__ import annotations

from typing import Protocol


class RateLimiter(Protocol):
    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> int:
        """Take `cost` tokens (0 or 1). 0 when allowed, otherwise the milliseconds until a token is there (nothing is
        taken). `cost=0` only looks: "would a hit be allowed now?" (a lockout checked before the work it guards)."""
        ...

    async def close(self) -> None: ...


def refill(tokens: float, last_ms: int, now_ms: int, rate: float, burst: int) -> float:
    """Tokens in a bucket after refilling from last_ms to now_ms (pure, shared by the implementations' tests)."""
    return min(float(burst), tokens + max(0, now_ms - last_ms) * rate / 1000.0)
