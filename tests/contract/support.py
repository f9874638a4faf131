"""What the contract suites share: a recording broker handler and a poll-until helper."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jansamvad.broker.base import Broker, Publication


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll until `predicate()` holds (Redis delivers asynchronously, the memory broker at once)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Recorder:
    """A BrokerEventHandler that keeps what it is given, and a set of channels standing in for the hub's rooms."""

    def __init__(self) -> None:
        self.pubs: list[Publication] = []
        self.channels: set[str] = set()
        self.gone: list[tuple[str, range]] = []  # what the broker reported it can never deliver

    def handle_publication(self, pub: Publication) -> None:
        self.pubs.append(pub)

    def handle_gone(self, channel: str, seqs: range) -> None:
        self.gone.append((channel, seqs))

    def live_channels(self) -> list[str]:
        return sorted(self.channels)

    def on(self, channel: str) -> list[Publication]:
        return [p for p in self.pubs if p.channel == channel]

    def seqs(self, channel: str) -> list[int]:
        return [p.seq for p in self.on(channel)]

    async def listen(self, broker: Broker, channel: str) -> None:
        """What the node does for a room's first member: the hub first, then the broker."""
        self.channels.add(channel)
        await broker.subscribe(channel)

    async def leave(self, broker: Broker, channel: str) -> None:
        self.channels.discard(channel)
        await broker.unsubscribe(channel)

    async def wait_for(self, channel: str, count: int, timeout: float = 5.0) -> list[Publication]:
        await eventually(lambda: len(self.on(channel)) >= count, timeout, f"{count} publications on {channel}")
        return self.on(channel)
