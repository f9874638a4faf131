"""A deadline on one await of a task the caller holds, as `asyncio.timeout` gives it but at a join's price.

Every hello runs its join under join_timeout. `asyncio.timeout()` builds a Timeout, looks up the current task and
the running loop (on CPython 3.11 each lookup is a getpid syscall: three per use) and reschedules a timer handle:
about 8 µs per join, 3 % of what a whole join costs a node (docs/benchmarks.md, "Joins (issue 19)"). The worker
task that runs the hello is known (Client.worker) and so is its loop (`Task.get_loop`, no lookup): one
`loop.call_at` handle that cancels the task does the same job.

Same behaviour as `asyncio.timeout`: when the deadline passes, the await is cancelled and `TimeoutError` is raised
in its place; a cancel from elsewhere (the connection closed, the node stops) still propagates as a cancel, because
the deadline's own cancel is taken back with `Task.uncancel` and only a task left with no other cancel request gets
the `TimeoutError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class _Expiry:
    """The timer's callback: cancel the task, and remember that it was the deadline that did."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()


async def within(task: asyncio.Task[Any], seconds: float, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` (in `task`, the running task) for at most `seconds`, else raise TimeoutError."""
    loop = task.get_loop()
    cancelling = task.cancelling()
    expiry = _Expiry(task)
    handle = loop.call_at(loop.time() + seconds, expiry)
    taken_back = False
    try:
        return await awaitable
    except asyncio.CancelledError:
        if expiry.expired:
            taken_back = True
            if task.uncancel() <= cancelling:
                raise TimeoutError from None
        raise
    finally:
        handle.cancel()
        if expiry.expired and not taken_back:
            task.uncancel()  # the deadline passed as the await ended another way: its cancel request is taken back
