"""Batched reads (join_reads.py) under a steady flow of joins: a key's batches start at least BATCH_SPACING_S apart,
so each carries the joins of that interval instead of those of one round trip, and every join still gets its item."""

from __future__ import annotations

import asyncio

import pytest

from jansamvad.join_reads import BATCH_SPACING_S, Batched

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

ROUND_TRIP_S = 0.001  # a quick store: without the spacing the next batch would start 1 ms after the last
WINDOW_S = 0.005  # the fan-out tick, as the node passes it


async def test_join_reads_batches_of_a_key_start_at_least_the_spacing_apart() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    sizes: list[int] = []

    async def read(key: str, items: list[int]) -> dict[int, int]:
        starts.append(loop.time())
        sizes.append(len(items))
        await asyncio.sleep(ROUND_TRIP_S)
        return {item: item * 2 for item in items}

    batched: Batched[str, int, int] = Batched(read, WINDOW_S)
    waiters = []
    began = loop.time()
    for item in range(150):  # a join every 2 ms for 0.3 s
        waiters.append(asyncio.ensure_future(batched.get("th", item)))
        await asyncio.sleep(0.002)
    assert await asyncio.gather(*waiters) == [item * 2 for item in range(150)]

    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= BATCH_SPACING_S * 0.9, gaps  # call_later may fire a hair early on some loops
    # A loaded machine stretches the 0.3 s: the bound follows the time the joins really took.
    assert batched.reads == len(starts) <= (loop.time() - began) / BATCH_SPACING_S + 2
    assert sum(sizes) == 150


async def test_join_reads_a_lone_join_waits_only_the_window() -> None:
    loop = asyncio.get_running_loop()

    async def read(key: str, items: list[int]) -> dict[int, int]:
        return dict.fromkeys(items, 1)

    batched: Batched[str, int, int] = Batched(read, WINDOW_S)
    asked = loop.time()
    assert await batched.get("th", 1) == 1
    assert loop.time() - asked < BATCH_SPACING_S  # the spacing binds only a key's next batch
    await asyncio.sleep(BATCH_SPACING_S)
    asked = loop.time()
    assert await batched.get("th", 2) == 1  # a spacing already over costs nothing
    assert loop.time() - asked < BATCH_SPACING_S
