"""The reads a join makes, shared by every join of the same moment (issue 19: no sequential round trips per join).

A citizen's join reads the town hall, the user's restriction, and for its snapshot the room's history, public
questions, polls and reaction totals (a resume: the history after its `last_seq`, and top votes). In a growing room
thousands of joins a second ask the same things, and each read was a Redis round trip (a write syscall, a reply
parsed) per join. Here every read is a *batch* per town hall: a batch starts one window (the fan-out tick) after its
first join asked, or when the read in flight for that town hall ends, and serves every join that asked meanwhile in
one round trip (restrictions: two MGETs for all their users; resumes: one history read from the oldest `last_seq`).
So the Redis calls per second grow with batches, not with joins.

Freshness is what it was: a batch starts only after every join in it asked, so a join sees state at least as new as
the moment it asked. That is what the snapshot needs: the joiner is already in the room (it receives every event
from then on), the batch reads the history head after that, and the store after the head, so every event up to
the head is in the state and every later one arrives live (fanout.resume drops the ones the head covers).

Reuse: the room state and the town hall a batch read stay good for later joins while nothing could have changed
them unseen. Every change of the state, and of a town hall's status and slow mode, is an event of the town hall's
stream (a title edit is not: a welcome may show the old title for at most a tick). So while this node has handed on
no event of the channel since the read (the broker's `delivered` seq is still the head read) and no aggregates tick
began (votes and reaction totals are not events: a tick sends their changes only to those already in the room), a
later joiner, already in the room, gets every event after that head live. In a growing room the snapshot costs one
read per town hall per tick or per event, whichever comes first; only the restrictions (per user) are read for
every batch.

Spacing: under a steady flow of joins a batch would start as soon as the one in flight ended, one round trip after
it, so a batch carried only the few joins of one round trip (the restrictions' two MGETs, ~0.2 ms of node CPU,
shared by ~7 joins at 1,500 joins a second). A key's next batch therefore starts no sooner than `spacing_s`
(BATCH_SPACING_S, 20 ms) after its previous one started: at most 50 reads a second per town hall and kind, however
many join, and a join waits at most that long for its batch to begin (a lone join still only `window_s`).

A failed read fails every join of its batch (the store's error: RedisUnavailable closes them with 1013, as a single
join did); the next join starts a new batch.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from jansamvad.broker.base import Broker, HistoryResult
from jansamvad.channels import public_channel
from jansamvad.models import PUBLIC_STATES, PollState, Restriction, Townhall
from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.records import encoded_part
from jansamvad.store.base import Store

K = TypeVar("K", bound=Hashable)
I = TypeVar("I", bound=Hashable)  # noqa: E741 (an item of a batch)
V = TypeVar("V")


BATCH_SPACING_S = 0.02  # the least time between the starts of two batches of one key (module docstring)


class Batched(Generic[K, I, V]):
    """Reads of `items` under a key, batched: one `read(key, items)` in flight per key; who asks meanwhile waits
    for the next, which starts when the one in flight ends and carries every item asked for since. A batch with
    nothing in flight before it starts `window_s` after its first item (the joins of that moment join it). Either
    way a batch starts no sooner than `spacing_s` after the key's previous one started (module docstring)."""

    def __init__(
        self,
        read: Callable[[K, list[I]], Coroutine[Any, Any, dict[I, V]]],
        window_s: float = 0.0,
        spacing_s: float = BATCH_SPACING_S,
    ) -> None:
        self._read = read
        self._window_s = window_s
        self._spacing_s = spacing_s
        self._started: dict[K, float] = {}  # loop time each key's last batch started (dropped once none waits)
        self._running: set[K] = set()
        # Per key, the batch that waits to start: its items, and a future per get (each its own, so a join that times
        # out cancels only its own wait, never the read the others wait for: asyncio.shield's job, ~2 µs cheaper).
        self._next: dict[K, tuple[dict[I, None], list[asyncio.Future[dict[I, V]]]]] = {}
        self._tasks: set[asyncio.Task[dict[I, V]]] = set()  # asyncio keeps only weak references to tasks
        self.reads = 0  # batches read (a test and the bench compare it with the joins)

    async def get(self, key: K, item: I) -> V:
        entry = self._next.get(key)
        if entry is None:
            loop = asyncio.get_running_loop()
            entry = self._next[key] = ({}, [])
            if key not in self._running:
                loop.call_later(max(self._window_s, self._spacing_left(key, loop.time())), self._start, key)
        else:
            loop = entry[1][0].get_loop()
        entry[0][item] = None
        waiter: asyncio.Future[dict[I, V]] = loop.create_future()
        entry[1].append(waiter)
        return (await waiter)[item]

    def _spacing_left(self, key: K, now: float) -> float:
        """Seconds until the key's next batch may start (0: now)."""
        started = self._started.get(key)
        return 0.0 if started is None else started + self._spacing_s - now

    def _start(self, key: K) -> None:
        entry = self._next.pop(key, None)
        if entry is None:
            return
        items, waiters = entry
        self._running.add(key)
        self.reads += 1
        loop = asyncio.get_running_loop()
        self._started[key] = loop.time()
        task: asyncio.Task[dict[I, V]] = loop.create_task(self._read(key, list(items)))
        self._tasks.add(task)

        def done(task: asyncio.Task[dict[I, V]]) -> None:
            self._tasks.discard(task)
            self._running.discard(key)
            if task.cancelled():
                for waiter in waiters:
                    waiter.cancel()
            elif (exc := task.exception()) is not None:
                for waiter in waiters:
                    if not waiter.done():  # done: cancelled, its join gave up (nobody is left to see the error)
                        waiter.add_done_callback(_retrieve)  # seen even if its join is cancelled before it looks
                        waiter.set_exception(exc)
            else:
                found = task.result()
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(found)
            if key not in self._next:
                if loop.time() - self._started.get(key, 0.0) >= self._spacing_s:
                    self._started.pop(key, None)  # no batch waits and the spacing is over: nothing to remember
            elif (left := self._spacing_left(key, loop.time())) > 0:
                loop.call_later(left, self._start, key)
            else:
                self._start(key)

        task.add_done_callback(done)


