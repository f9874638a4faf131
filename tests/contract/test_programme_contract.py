"""The Store contract for programmes and for erasing a citizen's questions (issue 18 items 1 and 4), run against the
memory store, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio

import pytest

from jansamvad.models import QState, Status
from jansamvad.programmes import Programme
from jansamvad.store.base import BadState, NotFound, Store
from tests.contract.conftest import Parts
from tests.contract.test_store_contract import ask

pytestmark = pytest.mark.anyio

START = 1_796_400_000_000  # 2026-12-04 13:20 UTC


async def test_programme_put_get_replace_and_list_by_start(parts: Parts) -> None:
    store = parts.store()
    late = await store.create_townhall("देर से", "hi")
    early = await store.create_townhall("Early", "en")
    without = await store.create_townhall("no programme", "hi")
    assert await store.programme(late.id) is None
    await store.put_programme(Programme(late.id, START + 3_600_000, "नेता जी", "रोज़गार पर बात", 90))
    await store.put_programme(Programme(early.id, START, "Leader"))
    got = await store.programme(late.id)
    assert got is not None
    assert (got.th, got.starts_ms, got.leader, got.description, got.duration_min, got.cancelled, got.version) == (
        late.id,
        START + 3_600_000,
        "नेता जी",
        "रोज़गार पर बात",
        90,
        False,
        1,
    )
    assert [p.th for p in await store.programmes()] == [early.id, late.id]
    # Replaced whole (a later start moves it in the list); a town hall without one is not listed.
    await store.put_programme(Programme(early.id, START + 7_200_000, "Leader", "moved", version=2))
    listed = await store.programmes()
    assert [p.th for p in listed] == [late.id, early.id] and without.id not in [p.th for p in listed]
    moved = await store.programme(early.id)
    assert moved is not None and (moved.description, moved.version) == ("moved", 2)


async def test_programme_needs_a_townhall_that_has_not_ended(parts: Parts) -> None:
    store = parts.store()
    with pytest.raises(NotFound):
        await store.put_programme(Programme("nosuch", START, "x"))
    th = (await store.create_townhall("t", "hi")).id
    await store.put_programme(Programme(th, START, "x"))
    await store.set_status(th, Status.LIVE)
    await store.put_programme(Programme(th, START, "x", "edited while live", version=2))
    await store.set_status(th, Status.ENDED)
    with pytest.raises(BadState):
        await store.put_programme(Programme(th, START, "x", "after the end", version=3))
    kept = await store.programme(th)
    assert kept is not None and kept.description == "edited while live"  # a past programme stays as it was


async def test_programme_expires_with_its_ended_townhall(parts: Parts) -> None:
    store = parts.store(ended_retention_s=1.0)
    ended = (await store.create_townhall("ended", "hi")).id
    kept = (await store.create_townhall("kept", "hi")).id
    for th in (ended, kept):
        await store.put_programme(Programme(th, START, "x"))
    await store.set_status(ended, Status.ENDED)
    await asyncio.sleep(1.3)
    assert await store.programme(ended) is None
    assert [p.th for p in await store.programmes()] == [kept]


async def _everything_of(store: Store, th: str) -> list[str]:
    return [q.qid for q in await store.questions(th, QState)]


async def test_erase_questions_deletes_only_that_citizens_questions_in_every_state(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    pending = await ask(store, th, 1, author="c-sita")
    public = await ask(store, th, 2, author="c-sita")
    answered = await ask(store, th, 3, author="c-sita")
    other = await ask(store, th, 4, author="c-ram")
    for qid in (public.qid, answered.qid, other.qid):
        await store.decide(th, qid, "approve", "m-1", "")
    await store.decide(th, answered.qid, "answer", "l-1", "")
    await store.upvote(th, public.qid, "c-ram")
    await store.upvote(th, other.qid, "c-sita")  # her votes for others stay counted
    await store.claim(th, pending.qid, "m-1", 30_000)

    erased = await store.erase_questions(th, "c-sita", "admin", "ticket 42")

    assert sorted(q.qid for q in erased) == sorted([pending.qid, public.qid, answered.qid])
    assert {q.qid: q.text for q in erased}[public.qid] == public.text  # handed back as they were
    assert await _everything_of(store, th) == [other.qid]
    for q in (pending, public, answered):
        assert await store.get_question(th, q.qid) is None
    assert await store.claim_holder(th, pending.qid) is None
    assert (await store.counts(th))[QState.PENDING] == 0
    top, groups = await store.top_votes(th, 10)
    assert top == {other.qid: 1} and groups == {other.group: 1}
    assert await store.recent_texts(th, "c-sita", 10) == []
    assert public.qid not in [gid for gid, _ in await store.groups(th, 10)]
    # The idempotency key is gone with the question: the same key asks anew.
    assert await store.question_for_key(th, "c-sita", pending.key) is None
    entry = (await store.audit(th))[-1]
    assert entry["what"] == "erase" and entry["by"] == "admin" and entry["reason"] == "ticket 42"
    assert sorted(entry["qids"]) == sorted([pending.qid, public.qid, answered.qid])  # type: ignore[arg-type]
    assert not any(public.text in str(e) for e in await store.audit(th))


async def test_erase_questions_of_nobody_changes_nothing_and_unknown_townhall_is_not_found(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    kept = await ask(store, th, 1, author="c-ram")
    before = await store.audit(th)
    assert await store.erase_questions(th, "c-nobody", "admin", "") == []
    assert await _everything_of(store, th) == [kept.qid] and await store.audit(th) == before
    with pytest.raises(NotFound):
        await store.erase_questions("nosuch", "c-ram", "admin", "")
