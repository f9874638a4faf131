"""Opt-in audio: a town hall's audio chunks travel on their own channel, to the sessions that chose to listen.

The leader's chunks are published on `th:<id>:audio` (feeds.audio_channel), never on the town hall's public channel:
a node subscribes to it only while one of its sessions in that town hall is in audio mode, and unsubscribes when the
last one leaves the mode, so a node without listeners receives no audio from the broker, and a session that never
chose audio gets none of its bytes (its feed's blob has no audio frames, fanout.py).

An `init` chunk (the start of a recording: the WebM header and the first Cluster) is also kept by the broker as the
channel's latest (Broker.publish_kept): a listener who turns audio on, joins late or resumes gets it first and starts
at the current recording, on any node, even one that subscribed a moment ago.

Audio is droppable: a slow consumer skips it (fanout.py); speech and other events are never skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from jansamvad.broker.base import Broker
from jansamvad.feeds import ENCODINGS, Mode, audio_channel, feed_of
from jansamvad.hub import Hub

log = logging.getLogger("jansamvad.audio")

AUDIO_FEEDS = tuple(feed_of(encoding, Mode.AUDIO) for encoding in ENCODINGS)
AUDIO_PREFIX, AUDIO_SUFFIX = "th:", ":audio"


def audio_townhall(channel: str) -> str | None:
    """The town hall of an audio channel, or None for any other channel."""
    if channel.startswith(AUDIO_PREFIX) and channel.endswith(AUDIO_SUFFIX):
        return channel[len(AUDIO_PREFIX) : -len(AUDIO_SUFFIX)]
    return None


class AudioChannels:
    """Which town halls' audio this node subscribes to: exactly those with a local session in audio mode."""

    def __init__(self, hub: Hub, broker: Broker, public_channel: Callable[[str], str]) -> None:
        self._hub = hub
        self._broker = broker
        self._public_channel = public_channel
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._n: dict[str, int] = defaultdict(int)  # chunks published from this node, per town hall

    def listeners(self, th: str) -> int:
        room = self._hub.room(self._public_channel(th))
        return sum(room.feeds[feed] for feed in AUDIO_FEEDS) if room is not None else 0

    def channels(self) -> list[str]:
        """The audio channels this node must be subscribed to (after a broker reconnect, too)."""
        result = []
        for channel, room in self._hub.rooms.items():
            if channel.endswith(":mod") or not channel.startswith(AUDIO_PREFIX):
                continue  # only a town hall's public room counts its audio listeners
            if any(room.feeds[feed] for feed in AUDIO_FEEDS):
                result.append(channel + AUDIO_SUFFIX)
        return result

    async def wanted(self, th: str) -> None:
        """A session of `th` is in audio mode now: return once the broker carries the town hall's audio here."""
        task = self._subscribing.get(th)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._subscribing[th] = asyncio.get_running_loop().create_task(
                self._broker.subscribe(audio_channel(th))
            )
            task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    def maybe_unwanted(self, th: str) -> None:
        """After a session left audio mode (or the town hall): unsubscribe once no local session listens."""
        if self.listeners(th) or th not in self._subscribing:
            return
        del self._subscribing[th]
        # The broker checks live_channels() before it drops the subscription: a listener who came back meanwhile
        # keeps it.
        task = asyncio.get_running_loop().create_task(self._broker.unsubscribe(audio_channel(th)))
        task.add_done_callback(_log_error)

    async def publish(self, th: str, data: bytes, init: bool, mime: str) -> None:
        self._n[th] += 1
        message = {"t": "audio", "data": data, "n": self._n[th], "init": init, "mime": mime}
        if init:
            await self._broker.publish_kept(audio_channel(th), message)
        else:
            await self._broker.publish(audio_channel(th), message, history=False)

    async def latest_init(self, th: str) -> Mapping[str, Any] | None:
        """The current recording's init chunk, for a listener who starts now."""
        return await self._broker.kept(audio_channel(th))


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _log_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("audio unsubscribe failed: %r", task.exception())