@dataclass(frozen=True)
class RoomState:
    """What every citizen's snapshot of one moment shares: the speech history up to `hist.head` and the state
    after it, already in their wire form (the lists are shared by the snapshots: nobody changes them)."""

    hist: HistoryResult
    questions: list[dict[str, Any]]
    polls: list[dict[str, Any]]
    reactions: dict[str, int]
    # snapshot.speech for everyone, when no event in `hist` is targeted (else each session's is filtered: joining.py)
    speech: list[dict[str, Any]] | None
    # The four shared fields encoded, per wire format, by the first snapshot that needs them (encoded_parts)
    _encoded: dict[Encoding, SharedParts] = field(default_factory=dict, compare=False, repr=False)

    def encoded_parts(self, encoding: Encoding) -> SharedParts:
        """polls, reactions, speech and questions in `encoding`, encoded once for every snapshot of this state
        (~3 µs per JSON snapshot of ten sentences; only seq, the status and the counts differ between joins)."""
        parts = self._encoded.get(encoding)
        if parts is None:
            parts = self._encoded[encoding] = SharedParts(
                encoded_part(self.polls, encoding),
                encoded_part(self.reactions, encoding),
                encoded_part(self.speech, encoding),
                encoded_part(self.questions, encoding),
            )
        return parts


class SharedParts(NamedTuple):
    polls: msgspec.Raw
    reactions: msgspec.Raw
    speech: msgspec.Raw
    questions: msgspec.Raw


MAX_KEPT = 1_000  # town halls whose last reads are kept for reuse (more: the oldest are forgotten)


