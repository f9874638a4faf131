""" "What you missed": a late joiner of a live town hall gets a `digest` after the snapshot, built from the journal
and the store once per town hall per change (not per join), at most 8 KiB even for a two-hour town hall."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from loadtest.bench.digest_size import build_two_hour_townhall

from jansamvad.digest import DIGEST_MAX_BYTES, DigestCache, build_digest, encoded_size
from jansamvad.journal.memory import MemoryJournal
from jansamvad.server import RunningServer
from jansamvad.store.memory import MemoryStore
from tests.helpers import Session, check_server_message, joined, make_hall

pytestmark = pytest.mark.anyio


async def _join_with_digest(
    server: RunningServer, token: str, **hello: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """welcome, then what follows until the first message that is neither snapshot nor digest (or 1 s of silence)."""
    session = await Session.open(server)
    welcome, snapshot = await session.hello(token, **hello)
    after = [snapshot] if snapshot is not None else []
    while True:
        try:
            message = await session.recv(timeout=0.5)
        except TimeoutError:
            break
        after.append(message)
        if message["t"] != "digest":
            break
    return welcome, after


async def _run_townhall(server: RunningServer) -> tuple[Any, Session]:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    moderator = await joined(server, hall.moderator)
    await leader.request({"t": "go_live"})
    for i in range(3):
        await leader.request({"t": "speech", "text": f"बिहार के लिए वाक्य {i}"})
    await leader.request({"t": "speech", "text": "अधूरा", "final": False})
    await leader.request({"t": "announce", "text": "कल सुबह दस बजे पटना में सभा"})
    asker = await joined(server, hall.citizen_token(sub="c-asker", name="राम"))
    ack = await asker.request({"t": "ask", "key": "ask-key-0001", "text": "सड़क कब बनेगी?"})
    await moderator.request({"t": "moderate", "qid": ack["qid"], "action": "approve"})
    await leader.request({"t": "moderate", "qid": ack["qid"], "action": "answer"})
    poll = await leader.request({"t": "poll_create", "question": "क्या सभा हो?", "options": ["हाँ", "नहीं"]})
    await leader.request({"t": "poll_open", "pid": poll["pid"]})
    await leader.request({"t": "poll_close", "pid": poll["pid"]})
    return hall, leader


async def test_digest_late_joiner_gets_it_after_the_snapshot(server: RunningServer) -> None:
    hall, _ = await _run_townhall(server)
    welcome, after = await _join_with_digest(server, hall.citizen_token(sub="c-late"))
    assert welcome["recovered"] is False
    assert [m["t"] for m in after[:2]] == ["snapshot", "digest"]
    digest = after[1]
    check_server_message(digest)
    assert [s["text"] for s in digest["speech"]] == [f"बिहार के लिए वाक्य {i}" for i in range(3)]  # finals only
    assert [a["text"] for a in digest["announce"]] == ["कल सुबह दस बजे पटना में सभा"]
    assert [(q["text"], q["name"]) for q in digest["answered"]] == [("सड़क कब बनेगी?", "राम")]
    assert digest["answered_total"] == 1
    assert [p["state"] for p in digest["polls"]] == ["closed"]
    assert digest["upto"] == welcome["seq"] and digest["live_since"] > 0
    assert "seq" not in digest  # not a stream event


async def test_digest_not_sent_on_a_resume_within_history_or_to_staff(server: RunningServer) -> None:
    hall, _ = await _run_townhall(server)
    welcome, after = await _join_with_digest(server, hall.citizen_token(sub="c-a"))
    session = await Session.open(server)
    welcome2, snapshot = await session.hello(hall.citizen_token(sub="c-a"), last_seq=welcome["seq"] - 2)
    assert welcome2["recovered"] is True and snapshot is None
    replay = [await session.recv() for _ in range(4)]
    assert "digest" not in [m["t"] for m in replay]
    _, staff_after = await _join_with_digest(server, hall.moderator)
    assert "digest" not in [m["t"] for m in staff_after]


async def test_digest_built_once_per_change_not_once_per_join(server: RunningServer) -> None:
    hall, leader = await _run_townhall(server)
    digests = server.node.digests
    before = digests.builds
    seen = []
    for i in range(12):
        _, after = await _join_with_digest(server, hall.citizen_token(sub=f"c-{i}"))
        seen.append(next(m for m in after if m["t"] == "digest"))
    assert digests.builds == before + 1  # twelve joins, one build
    assert all(d == seen[0] for d in seen)
    await leader.request({"t": "speech", "text": "एक और वाक्य"})
    _, after = await _join_with_digest(server, hall.citizen_token(sub="c-next"))
    newer = next(m for m in after if m["t"] == "digest")
    assert digests.builds == before + 2 and newer["speech"][-1]["text"] == "एक और वाक्य"


async def test_digest_not_sent_before_anything_happened(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    _, after = await _join_with_digest(server, hall.citizen_token(sub="c-early"))
    assert "digest" not in [m["t"] for m in after]


async def test_digest_of_a_two_hour_townhall_fits_in_8_kib() -> None:
    journal, store, th, head = await build_two_hour_townhall()
    digest = await build_digest(journal, store, th, head)
    size = encoded_size(digest)
    assert size <= DIGEST_MAX_BYTES
    assert len(msgpack.packb(digest, use_bin_type=True)) == size
    # It still says what it must: the newest sentence, the newest answered question, the latest poll.
    last = (await journal.read(th, "speech", 1))[0]
    assert digest["speech"][-1]["text"] == last.event["text"]
    assert digest["answered"] and digest["polls"] and digest["announce"]
    assert digest["answered_total"] > len(digest["answered"])


async def test_digest_leaves_out_announcements_to_one_unit() -> None:
    # One digest serves every late joiner of the town hall: an announcement `to` a unit (targeting.py) is for its
    # citizens alone, so it must not reach the others through the digest.
    journal, store = MemoryJournal(), MemoryStore()
    th = (await store.create_townhall("पटना जनसंवाद", "hi")).id
    await journal.append(th, 1, {"t": "status", "status": "live", "ts": 1000})
    await journal.append(th, 2, {"t": "announce", "text": "सबके लिए", "ts": 2000})
    await journal.append(th, 3, {"t": "announce", "text": "केवल गया", "to": "gaya", "to_name": "गया", "ts": 3000})
    digest = await build_digest(journal, store, th, 3)
    assert [a["text"] for a in digest["announce"]] == ["सबके लिए"]


async def test_digest_cache_shares_one_build_between_concurrent_joins() -> None:
    journal, store, th, head = await build_two_hour_townhall(minutes=5)
    cache = DigestCache(journal, store)

    results = await asyncio.gather(*(cache.get(th, head) for _ in range(50)))
    assert cache.builds == 1 and all(r is results[0] for r in results)
    await cache.get(th, head - 1)  # an older head is served by the newer digest
    assert cache.builds == 1


async def test_journal_keeps_the_transcript_beyond_the_history_window(make_server: Any) -> None:
    server = await make_server(history_size=10)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    for i in range(25):
        await leader.request({"t": "speech", "text": f"वाक्य {i}", "key": f"speech-key-{i:04d}"})
    await leader.request({"t": "speech", "text": "वाक्य 0", "key": "speech-key-0000"})  # a resend: spoken once
    journal = server.node.journal
    assert isinstance(journal, MemoryJournal)
    lines = await journal.read(hall.th, "speech")
    assert [e.event["text"] for e in lines] == [f"वाक्य {i}" for i in range(25)]
    assert [e.event["status"] for e in await journal.read(hall.th, "notice")] == ["live"]


async def test_digest_after_a_drop_longer_than_the_history_window(make_server: Any) -> None:
    server = await make_server(history_size=10)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    await leader.request({"t": "speech", "text": "पहला वाक्य"})
    session = await Session.open(server)
    welcome, _ = await session.hello(hall.citizen_token(sub="c-train"))
    await session.close()  # into a tunnel
    for i in range(20):
        await leader.request({"t": "speech", "text": f"सुरंग में छूटा वाक्य {i}"})
    back, after = await _join_with_digest(server, hall.citizen_token(sub="c-train"), last_seq=welcome["seq"])
    assert back["recovered"] is False and [m["t"] for m in after[:2]] == ["snapshot", "digest"]
    assert after[1]["speech"][-1]["text"] == "सुरंग में छूटा वाक्य 19"
