"""deadline.within: asyncio.timeout's behaviour on one await of a task the caller holds (the hello's join deadline),
without looking the loop or the task up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jansamvad.deadline import within

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def _this_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


async def test_deadline_within_returns_what_the_await_returns() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    task = _this_task()
    assert await within(task, 5.0, answer()) == 42
    assert task.cancelling() == 0


async def test_deadline_within_raises_timeout_error_once_the_deadline_passes() -> None:
    task = _this_task()
    with pytest.raises(TimeoutError):
        await within(task, 0.05, asyncio.sleep(5))
    assert task.cancelling() == 0  # its own cancel was taken back: the task goes on as if nothing happened
    await asyncio.sleep(0.01)


async def test_deadline_within_lets_a_cancel_from_elsewhere_through_as_a_cancel() -> None:
    started = asyncio.Event()

    async def joining() -> None:
        started.set()
        await within(_this_task(), 5.0, asyncio.sleep(5))

    task = asyncio.get_running_loop().create_task(joining())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadline_within_a_cancel_from_elsewhere_after_the_deadline_stays_a_cancel() -> None:
    async def joining() -> None:
        task = _this_task()
        try:
            await within(task, 0.01, asyncio.sleep(5))
        except TimeoutError:
            pytest.fail("the outside cancel came first")

    task = asyncio.get_running_loop().create_task(joining())
    await asyncio.sleep(0)
    task.cancel()  # pending before the deadline's own
    await asyncio.sleep(0.05)
    assert task.cancelled()


async def test_deadline_within_looks_up_neither_the_loop_nor_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPython 3.11 checks the pid on every running-loop lookup (a getpid syscall): a join's deadline makes none.
    task, loop = _this_task(), asyncio.get_running_loop()

    def refused() -> Any:
        raise AssertionError("looked up")

    monkeypatch.setattr(asyncio.events, "get_running_loop", refused)
    monkeypatch.setattr(asyncio.tasks, "current_task", refused)
    with pytest.raises(TimeoutError):
        await within(task, 0.02, loop.create_future())
