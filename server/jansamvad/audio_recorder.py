"""The leader's audio recording, kept from the live chunks (docs/architecture.md, "The record").

The node where the leader's audio arrives (`Node.publish_audio`) hands every chunk here. Chunks are gathered per
*take*: a take starts at an `init` chunk (the WebM header a MediaRecorder writes first) and is the stream that
header begins, so its segments concatenated are one playable file. A leader who reconnects to another node goes on
there without a new header: that node starts its take from the latest `init` chunk it saw on the channel.

A take is written as segment objects `audio/<th>/<take>/<n>.part` (an object store cannot append) once
SEGMENT_BYTES have gathered or SEGMENT_S have passed, and at the end of the town hall; the record builder joins each
take's segments into one file. What a node held but had not written when it crashed (at most SEGMENT_S) is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from jansamvad.recording_store.base import ObjectStore

log = logging.getLogger("jansamvad.audio_recorder")

SEGMENT_BYTES = 256 * 1024
SEGMENT_S = 10.0
MAX_TAKE_BYTES = 512 * 1024 * 1024  # a take longer than this (days of speech at 24 kbit/s) stops being recorded


def audio_prefix(th: str) -> str:
    return f"audio/{th}/"


@dataclass
class _Take:
    take_id: str
    mime: str
    buffer: bytearray = field(default_factory=bytearray)
    segments: int = 0
    written: int = 0
    since: float = field(default_factory=time.monotonic)


class AudioRecorder:
    def __init__(self, objects: ObjectStore, node_id: str) -> None:
        self.objects = objects
        self.node_id = node_id
        self._takes: dict[str, _Take] = {}
        self._started = 0  # takes started by this recorder
        self._writes: set[asyncio.Task[None]] = set()
        self.failed_writes = 0

    def recording(self, th: str) -> bool:
        """A take of this town hall is going on here (a chunk without a header can go on with it)."""
        return th in self._takes

    def chunk(self, th: str, data: bytes, init: bool, mime: str, last_init: bytes | None) -> None:
        """One live chunk of the leader's audio (synchronous: buffered; full segments are written in the background)."""
        take = self._takes.get(th)
        if init or take is None:
            if take is not None:
                self._write(th, take)
            if not init and last_init is None:
                return  # no header to start a playable take from: wait for the next init chunk
            # Unique and in time order: two takes may start within one millisecond (a leader who stops and starts).
            self._started += 1
            take_id = f"{int(time.time() * 1000):013d}-{self.node_id}-{self._started:06d}"
            take = self._takes[th] = _Take(take_id, mime or "audio/webm")
            if not init and last_init is not None:
                take.buffer += last_init
        if take.written + len(take.buffer) + len(data) > MAX_TAKE_BYTES:
            return
        take.buffer += data
        if len(take.buffer) >= SEGMENT_BYTES or time.monotonic() - take.since >= SEGMENT_S:
            self._write(th, take)

    def _write(self, th: str, take: _Take) -> None:
        if not take.buffer:
            return
        data, take.buffer = bytes(take.buffer), bytearray()
        key = f"{audio_prefix(th)}{take.take_id}/{take.segments:06d}.part"
        take.segments += 1
        take.written += len(data)
        take.since = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._put(key, data, take.mime))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, key: str, data: bytes, mime: str) -> None:
        try:
            await self.objects.put(key, data, mime)
        except Exception as exc:
            self.failed_writes += 1
            log.warning("could not write audio segment %s: %s", key, exc or type(exc).__name__)

    async def finish(self, th: str) -> None:
        """The town hall ended: write what is buffered, and wait for every write in flight."""
        take = self._takes.pop(th, None)
        if take is not None:
            self._write(th, take)
        await self.flushed()

    async def flushed(self) -> None:
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self) -> None:
        for th in list(self._takes):
            await self.finish(th)


async def takes(objects: ObjectStore, th: str) -> list[tuple[str, list[str]]]:
    """The recorded takes of a town hall, oldest first: (take id, its segment keys in order)."""
    grouped: dict[str, list[str]] = {}
    for key in await objects.list(audio_prefix(th)):
        take_id, _, segment = key[len(audio_prefix(th)) :].partition("/")
        if segment.endswith(".part"):
            grouped.setdefault(take_id, []).append(key)
    return [(take_id, sorted(keys)) for take_id, keys in sorted(grouped.items())]
