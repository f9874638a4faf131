"""The RateLimiter contract (limiter/base.py), against memory, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jansamvad.limiter.base import RateLimiter, refill
from jansamvad.limiter.memory import MemoryRateLimiter
from jansamvad.limiter.redis import RedisRateLimiter
from tests.contract.conftest import Backend

pytestmark = pytest.mark.anyio


@pytest.fixture
async def limiter(backend: Backend) -> AsyncIterator[RateLimiter]:
    made: RateLimiter = RedisRateLimiter(backend.conn(), backend.keys) if backend.is_redis else MemoryRateLimiter()
    yield made
    await made.close()


async def test_limiter_allows_the_burst_then_says_when(limiter: RateLimiter) -> None:
    results = [await limiter.hit("ask:th:c-1", 0.1, 3) for _ in range(4)]
    assert results[:3] == [0, 0, 0]
    assert 5000 < results[3] <= 10_000  # about ten seconds for the next token at 0.1/s (a slow CI still fits)


async def test_limiter_refills_over_time(limiter: RateLimiter) -> None:
    for _ in range(2):
        assert await limiter.hit("vote:th:c-2", 10.0, 2) == 0
    assert await limiter.hit("vote:th:c-2", 10.0, 2) > 0
    await asyncio.sleep(0.25)  # 2.5 tokens at 10/s, capped at the burst of 2
    assert await limiter.hit("vote:th:c-2", 10.0, 2) == 0


async def test_limiter_cost_zero_only_looks(limiter: RateLimiter, backend: Backend) -> None:
    # The admin API checks its failure bucket this way before it compares a key (a lockout, not just a delay).
    for _ in range(2):
        assert await limiter.hit("look:c-5", 0.01, 2, cost=0) == 0  # nothing taken by looking
        assert await limiter.hit("look:c-5", 0.01, 2) == 0
    assert await limiter.hit("look:c-5", 0.01, 2, cost=0) > 0  # empty: looking says when, like a hit
    assert await limiter.hit("look:c-5", 0.01, 2) > 0
    assert await limiter.hit("never-hit", 0.01, 1, cost=0) == 0
    # Looking at an address nobody charged leaves no bucket behind (every admin call looks first).
    if isinstance(limiter, MemoryRateLimiter):
        assert "never-hit" not in limiter._buckets and "look:c-5" in limiter._buckets
    else:
        conn = backend.conn()
        try:
            assert await conn.execute("EXISTS", backend.keys.rate_bucket("never-hit")) == 0
            assert await conn.execute("EXISTS", backend.keys.rate_bucket("look:c-5")) == 1
        finally:
            await conn.close()


async def test_limiter_keys_are_independent(limiter: RateLimiter) -> None:
    assert await limiter.hit("a", 0.1, 1) == 0
    assert await limiter.hit("a", 0.1, 1) > 0
    assert await limiter.hit("b", 0.1, 1) == 0
    assert await limiter.hit("{odd} key %", 0.1, 1) == 0


async def test_limiter_is_exact_under_concurrent_hits(limiter: RateLimiter) -> None:
    results = await asyncio.gather(*(limiter.hit("burst:c-3", 0.01, 20) for _ in range(60)))
    assert results.count(0) == 20


async def test_limiter_is_shared_by_two_nodes(backend: Backend) -> None:
    if not backend.is_redis:
        pytest.skip("one process: the memory limiter is this node's only")
    first, second = RedisRateLimiter(backend.conn(), backend.keys), RedisRateLimiter(backend.conn(), backend.keys)
    try:
        assert await first.hit("ask:th:c-4", 0.01, 2) == 0
        assert await second.hit("ask:th:c-4", 0.01, 2) == 0
        assert await first.hit("ask:th:c-4", 0.01, 2) > 0
        assert await second.hit("ask:th:c-4", 0.01, 2) > 0
    finally:
        await first.close()
        await second.close()


def test_limiter_refill_arithmetic() -> None:
    assert refill(0.0, 0, 1000, 2.0, 5) == 2.0
    assert refill(4.5, 0, 10_000, 2.0, 5) == 5.0
    assert refill(1.0, 1000, 500, 2.0, 5) == 1.0  # a clock going backwards adds nothing
