"""The embedded default broker: one process, no Redis. History is a ring per channel.

The ring keeps each publication's data as msgpack bytes, as Redis does, and decodes only what a history read returns:
bytes are not tracked by the garbage collector, while a ring of dicts is thousands of long-lived objects that every
full collection walks (the moderation stream adds one entry per question).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import msgpack

from jansamvad.broker.base import MEMORY_KEYS_PER_CHANNEL, Broker, BrokerEventHandler, HistoryResult, Publication
from jansamvad.broker.sequencer import Sequencer


class _Channel:
    __slots__ = ("head", "history", "keys")

    def __init__(self, size: int) -> None:
        self.head = 0
        self.history: deque[tuple[int, bytes]] = deque(maxlen=size)  # (seq, msgpack of the data), oldest first
        self.keys: dict[str, int] = {}  # idempotency key -> seq, oldest first


class MemoryBroker:
    def __init__(self, history_size: int = 1000) -> None:
        self._history_size = history_size
        self._channels: dict[str, _Channel] = {}
        self._subscribed: set[str] = set()
        self._kept: dict[str, bytes] = {}  # channel -> msgpack of its latest kept message (publish_kept)
        self._handler: BrokerEventHandler | None = None
        # In one process nothing is lost on the way, but a subscription can still be dropped and made again: the same
        # sequencer as the Redis broker's keeps the order and fills (or reports) what was missed.
        self._sequencer = Sequencer(
            lambda channel, since: self.history(channel, since, self._history_size),
            lambda: self._handler,
            self._subscribed.__contains__,
        )

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._subscribed.clear()
        await self._sequencer.close()

    @property
    def healthy(self) -> bool:
        return True

    @property
    def stream_gaps(self) -> int:
        return self._sequencer.gaps

    def delivered(self, channel: str) -> int | None:
        return self._sequencer.delivered(channel)

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
            ch.history.append((seq, msgpack.packb(data if isinstance(data, dict) else dict(data), use_bin_type=True)))
        if channel in self._subscribed:
            self._sequencer.accept(pub)
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

    async def publish_kept(self, channel: str, data: Mapping[str, Any]) -> None:
        self._kept[channel] = msgpack.packb(data if isinstance(data, dict) else dict(data), use_bin_type=True)
        await self.publish(channel, data, history=False)

    async def kept(self, channel: str) -> Mapping[str, Any] | None:
        raw = self._kept.get(channel)
        return None if raw is None else msgpack.unpackb(raw, raw=False)

    async def subscribe(self, channel: str) -> None:
        again = channel not in self._subscribed
        self._subscribed.add(channel)
        if not self._sequencer.knows(channel):
            await self._sequencer.start_at_head(channel, self._head(channel))
        elif again:
            self._sequencer.recover(channel)  # subscribed again after a loss: fill what was published meanwhile

    async def _head(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return ch.head if ch is not None else 0

    async def unsubscribe(self, channel: str) -> None:
        # The node unsubscribes in a task: a new listener may have re-created the room before it runs.
        if self._handler is not None and channel in self._handler.live_channels():
            return
        self._subscribed.discard(channel)
        self._sequencer.forget(channel)

    async def history(self, channel: str, since: int, limit: int) -> HistoryResult:
        ch = self._channels.get(channel)
        if ch is None:
            return HistoryResult([], 0, since == 0)
        wanted = [entry for entry in ch.history if entry[0] > since]
        oldest = ch.history[0][0] if ch.history else ch.head + 1
        complete = since >= oldest - 1
        if len(wanted) > limit:
            wanted, complete = (wanted[-limit:] if limit else []), False
        pubs = [Publication(channel, seq, msgpack.unpackb(raw, raw=False)) for seq, raw in wanted]
        return HistoryResult(pubs, ch.head, complete)


_: type[Broker] = MemoryBroker
