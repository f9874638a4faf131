"""Opt-in audio: a town hall's audio chunks travel on their own channel, to the sessions that chose to listen.

The leader's chunks are published on `th:<id>:audio` (channels.audio_channel), never on the town hall's public channel:
a node subscribes to it only while one of its sessions in that town hall is in audio mode, and unsubscribes when the
last one leaves the mode, so a node without listeners receives no audio from the broker, and a session that never
chose audio gets none of its bytes (its feed's blob has no audio frames, fanout.py).

An `init` chunk (the start of a recording: the WebM header and the first Cluster) is also kept by the broker as the
channel's latest (Broker.publish_kept): a listener who turns audio on, joins late or resumes gets it first and starts
at the current recording, on any node, even one that subscribed a moment ago.

Audio is droppable: a slow consumer skips it (fanout.py); speech and other events are never skipped.

The node where the leader's chunks arrive also hands each to the record's AudioRecorder (audio_recorder.py), next to
its publication; a take that starts there without its header (the leader came from another node) starts from the
channel's kept init chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from jansamvad.audio_recorder import AudioRecorder
from jansamvad.broker.base import Broker
from jansamvad.channels import Channel, audio_channel, public_channel
from jansamvad.fanout import Fanout
from jansamvad.feeds import ENCODINGS, Mode, feed_of
from jansamvad.hub import Hub

log = logging.getLogger("jansamvad.audio")

AUDIO_FEEDS = tuple(feed_of(encoding, Mode.AUDIO) for encoding in ENCODINGS)


class AudioChannels:
    """Which town halls' audio this node subscribes to: exactly those with a local session in audio mode."""

    def __init__(self, hub: Hub, broker: Broker, fanout: Fanout, recorder: AudioRecorder) -> None:
        self._hub = hub
        self._broker = broker
        self._fanout = fanout
        self._recorder = recorder
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._n: dict[str, int] = defaultdict(int)  # chunks published from this node, per town hall

    def listeners(self, th: str) -> int:
        room = self._hub.room(public_channel(th))
        return sum(room.feeds[feed] for feed in AUDIO_FEEDS) if room is not None else 0

    def channels(self) -> list[str]:
        """The audio channels this node must be subscribed to (after a broker reconnect, too)."""
        result = []
        for channel, room in self._hub.rooms.items():
            parsed = Channel.parse(channel)
            if not parsed.is_public:
                continue  # only a town hall's public room counts its audio listeners
            if any(room.feeds[feed] for feed in AUDIO_FEEDS):
                result.append(audio_channel(parsed.th))
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

    def deliver(self, th: str, message: Mapping[str, Any]) -> None:
        """A chunk from the broker: to the members of the town hall's public room that are in audio mode."""
        room = self._hub.room(public_channel(th))
        if room is not None:
            self._fanout.enqueue_audio(room, message)

    async def publish(self, th: str, data: bytes, init: bool, mime: str) -> None:
        """A chunk from the leader on this node: into the record's take, then to every node's listeners."""
        last_init = None
        if not init and not self._recorder.recording(th):
            kept = await self.latest_init(th)  # a take without its header here: start it from the kept init chunk
            last_init = kept["data"] if kept is not None else None
        self._recorder.chunk(th, data, init, mime, last_init)
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