class JoinReads:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        snapshot_speech: int,
        top_votes: int,
        history_size: int,
        epoch: Callable[[], int],
        window_s: float = 0.0,
    ) -> None:
        self._store = store
        self._broker = broker
        self._snapshot_speech = snapshot_speech
        self._top_votes = top_votes
        self._history_size = history_size
        self._epoch = epoch  # the aggregates ticks begun (Aggregates.ticks)
        # th -> (epoch, the channel's delivered seq, what was read), for reuse (module docstring).
        self._kept_states: dict[str, tuple[int, int | None, RoomState]] = {}
        self._kept_townhalls: dict[str, tuple[int, int | None, Townhall]] = {}
        self.reused = 0  # joins served from a kept read
        # A join waits at most window_s (the fan-out tick) for the others of its moment: at a few hundred joins a
        # second a batch of call_soon would mostly be one join.
        self.townhalls: Batched[str, None, Townhall | None] = Batched(self._read_townhall, window_s)
        self.restrictions: Batched[str, str, Restriction | None] = Batched(self._store.restrictions, window_s)
        self.states: Batched[str, None, RoomState] = Batched(self._read_state, window_s)
        self.votes: Batched[str, None, tuple[dict[str, int], dict[str, int]]] = Batched(self._read_votes, window_s)
        self.histories: Batched[str, int, HistoryResult] = Batched(self._read_histories, window_s)

    async def townhall(self, th: str) -> Townhall | None:
        kept = self._kept_townhalls.get(th)
        if kept is not None and self._still_good(th, kept[0], kept[1]):
            self.reused += 1
            return kept[2]
        return await self.townhalls.get(th, None)

    async def restriction(self, th: str, sub: str) -> Restriction | None:
        return await self.restrictions.get(th, sub)

    async def room_state(self, th: str) -> RoomState:
        """The snapshot's shared part, read after the call (or reused: the module docstring says when): call it once
        the session is in the room."""
        kept = self._kept_states.get(th)
        if kept is not None and kept[1] == kept[2].hist.head and self._still_good(th, kept[0], kept[1]):
            self.reused += 1
            return kept[2]
        return await self.states.get(th, None)

    def _still_good(self, th: str, epoch: int, delivered: int | None) -> bool:
        """No aggregates tick began and no event of the town hall was handed on since a read that saw these."""
        return (
            delivered is not None and epoch == self._epoch() and self._broker.delivered(public_channel(th)) == delivered
        )

    def _marks(self, th: str) -> tuple[int, int | None]:
        return self._epoch(), self._broker.delivered(public_channel(th))

    @staticmethod
    def _keep(kept: dict[str, Any], th: str, value: Any) -> None:
        if len(kept) >= MAX_KEPT and th not in kept:
            kept.clear()  # rare (a node serving a thousand town halls): forgetting only costs a read
        kept[th] = value

    async def top_votes(self, th: str) -> tuple[dict[str, int], dict[str, int]]:
        return await self.votes.get(th, None)

    async def history(self, th: str, since: int) -> HistoryResult:
        """The town hall's events after `since` (a resume's replay), read after the call: once the session is in the
        room. The resumes of a moment (a reconnect storm) share one read from the oldest `since` among them."""
        return await self.histories.get(th, since)

    async def _read_townhall(self, th: str, _: Sequence[None]) -> dict[None, Townhall | None]:
        epoch, delivered = self._marks(th)  # taken before the read: a change after them shows as a new event or tick
        townhall = await self._store.get_townhall(th)
        if townhall is not None:
            self._keep(self._kept_townhalls, th, (epoch, delivered, townhall))
        return {None: townhall}

    async def _read_votes(self, th: str, _: Sequence[None]) -> dict[None, tuple[dict[str, int], dict[str, int]]]:
        return {None: await self._store.top_votes(th, self._top_votes)}

    async def _read_histories(self, th: str, sinces: Sequence[int]) -> dict[int, HistoryResult]:
        channel = public_channel(th)
        found: dict[int, HistoryResult] = {}
        pending = sorted(set(sinces))
        hist = await self._broker.history(channel, pending[0], self._history_size)
        if not hist.complete:
            # The oldest is past the window. Those older than what the window holds are read on their own (they
            # get a snapshot); the rest share a second read from the oldest of them.
            first = hist.publications[0].seq if hist.publications else hist.head + 1
            older = [s for s in pending if s < first - 1]
            pending = [s for s in pending if s >= first - 1]
            found.update(await self._each(channel, older))
            if not pending:
                return found
            hist = await self._broker.history(channel, pending[0], self._history_size)
            if not hist.complete:
                found.update(await self._each(channel, pending))
                return found
        # Complete from the oldest: every later `since` has all of its events in it, in seq order.
        seqs = [pub.seq for pub in hist.publications]
        for s in pending:
            found[s] = HistoryResult(hist.publications[bisect_right(seqs, s) :], hist.head, True)
        return found

    async def _each(self, channel: str, sinces: list[int]) -> dict[int, HistoryResult]:
        alone = await asyncio.gather(*(self._broker.history(channel, s, self._history_size) for s in sinces))
        return dict(zip(sinces, alone, strict=True))

    async def _read_state(self, th: str, _: Sequence[None]) -> dict[None, RoomState]:
        # The head first, then the store: every event up to the head is in what the store returns.
        epoch, delivered = self._marks(th)
        hist = await self._broker.history(public_channel(th), 0, self._snapshot_speech)
        questions, polls, reactions = await asyncio.gather(
            self._store.questions(th, PUBLIC_STATES),
            self._store.polls(th, (PollState.OPEN, PollState.CLOSED)),
            self._store.add_reactions(th, {}),
        )
        pubs = hist.publications
        speech = None
        if not any(p.data.get("to") for p in pubs):
            speech = [{**p.data, "seq": p.seq} for p in pubs if p.data["t"] in ("speech", "announce")]
        state = RoomState(hist, [q.public() for q in questions], [p.public() for p in polls], reactions, speech)
        # Kept only when this node had handed on exactly the head it read (else the next join reads again).
        self._keep(self._kept_states, th, (epoch, delivered, state))
        return {None: state}


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a batch's failure as seen: its joins got it (or timed out); it must not be logged as lost."""
    if not future.cancelled():
        future.exception()
