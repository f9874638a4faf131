"""The fan-out engine: the hot path from one publication to every local listener.

- Encode once: each message is encoded and framed once per wire format per node, never per connection.
- Batch per tick: messages queued within one tick (`tick_ms`) become one blob per room, written with one
  `transport.write` per connection (ten frames in one write cost about what one frame costs).
- Conflate: fast-changing aggregates (viewers, votes, reactions) keep only their latest value per tick.
- Yield: a big fan-out returns to the event loop every `writes_per_yield` writes, so handshakes and pings go on.
- Slow consumers: a listener whose transport buffer is over the cap is skipped for droppable frames and closed with
  4009 for must-deliver ones (it resumes from history when it reconnects). Decided by the listener itself.

Targeted events (targeting.py) go in full to their group and as a `skip` filler with the same number to the rest of
the room: each variant is encoded once per wire format. Only a tick that holds one looks at members one by one
(to pick their variant); ordinary ticks write the one blob per format as before.

One flusher task writes every room in order, so two ticks never interleave on one connection.

A session that replays history is paused (its live frames wait in `paused`). It is resumed by the flusher, at the
end of the first flush that *started after* the resume was asked for: every event published before the replay's
history read has by then gone into `paused`, where the resume's seq filter drops what the replay already sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from jansamvad.hub import Event, Listener, Room, Session
from jansamvad.protocol.codec import Encoding, frame_message
from jansamvad.targeting import Targeted, filler

# Aggregates sent as "latest value per tick"; map-valued fields are merged key by key.
CONFLATED = frozenset({"viewers", "votes", "reactions", "poll_counts"})
_MERGED_FIELDS = {"votes": "v", "reactions": "c"}


def _with_seq(field: str, seq: int, message: Mapping[str, Any]) -> dict[str, Any]:
    return {**message, field: seq} if seq else dict(message)


class Fanout:
    def __init__(
        self, *, tick_s: float, writes_per_yield: int, on_flush: Callable[[float], None] | None = None
    ) -> None:
        self._on_flush = on_flush  # receives each flush's duration in seconds (a metrics histogram)
        self._tick_s = tick_s
        self._writes_per_yield = writes_per_yield
        self._dirty: list[Room] = []
        self._resumes: list[tuple[Listener, Mapping[str, int]]] = []
        self._wake = asyncio.Event()
        self._scheduled = False
        self._task: asyncio.Task[None] | None = None
        self.frames_built = 0  # frames encoded (per format), for tests and metrics
        self.writes = 0  # transport writes made by broadcasts
        # Messages broadcast, by type, counted once per listener they were meant for (metrics). Counted per message
        # per room per tick, never per connection: nothing is added to the write loop.
        self.messages_out: Counter[str] = Counter()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jansamvad-fanout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def enqueue(
        self,
        room: Room,
        seq: int,
        message: Mapping[str, Any],
        *,
        droppable: bool = False,
        targeted: Targeted | None = None,
    ) -> None:
        room.events.append((seq, dict(message), droppable, targeted))
        self._mark(room)

    def conflate(self, room: Room, message: Mapping[str, Any], key: str | None = None) -> None:
        """Keep only the latest value per key (default: the message type) until the tick ends."""
        t = message["t"]
        key = key or t
        merged = _MERGED_FIELDS.get(t)
        old = room.conflated.get(key)
        if merged is not None and old is not None:
            room.conflated[key] = {**old, merged: {**old[merged], **message[merged]}}
        else:
            room.conflated[key] = dict(message)
        self._mark(room)

    def resume(self, listener: Listener, after: Mapping[str, int]) -> None:
        """Un-pause a session after its replay (see the module docstring for why this goes through the flusher).
        `after` maps a stream ("seq", "mseq") to the last number the replay or snapshot covered."""
        self._resumes.append((listener, after))
        self._schedule()

    def _mark(self, room: Room) -> None:
        if not room.dirty:
            room.dirty = True
            self._dirty.append(room)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            if self._tick_s > 0:
                loop.call_later(self._tick_s, self._wake.set)
            else:
                loop.call_soon(self._wake.set)

    async def flush_now(self) -> None:
        """Write everything queued (used at shutdown, before closing connections)."""
        await self._flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._scheduled = False
            await self._flush()

    def _frames(
        self,
        room: Room,
        encoding: Encoding,
        events: list[Event],
        conflated: Mapping[str, dict[str, Any]],
        variant: tuple[bool, ...] = (),
    ) -> tuple[bytes, bytes, list[tuple[str, int, bytes]]]:
        """The blobs of one tick for one wire format; `variant` says, per targeted event in order, whether this group
        gets it in full (else its `skip` filler)."""
        must: list[bytes] = []
        drop: list[bytes] = []
        items: list[tuple[str, int, bytes]] = []
        field = room.seq_field
        k = 0
        for seq, message, droppable, targeted in events:
            if targeted is not None:
                if not variant[k]:
                    message = filler()
                k += 1
            frame = frame_message(_with_seq(field, seq, message), encoding)
            (drop if droppable else must).append(frame)
            items.append((field, seq, frame))
        for message in conflated.values():
            frame = frame_message(message, encoding)
            drop.append(frame)
            items.append((field, 0, frame))
        self.frames_built += len(items)
        must_blob = b"".join(must)
        return must_blob, must_blob + b"".join(drop), items

    async def _flush(self) -> None:
        rooms, self._dirty = self._dirty, []
        resumes, self._resumes = self._resumes, []
        started = time.perf_counter()
        writes = 0
        for room in rooms:
            room.dirty = False
            members = list(room.members)
            if not members:
                room.events, room.conflated = [], {}
                continue
            out, n = self.messages_out, len(members)
            events, conflated = room.events, room.conflated
            for _, message, _, _ in events:
                out[message["t"]] += n
            for message in conflated.values():
                out[message["t"]] += n
            room.events, room.conflated = [], {}
            targeted = [t for _, _, _, t in events if t is not None]
            if targeted:
                writes = await self._flush_targeted(room, members, events, conflated, targeted, writes)
                continue
            # Encode once per wire format in use in this room, before the first write.
            blobs = {Encoding.MSGPACK: self._frames(room, Encoding.MSGPACK, events, conflated)}
            if room.json_members:
                blobs[Encoding.JSON] = self._frames(room, Encoding.JSON, events, conflated)
            for member in members:
                must_blob, blob, items = blobs[member.encoding]
                paused = member.paused
                if paused is not None:
                    paused.extend(items)
                    continue
                member.write_broadcast(blob, bool(must_blob))
                writes += 1
                if writes >= self._writes_per_yield:
                    self.writes += writes
                    writes = 0
                    await asyncio.sleep(0)
        self.writes += writes
        for listener, after in resumes:
            listener.resume(after)
        if self._on_flush is not None and rooms:
            self._on_flush(time.perf_counter() - started)

    async def _flush_targeted(
        self,
        room: Room,
        members: list[Session],
        events: list[Event],
        conflated: Mapping[str, dict[str, Any]],
        targeted: list[Targeted],
        writes: int,
    ) -> int:
        """A tick with targeted events: each member's variant (which targeted events it gets in full) is looked up
        (a set lookup per targeted event), each (format, variant) pair is encoded once, on first use, then written
        like an ordinary tick. Returns the writes count carried on (for the yield every writes_per_yield)."""
        staff = room.members
        blobs: dict[tuple[Encoding, tuple[bool, ...]], tuple[bytes, bytes, list[tuple[str, int, bytes]]]] = {}
        only = targeted[0] if len(targeted) == 1 else None  # the usual case: one announcement in the tick
        if only is not None:
            full, unit, paths = only.full, only.unit, only.paths
        for member in members:
            if only is not None:  # inlined Targeted.gets: this loop runs once per listener
                hit = member in full if full is not None else unit in paths.get(member, ())
                variant: tuple[bool, ...] = _IN if hit or (only.staff and staff.get(member)) else _OUT
            else:
                is_staff = staff.get(member, False)
                variant = tuple(t.gets(member, is_staff) for t in targeted)
            key = (member.encoding, variant)
            built = blobs.get(key)
            if built is None:
                built = blobs[key] = self._frames(room, key[0], events, conflated, variant)
            must_blob, blob, items = built
            paused = member.paused
            if paused is not None:
                paused.extend(items)
                continue
            member.write_broadcast(blob, bool(must_blob))
            writes += 1
            if writes >= self._writes_per_yield:
                self.writes += writes
                writes = 0
                await asyncio.sleep(0)
        return writes


_IN, _OUT = (True,), (False,)  # the variants of a tick with one targeted event
