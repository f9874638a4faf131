"""The fan-out engine: the hot path from one publication to every local listener.

- Encode once: each message is encoded and framed once per wire format per node, never per connection.
- Batch per tick: messages queued within one tick (`tick_ms`) become one blob per room, written with one
  `transport.write` per connection (ten frames in one write cost about what one frame costs). The tick has a leading
  edge: a message that finds the flusher idle for a tick goes out at the loop's next turn (_schedule).
- Conflate: fast-changing aggregates (viewers, votes, reactions) keep only their latest value per tick.
- Yield: a big fan-out returns to the event loop every `writes_per_yield` writes, so handshakes and pings go on.
- Slow consumers: a listener whose transport buffer is over the cap is skipped for droppable frames and closed with
  4009 for must-deliver ones (it resumes from history when it reconnects). Decided by the listener itself.

Targeted events (targeting.py) go in full to their group and as a `skip` filler with the same number to the rest of
the room: each variant is encoded once per feed. Only a tick that holds one looks at members one by one (to pick
their variant); ordinary ticks write the one blob per feed as before.

One flusher task writes every room in order, so two ticks never interleave on one connection.

A session that replays history is paused (its live frames wait in `paused`). It is resumed by the flusher, at the
end of the first flush that *started after* the resume was asked for: every event published before the replay's
history read has by then gone into `paused`, where the resume's seq filter drops what the replay already sent.
That includes events *held* for coalescing (a partial transcript waits up to COALESCE_S): a flush with a resume
pending also writes the held rooms with numbered events that a resuming session is in, before it un-pauses anyone.
Otherwise the held event, already in the replay, would reach the session a second time once its room is written.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from jansamvad.feeds import COALESCE_S, ENCODINGS, FEED_COUNT, LIGHT_AGGREGATES_S, MODES, Mode, feed_of, is_partial
from jansamvad.hub import Event, Listener, Room, Session
from jansamvad.protocol.codec import frame_message
from jansamvad.targeting import Targeted, filler
from jansamvad.uring_send import UringSender

# Aggregates sent as "latest value per tick"; map-valued fields are merged key by key.
CONFLATED = frozenset({"viewers", "votes", "reactions", "poll_counts"})
_MERGED_FIELDS = {"votes": "v", "reactions": "c"}
_AUDIO_FEEDS = tuple(feed_of(encoding, Mode.AUDIO) for encoding in ENCODINGS)
_LIGHT_FEEDS = tuple(feed_of(encoding, Mode.LIGHT) for encoding in ENCODINGS)
_FEEDS_BY_ENCODING = tuple((encoding, [(feed_of(encoding, mode), mode) for mode in MODES]) for encoding in ENCODINGS)
_Blob = tuple[bytes, bytes, list[tuple[str, int, bytes]]]


def _with_seq(field: str, seq: int, message: Mapping[str, Any]) -> dict[str, Any]:
    return {**message, field: seq} if seq else dict(message)


class Fanout:
    def __init__(
        self,
        *,
        tick_s: float,
        writes_per_yield: int,
        on_flush: Callable[[float], None] | None = None,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        # 0: no coalescing, every frame goes out at the next tick (the benchmarks' "before").
        self._coalesce_s = coalesce_s
        self._on_flush = on_flush  # receives each flush's duration in seconds (a metrics histogram)
        self._tick_s = tick_s
        self._writes_per_yield = writes_per_yield
        self._dirty: list[Room] = []
        self._held: dict[Room, None] = {}  # rooms waiting for their coalescing timer (an insertion-ordered set)
        self._resumes: list[tuple[Listener, Mapping[str, int]]] = []
        self._wake = asyncio.Event()
        self._scheduled = False
        self._last_flush = float("-inf")  # loop time the last flush started (the leading edge, _schedule)
        self._task: asyncio.Task[None] | None = None
        # io_uring for the direct sends of a one-feed room (uring_send.py, `--io-uring`); None: one send(2) each.
        self.sender: UringSender | None = None
        self.frames_built = 0  # frames encoded (per format), for tests and metrics
        # The same, by wire format ("msgpack", "json"): a room whose listeners all speak one never encodes the other.
        self.frames_by_format: Counter[str] = Counter()
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
        if self.sender is not None:
            self.sender.close()
            self.sender = None

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
        if is_partial(room.events[-1][1]):
            self._mark_lazy(room)  # a partial transcript may wait a little for company (COALESCE_S)
        else:
            self._mark(room)

    def enqueue_audio(self, room: Room, message: Mapping[str, Any]) -> None:
        """An audio chunk, for the room's members in audio mode only (droppable; it may wait COALESCE_S to share a
        write with the captions of the same moment)."""
        if any(room.feeds[feed] for feed in _AUDIO_FEEDS):
            room.audio.append(dict(message))
            self._mark_lazy(room)

    def conflate(self, room: Room, message: Mapping[str, Any], key: str | None = None) -> None:
        """Keep only the latest value per key (default: the message type) until the tick ends."""
        t = message["t"]
        key = key or t
        _merge_into(room.conflated, key, message)
        self._mark_lazy(room)

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

    def _mark_lazy(self, room: Room) -> None:
        """Flush the room within COALESCE_S, or sooner with the next must-deliver frame (fewer writes per listener)."""
        if room.dirty or room.lazy:
            return
        if self._coalesce_s <= 0:
            self._mark(room)
            return
        room.lazy = True
        self._held[room] = None
        asyncio.get_running_loop().call_later(self._coalesce_s, self._lazy_due, room)

    def _lazy_due(self, room: Room) -> None:
        room.lazy = False
        self._held.pop(room, None)
        if room.events or room.audio or room.conflated or room.light_pending:
            self._mark(room)

    def _light_due(self, room: Room) -> None:
        room.light_timer = False
        if room.light_pending:
            self._mark(room)

    def _schedule(self) -> None:
        """Wake the flusher on the tick's leading edge: when the last flush started a tick or more ago, at the loop's
        next turn (a lone sentence does not wait for the tick), else a tick after that flush (what arrives meanwhile
        shares its writes). Either way there is at most one flush per tick; held rooms (partials, audio) keep their
        own coalescing timer and only then come here."""
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            due = self._last_flush + self._tick_s
            if due > loop.time():
                loop.call_at(due, self._wake.set)
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
            self._last_flush = asyncio.get_running_loop().time()
            await self._flush()

    def _light_aggregates(self, room: Room) -> list[dict[str, Any]]:
        """The aggregates text-light members get this tick: the latest values, at most every LIGHT_AGGREGATES_S."""
        for key, message in room.conflated.items():
            _merge_into(room.light_pending, key, message)
        if not room.light_pending:
            return []
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= room.light_due:
            due, room.light_pending = list(room.light_pending.values()), {}
            room.light_due = now + LIGHT_AGGREGATES_S
            return due
        if not room.light_timer:
            room.light_timer = True
            loop.call_at(room.light_due, self._light_due, room)
        return []

    def _light_for(self, room: Room) -> list[dict[str, Any]]:
        """This tick's aggregates for text-light members (computed once per tick: it moves the pacing state)."""
        feeds = room.feeds
        light_aggregates = self._light_aggregates(room) if feeds[_LIGHT_FEEDS[0]] or feeds[_LIGHT_FEEDS[1]] else []
        if not light_aggregates and not any(feeds[f] for f in _LIGHT_FEEDS):
            room.light_pending = {}
        return light_aggregates

    def _blobs(
        self,
        room: Room,
        events: list[Event],
        conflated: Mapping[str, dict[str, Any]],
        audio_messages: list[dict[str, Any]],
        light_aggregates: list[dict[str, Any]],
        variant: tuple[bool, ...] = (),
    ) -> list[_Blob | None]:
        """One (must-deliver part, whole blob, paused items) per feed that has members: each message encoded once per
        wire format, whatever the number of modes and members. `variant` says, per targeted event in order, whether
        this group gets it in full (else its `skip` filler)."""
        feeds = room.feeds
        blobs: list[_Blob | None] = [None] * FEED_COUNT
        field = room.seq_field
        plain: list[tuple[int, dict[str, Any], bool]] = []
        k = 0
        for seq, message, droppable, targeted in events:
            if targeted is not None:
                if not variant[k]:
                    message = filler()
                k += 1
            plain.append((seq, message, droppable))
        for encoding, modes in _FEEDS_BY_ENCODING:
            present = [(feed, mode) for feed, mode in modes if feeds[feed]]
            if not present:
                continue  # no listener of this room speaks this format: nothing is encoded in it
            built_before = self.frames_built
            framed = [
                (seq, frame_message(_with_seq(field, seq, message), encoding), droppable, is_partial(message))
                for seq, message, droppable in plain
            ]
            aggregates = [frame_message(message, encoding) for message in conflated.values()]
            self.frames_built += len(framed) + len(aggregates)
            audio: list[bytes] = []
            light: list[bytes] = []
            for feed, mode in present:
                if mode is Mode.AUDIO and audio_messages and not audio:
                    audio = [frame_message(message, encoding) for message in audio_messages]
                    self.frames_built += len(audio)
                if mode is Mode.LIGHT and light_aggregates and not light:
                    light = [frame_message(message, encoding) for message in light_aggregates]
                    self.frames_built += len(light)
                must: list[bytes] = []
                drop: list[bytes] = []
                items: list[tuple[str, int, bytes]] = []
                for seq, frame, droppable, partial in framed:
                    if partial and mode is Mode.LIGHT:
                        continue
                    (drop if droppable else must).append(frame)
                    items.append((field, seq, frame))
                extra = light if mode is Mode.LIGHT else aggregates + audio if mode is Mode.AUDIO else aggregates
                drop.extend(extra)
                items.extend((field, 0, frame) for frame in extra)
                must_blob = b"".join(must)
                blobs[feed] = (must_blob, must_blob + b"".join(drop), items)
            self.frames_by_format[encoding.value] += self.frames_built - built_before
        return blobs

    def _held_for(self, resumes: list[tuple[Listener, Mapping[str, int]]]) -> list[Room]:
        """The held rooms to write before these sessions are un-paused: those with numbered events queued (a replay
        may have covered them) that a resuming session is in. Others keep coalescing."""
        rooms = []
        for room in list(self._held):
            if not room.dirty and any(event[0] for event in room.events):
                if any(listener in room.members for listener, _ in resumes):
                    room.dirty = True  # its timer finds it written (or dirty again) and only resets `lazy`
                    rooms.append(room)
        return rooms

    async def _flush(self) -> None:
        rooms, self._dirty = self._dirty, []
        resumes, self._resumes = self._resumes, []
        if resumes and self._held:
            rooms += self._held_for(resumes)
        started = time.perf_counter()
        writes = 0
        for room in rooms:
            room.dirty = False
            members = list(room.members)
            if not members:
                room.events, room.conflated, room.audio = [], {}, []
                continue
            out, n = self.messages_out, len(members)
            events, conflated, audio = room.events, room.conflated, room.audio
            for _, message, _, _ in events:
                out[message["t"]] += n
            for message in room.conflated.values():
                out[message["t"]] += n
            if room.audio:
                out["audio"] += len(room.audio) * sum(room.feeds[feed] for feed in _AUDIO_FEEDS)
            light = self._light_for(room)
            room.events, room.conflated, room.audio = [], {}, []
            targeted = [t for _, _, _, t in events if t is not None]
            if targeted:
                writes = await self._flush_targeted(room, members, events, conflated, audio, light, targeted, writes)
                continue
            # Encode once per feed in use in this room, before the first write.
            blobs = self._blobs(room, events, conflated, audio, light)
            whole = [blob[1] if blob is not None else b"" for blob in blobs]  # per feed; b"": nothing this tick
            in_use = [blob for blob, n in zip(whole, room.feeds, strict=True) if n]
            only = in_use[0] if len(in_use) == 1 else None  # the usual room: one feed, one blob for everyone
            start, count = 0, len(members)
            size = len(only) if only else 0
            while start < count:
                # A slice up to the next yield; the loop below is the per-listener hot path: one attribute, one
                # call and one comparison for a writable member (`fast_write`: send(2) on its socket, None when the
                # connection is closing, replaying or its transport holds bytes), the slow-consumer and replay policy
                # for the others. A send that took less than the blob (EAGAIN: none) hands the rest to the transport.
                chunk = members[start : start + self._writes_per_yield - writes]
                start += len(chunk)
                missed = 0
                sender = self.sender
                if only and sender is not None and sender.usable:
                    ready = []  # the members a send can go to: all of the batch into one submit
                    for member in chunk:
                        if member.fast_write is None:
                            missed += _write_slow(member, blobs[member.feed])  # type: ignore[arg-type]  # in use
                        else:
                            ready.append(member)
                    sender.send(ready, only)  # type: ignore[arg-type]  # a fast write implies a socket (connection.py)
                elif only:
                    for member in chunk:
                        send = member.fast_write
                        if send is None:
                            missed += _write_slow(member, blobs[member.feed])  # type: ignore[arg-type]  # in use
                            continue
                        try:
                            sent = send(only)
                        except OSError:  # EAGAIN (its kernel buffer is full) or a dead peer: the transport's to handle
                            sent = 0
                        if sent != size:
                            member.write_rest(only, sent)
                else:
                    for member in chunk:
                        send = member.fast_write
                        blob = whole[member.feed]
                        if send is None or not blob:
                            missed += _write_slow(member, blobs[member.feed])  # type: ignore[arg-type]  # in use
                            continue
                        try:
                            sent = send(blob)
                        except OSError:
                            sent = 0
                        if sent != len(blob):
                            member.write_rest(blob, sent)
                writes += len(chunk) - missed
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
        audio: list[dict[str, Any]],
        light: list[dict[str, Any]],
        targeted: list[Targeted],
        writes: int,
    ) -> int:
        """A tick with targeted events: each member's variant (which targeted events it gets in full) is looked up
        (a set lookup per targeted event), each variant's feeds are encoded once, on first use, then written like an
        ordinary tick. Returns the writes count carried on (for the yield every writes_per_yield)."""
        staff = room.members
        by_variant: dict[tuple[bool, ...], list[_Blob | None]] = {}
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
            blobs = by_variant.get(variant)
            if blobs is None:
                blobs = by_variant[variant] = self._blobs(room, events, conflated, audio, light, variant)
            if _write_slow(member, blobs[member.feed]):  # type: ignore[arg-type]  # built for every feed in use
                continue  # paused (its frames wait), or nothing for its feed
            writes += 1
            if writes >= self._writes_per_yield:
                self.writes += writes
                writes = 0
                await asyncio.sleep(0)
        return writes


_IN, _OUT = (True,), (False,)  # the variants of a tick with one targeted event


def _write_slow(member: Listener, built: _Blob) -> int:
    """The checked write (a member without a fast write, or a tick with a targeted event): its paused frames, or the
    slow-consumer policy (write_broadcast). Returns 1 when nothing was written (for the writes count), 0 after a
    write."""
    must_blob, blob, items = built
    paused = member.paused
    if paused is not None:
        paused.extend(items)
        return 1
    if not blob:
        return 1  # nothing for this feed this tick (e.g. only audio, or light aggregates not due yet)
    member.write_broadcast(blob, bool(must_blob))
    return 0


def _merge_into(target: dict[str, dict[str, Any]], key: str, message: Mapping[str, Any]) -> None:
    """Conflate: the latest value per key; map-valued aggregates (votes, reactions) merged key by key."""
    merged = _MERGED_FIELDS.get(message["t"])
    old = target.get(key)
    if merged is not None and old is not None:
        target[key] = {**old, merged: {**old[merged], **message[merged]}}
    else:
        target[key] = dict(message)
