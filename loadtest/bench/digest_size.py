"""'What you missed' on a realistic two-hour town hall: the digest's size and what it costs to build and to serve.

    .venv/bin/python -m loadtest.bench.digest_size [--minutes 120] [--builds 200] [--redis]

The town hall is made in memory (the embedded store and journal: the digest's own work), or with `--redis` in a
Valkey it starts on loopback (the Redis journal and store: what a build costs a node with Redis): a final sentence
every 6 s of 60-200 Devanagari characters, an announcement every 10 minutes, 400 questions of which 120 approved and
40 answered with up to 300 votes each, a poll every 20 minutes. Results go into docs/benchmarks.md ("What you
missed").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from jansamvad.digest import DigestCache, build_digest, encoded_size
from jansamvad.journal.base import Journal
from jansamvad.journal.memory import MemoryJournal
from jansamvad.journal.redis import RedisJournal
from jansamvad.localredis import start_standalone
from jansamvad.models import PollState, QState
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.store.base import Store
from jansamvad.store.memory import MemoryStore
from jansamvad.store.redis import RedisStore

_WORDS = (
    "बिहार के हर गाँव में सड़क बिजली पानी और स्कूल पहुँचाना हमारी सरकार का संकल्प है किसान भाइयों को फसल का "
    "उचित दाम मिलेगा युवाओं के लिए रोज़गार के नए अवसर बनेंगे अस्पतालों में डॉक्टर और दवाइयाँ होंगी महिलाओं की "
    "सुरक्षा सबसे ऊपर है पटना गया मुज़फ़्फ़रपुर भागलपुर दरभंगा पूर्णिया हर ज़िले में काम तेज़ी से चल रहा है"
).split()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words: list[str] = []
    target = rng.randint(low, high)
    while sum(len(w) + 1 for w in words) < target:
        words.append(rng.choice(_WORDS))
    return " ".join(words) + "।"


async def build_two_hour_townhall(
    minutes: int = 120, seed: int = 18, parts: tuple[Journal, Store] | None = None
) -> tuple[Journal, Store, str, int]:
    """(journal, store, town hall id, stream head) of a town hall that has run for `minutes` (in memory, or in the
    journal and store given)."""
    rng = random.Random(seed)
    journal, store = parts or (MemoryJournal(), MemoryStore())
    townhall = await store.create_townhall("पटना जनसंवाद", "hi")
    th = townhall.id
    start_ms = 1_800_000_000_000
    seq = 1
    await journal.append(th, seq, {"t": "status", "status": "live", "ts": start_ms})
    for second in range(0, minutes * 60, 6):
        seq += 1
        text = _sentence(rng, 60, 200)
        await journal.append(th, seq, {"t": "speech", "text": text, "final": True, "ts": start_ms + second * 1000})
        if second % 600 == 300:
            seq += 1
            announcement = "घोषणा: " + _sentence(rng, 60, 200)
            await journal.append(th, seq, {"t": "announce", "text": announcement, "ts": start_ms + second * 1000})
    questions = []
    for i in range(400 * minutes // 120 or 1):
        q, _ = await store.add_question(
            th,
            author=f"c-{i}",
            key=f"key-{i:08d}",
            text=_sentence(rng, 40, 280)[:300],
            name=f"नागरिक {i}",
            region="पटना",
        )
        questions.append(q)
    for q in questions[: max(1, len(questions) * 120 // 400)]:
        await store.decide(th, q.qid, "approve", "m-mod", "")
    answered = questions[: max(1, len(questions) * 40 // 400)]
    for q in answered:
        for voter in range(rng.randint(0, 300)):
            await store.upvote(th, q.qid, f"v-{voter}")
        await store.decide(th, q.qid, "answer", "l-leader", "")
        seq += 1
    for _ in range(max(1, minutes // 20)):
        options = [_sentence(rng, 10, 60)[:80] for _ in range(rng.randint(2, 4))]
        poll = await store.create_poll(th, _sentence(rng, 40, 190)[:200], options)
        await store.set_poll_state(th, poll.pid, PollState.OPEN, "l-leader")
        for voter in range(rng.randint(50, 500)):
            await store.vote_poll(th, poll.pid, f"v-{voter}", rng.randrange(len(options)))
        await store.set_poll_state(th, poll.pid, PollState.CLOSED, "l-leader")
        seq += 2
    assert len(await store.questions(th, (QState.ANSWERED,))) == len(answered)
    return journal, store, th, seq


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--joins", type=int, default=10_000)
    parser.add_argument("--redis", action="store_true", help="journal and store in a local Valkey (loopback)")
    args = parser.parse_args()
    if not args.redis:
        await measure(args, None)
        return
    server = start_standalone()
    try:
        conn, keys = RedisConn(server.url), RedisKeys("bench")
        parts = (RedisJournal(conn, keys), RedisStore(conn, keys))
        try:
            await measure(args, parts)
        finally:
            await parts[0].close()
            await parts[1].close()
    finally:
        server.cleanup()


async def measure(args: argparse.Namespace, parts: tuple[Journal, Store] | None) -> None:
    journal, store, th, head = await build_two_hour_townhall(args.minutes, parts=parts)
    digest = await build_digest(journal, store, th, head)
    size = encoded_size(digest)
    json_size = len(json.dumps(digest, ensure_ascii=False, separators=(",", ":")).encode())
    started = time.perf_counter()
    for _ in range(args.builds):
        await build_digest(journal, store, th, head)
    build_ms = (time.perf_counter() - started) / args.builds * 1000
    cache = DigestCache(journal, store)
    started = time.perf_counter()
    for _ in range(args.joins):
        await cache.get(th, head)
    cached_us = (time.perf_counter() - started) / args.joins * 1e6
    speech_lines = len(await journal.read(th, "speech"))
    where = "Valkey on loopback" if parts else "memory"
    print(f"town hall: {args.minutes} min, {speech_lines} final sentences, head seq {head}; journal and store: {where}")
    print(
        f"digest: {size} bytes msgpack, {json_size} bytes JSON; {len(digest['speech'])} sentences "
        f"({(digest['speech'][-1]['ts'] - digest['speech'][0]['ts']) / 1000:.0f} s), {len(digest['announce'])} "
        f"announcements, {len(digest['answered'])} of {digest['answered_total']} answered, {len(digest['polls'])} polls"
    )
    print(f"build: {build_ms:.2f} ms (mean of {args.builds}); a join with the cached digest: {cached_us:.2f} µs")
    print(f"{args.joins} joins after one change: {cache.builds} build")


if __name__ == "__main__":
    asyncio.run(main())
