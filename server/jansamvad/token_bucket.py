"""An in-process token bucket: `rate` tokens a second, at most `burst` kept. Pure arithmetic on a clock the caller
passes in (the loop's time), so it is tested without sleeping."""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)  # a fresh bucket is full
        self.at = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be (nothing is taken then)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
