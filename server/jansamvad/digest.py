""" "What you missed": a short digest for a citizen who joins late, or comes back after a drop longer than the
history window (docs/protocol.md, message `digest`).

It is built from what is stored (the journal's transcript, the store's answered questions and polls), never from a
citizen's own state, so it is the same for every such citizen: the node builds it once per town hall per change of
the event stream (its head seq) and hands the cached one to every join after that. Concurrent joins wait for the one
build in flight. `DigestCache.builds` counts the builds (metric `jansamvad_digest_builds_total`).

Its size is bounded (DIGEST_MAX_BYTES, msgpack): the last minutes of the speech, the newest announcements, the last
answered questions and polls, each capped, then the oldest speech lines go first until it fits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgpack
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from jansamvad.journal.base import Journal
from jansamvad.models import PollState, QState, Question, Status, Townhall
from jansamvad.protocol.codec import Encoding, frame_message
from jansamvad.protocol.roles import Role
from jansamvad.store.base import Store

if TYPE_CHECKING:
    from jansamvad.client import Client

log = logging.getLogger("jansamvad.digest")

DIGEST_MAX_BYTES = 8 * 1024  # the whole `digest` message, msgpack (JSON is larger: \u-free UTF-8, ~10% more)
DIGEST_SPEECH_S = 5 * 60  # speech from the last this many seconds before the last final sentence
DIGEST_SPEECH_READ = 200  # the newest this many final sentences are read (more than 5 minutes' worth)
DIGEST_ANNOUNCE_MAX = 5
DIGEST_NOTICES_READ = 100
DIGEST_ANSWERED_MAX = 10
DIGEST_POLLS_MAX = 3
DIGEST_TEXT_CHARS = 120  # a question's or poll's text, or an announcement, is cut to this many characters
DIGEST_OPTION_CHARS = 40  # a poll option's text
DIGEST_CACHE_MAX = 1000  # town halls with a cached digest per node (one entry each)


def _cut(text: str, limit: int = DIGEST_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _answered_at(q: Question) -> int:
    return max((d.ts for d in q.decisions if d.action == "answer"), default=q.ts)


def encoded_size(message: dict[str, Any]) -> int:
    return len(msgpack.packb(message, use_bin_type=True))


async def build_digest(journal: Journal, store: Store, th: str, upto: int) -> dict[str, Any]:
    """The digest of town hall `th` as of its stream head `upto`: a `digest` message of at most DIGEST_MAX_BYTES."""
    speech_entries = await journal.read(th, "speech", DIGEST_SPEECH_READ)
    notices = await journal.read(th, "notice", DIGEST_NOTICES_READ)
    speech: list[dict[str, Any]] = []
    if speech_entries:
        last_ts = int(speech_entries[-1].event.get("ts", 0))
        speech = [
            {"text": str(e.event["text"]), "ts": int(e.event.get("ts", 0))}
            for e in speech_entries
            if int(e.event.get("ts", 0)) >= last_ts - DIGEST_SPEECH_S * 1000
        ]
    # Announcements to everyone only: the digest is one per town hall, and one `to` a unit is for its citizens alone.
    announcements = [e for e in notices if e.event.get("t") == "announce" and not e.event.get("to")]
    live_since = next((int(e.event.get("ts", 0)) for e in notices if e.event.get("status") == "live"), 0)
    answered = sorted(await store.questions(th, (QState.ANSWERED,)), key=_answered_at)
    polls = [p for p in await store.polls(th, (PollState.OPEN, PollState.CLOSED))]
    digest: dict[str, Any] = {
        "t": "digest",
        "upto": upto,
        "live_since": live_since,
        "speech": speech,
        "announce": [
            {"text": _cut(str(e.event["text"])), "ts": int(e.event.get("ts", 0))}
            for e in announcements[-DIGEST_ANNOUNCE_MAX:]
        ],
        "answered": [
            {"qid": q.qid, "text": _cut(q.text), "name": q.name, "votes": q.votes, "ts": _answered_at(q)}
            for q in answered[-DIGEST_ANSWERED_MAX:]
        ],
        "answered_total": len(answered),
        "polls": [
            {**p.public(), "question": _cut(p.question), "options": [_cut(o, DIGEST_OPTION_CHARS) for o in p.options]}
            for p in polls[-DIGEST_POLLS_MAX:]
        ],
    }
    return fit(digest)


# Each section but the speech has a budget of its own (msgpack bytes; Devanagari is 3 bytes a character), so the
# speech, what a late joiner wants most, keeps at least DIGEST_MAX_BYTES less these and the envelope (about 4.5 KiB).
SECTION_BUDGETS = {"answered": 1800, "announce": 800, "polls": 1000}


def fit(digest: dict[str, Any], max_bytes: int = DIGEST_MAX_BYTES) -> dict[str, Any]:
    """Drop the oldest items of each section over its budget, then the oldest speech lines until the whole fits."""
    for section, budget in SECTION_BUDGETS.items():
        items: list[Any] = digest[section]
        while len(items) > 1 and encoded_size({"x": items}) > budget:
            del items[0]
    speech: list[Any] = digest["speech"]
    while speech and encoded_size(digest) > max_bytes:
        # Many lines at once while far over (a few encodings, not one per line), then line by line.
        over = encoded_size(digest) - max_bytes
        del speech[: max(1, min(len(speech) // 2, over // 600))]
    return digest


def worth_showing(digest: dict[str, Any]) -> bool:
    return bool(digest["speech"] or digest["announce"] or digest["answered"] or digest["polls"])


class DigestCache:
    """One digest per town hall per stream head, built once on this node and shared by every join that needs it."""

    def __init__(self, journal: Journal, store: Store) -> None:
        self.journal = journal
        self.store = store
        self.builds = 0
        self.failures = 0
        self._cached: dict[str, tuple[int, asyncio.Task[dict[str, Any]]]] = {}
        # th -> (the digest, its frame per wire format): encoded once per digest, not once per join (issue 19).
        self._frames: dict[str, tuple[dict[str, Any], dict[Encoding, bytes]]] = {}

    async def get(self, th: str, upto: int) -> dict[str, Any]:
        """The digest as of stream head `upto` (or a later one, if one was built since)."""
        cached = self._cached.get(th)
        if cached is None or cached[0] < upto or _failed(cached[1]):
            task = asyncio.get_running_loop().create_task(build_digest(self.journal, self.store, th, upto))
            task.add_done_callback(_retrieve)
            self.builds += 1
            self._cached.pop(th, None)
            self._cached[th] = cached = (upto, task)
            while len(self._cached) > DIGEST_CACHE_MAX:
                self._cached.pop(next(iter(self._cached)))
        task = cached[1]
        if task.done():  # built: its digest (or its error) at once, without a shield and a suspension per join
            return task.result()
        return await asyncio.shield(task)  # a join that times out must not cancel the build others wait for

    async def for_join(self, th: str, upto: int) -> dict[str, Any] | None:
        """The digest to send a joining citizen, or None: nothing to show yet, or it could not be built (a store
        that fails now fails the join's snapshot too; a digest alone never costs a citizen the live stream)."""
        try:
            digest = await self.get(th, upto)
        except Exception as exc:
            self.failures += 1
            log.warning("no digest for %s: %s", th, type(exc).__name__)
            return None
        return digest if worth_showing(digest) else None

    async def send_after_snapshot(self, client: Client, townhall: Townhall, head: int) -> None:
        """The join's hook (after a `snapshot`): a citizen of a live town hall gets the digest, if there is one."""
        claims = client.claims
        if claims is None or claims.role is not Role.CITIZEN or townhall.status is not Status.LIVE or not head:
            return
        digest = await self.for_join(townhall.id, head)
        if digest is not None:
            client.node.metrics.messages_out["digest"] += 1
            client.conn.send_frame(self._frame(townhall.id, digest, client.conn.encoding))

    def _frame(self, th: str, digest: dict[str, Any], encoding: Encoding) -> bytes:
        kept = self._frames.get(th)
        if kept is None or kept[0] is not digest:
            if len(self._frames) >= DIGEST_CACHE_MAX:
                self._frames.clear()
            kept = self._frames[th] = (digest, {})
        frame = kept[1].get(encoding)
        if frame is None:
            frame = kept[1][encoding] = frame_message(digest, encoding)
        return frame

    def forget(self, th: str) -> None:
        self._cached.pop(th, None)
        self._frames.pop(th, None)


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class DigestCollector(Collector):
    """`jansamvad_digest_builds_total`: digests this node built (once per town hall per change, not per join)."""

    def __init__(self, cache: DigestCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "jansamvad_digest_builds", "'What you missed' digests built (once per town hall change)", self.cache.builds
        )
