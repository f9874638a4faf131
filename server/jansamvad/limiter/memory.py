"""The embedded default: buckets in this process (one node, so "across nodes" is this process)."""

from __future__ import annotations

import time

from jansamvad.limiter.base import RateLimiter, refill

_MAX_BUCKETS = 200_000  # idle buckets are dropped beyond this (a full bucket is the same as no bucket)


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, int]] = {}

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> int:
        now = int(time.monotonic() * 1000)
        bucket = self._buckets.get(key)
        if bucket is None and cost == 0:
            return 0  # a full bucket: looking creates none
        tokens, last = bucket or (float(burst), now)
        tokens = refill(tokens, last, now, rate, burst)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return max(1, int((1 - tokens) * 1000 / rate))
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._evict_full(now, rate, burst)
        return 0

    def _evict_full(self, now: int, rate: float, burst: int) -> None:
        for key, (tokens, last) in list(self._buckets.items()):
            if refill(tokens, last, now, rate, burst) >= burst:
                del self._buckets[key]

    async def close(self) -> None:
        self._buckets.clear()


_: type[RateLimiter] = MemoryRateLimiter
