"""The fan-out's leading-edge flush (issue 19 item 4): a message that finds the flusher idle for a tick goes out at the
loop's next turn instead of waiting for the tick; what follows within the tick still shares one write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from jansamvad.fanout import Fanout
from jansamvad.hub import Hub, Room
from tests.test_fanout import Recorder, frames, started

pytestmark = pytest.mark.anyio

LONG_TICK_S = 4.0  # far longer than any wait below, so a write seen early cannot be the tick's


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait (bounded) for the condition the fan-out should reach at the loop's next turns."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def room_with(listener: Recorder) -> tuple[Hub, Room]:
    hub = Hub()
    hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    return hub, room


async def test_fanout_leading_edge_writes_a_lone_message_without_waiting_for_the_tick() -> None:
    fanout: Fanout = await started(tick_s=LONG_TICK_S)
    listener = Recorder()
    _, room = room_with(listener)
    fanout.enqueue(room, 1, {"t": "speech", "text": "अकेला वाक्य"})
    await until(lambda: len(listener.writes) == 1)  # before: only after the tick (LONG_TICK_S)
    assert [m["seq"] for m in frames(listener.writes[0])] == [1]
    await fanout.stop()


async def test_fanout_leading_edge_batches_one_turn_and_coalesces_the_rest_of_the_tick() -> None:
    fanout = await started(tick_s=LONG_TICK_S)
    listener = Recorder()
    _, room = room_with(listener)
    for seq in (1, 2, 3):  # queued in one turn of the loop: one write on the leading edge
        fanout.enqueue(room, seq, {"t": "speech", "text": f"s{seq}"})
    await until(lambda: len(listener.writes) == 1)
    assert [m["seq"] for m in frames(listener.writes[0])] == [1, 2, 3]

    fanout.enqueue(room, 4, {"t": "speech", "text": "s4"})  # within the tick of the last flush: it waits for it
    await asyncio.sleep(0.05)
    fanout.enqueue(room, 5, {"t": "speech", "text": "s5"})
    await asyncio.sleep(0.05)
    assert len(listener.writes) == 1
    await until(lambda: len(listener.writes) == 2, timeout=LONG_TICK_S + 2.0)
    assert [m["seq"] for m in frames(listener.writes[1])] == [4, 5]  # one write for both
    assert fanout.writes == 2
    await fanout.stop()


async def test_fanout_leading_edge_holds_partials_for_their_coalescing_window() -> None:
    fanout = await started(tick_s=0.0, coalesce_s=LONG_TICK_S)
    listener = Recorder()
    _, room = room_with(listener)
    fanout.enqueue(room, 0, {"t": "speech", "text": "आधा", "final": False})
    await asyncio.sleep(0.05)
    assert listener.writes == []  # a partial waits for company even on an idle flusher
    fanout.enqueue(room, 1, {"t": "speech", "text": "पूरा"})  # a must-deliver frame takes it along at once
    await until(lambda: len(listener.writes) == 1)
    assert [m["text"] for m in frames(listener.writes[0])] == ["आधा", "पूरा"]
    await fanout.stop()
