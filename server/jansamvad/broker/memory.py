"""The embedded default broker: one process, no Redis. History is a ring per channel."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from jansamvad.broker.base import MEMORY_KEYS_PER_CHANNEL, Broker, BrokerEventHandler, HistoryResult, Publication


class _Channel:
    __slots__ = ("head", "history", "keys")

    def __init__(self, size: int) -> None:
        self.head = 0
        self.history: deque[Publication] = deque(maxlen=size)
        self.keys: dict[str, int] = {}  # idempotency key -> seq, oldest first


class MemoryBroker:
    def __init__(self, history_size: int = 1000) -> None:
        self._history_size = history_size
        self._channels: dict[str, _Channel] = {}
        self._subscribed: set[str] = set()
        self._handler: BrokerEventHandler | None = None

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._subscribed.clear()

    @property
    def healthy(self) -> bool:
        return True

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel(self._history_size)
        return ch

    async def publish(self, channel: str, data: Mapping[str, Any], *, history: bool) -> int:
        seq = 0
        if history:
            ch = self._channel(channel)
            ch.head += 1
            seq = ch.head
        pub = Publication(channel, seq, data)
        if history:
            ch.history.append(pub)
        if self._handler is not None and channel in self._subscribed:
            self._handler.handle_publication(pub)
        return seq

    async def publish_once(self, channel: str, data: Mapping[str, Any], key: str) -> tuple[int, bool]:
        ch = self._channel(channel)
        seq = ch.keys.get(key)
        if seq is not None:
            return seq, True
        seq = await self.publish(channel, data, history=True)
        ch.keys[key] = seq
        if len(ch.keys) > MEMORY_KEYS_PER_CHANNEL:
            del ch.keys[next(iter(ch.keys))]
        return seq, False

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        # The node unsubscribes in a task: a new listener may have re-created the room before it runs.
        if self._handler is not None and channel in self._handler.live_channels():
            return
        self._subscribed.discard(channel)

    async def history(self, channel: str, since: int, limit: int) -> HistoryResult:
        ch = self._channels.get(channel)
        if ch is None:
            return HistoryResult([], 0, since == 0)
        pubs = [p for p in ch.history if p.seq > since]
        oldest = ch.history[0].seq if ch.history else ch.head + 1
        complete = since >= oldest - 1
        if len(pubs) > limit:
            pubs, complete = (pubs[-limit:] if limit else []), False
        return HistoryResult(pubs, ch.head, complete)


_: type[Broker] = MemoryBroker
