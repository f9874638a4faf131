"""The Store contract (store/base.py), run against the memory store, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from jansamvad.models import (
    PUBLIC_STATES,
    TRANSITIONS,
    PollState,
    QState,
    Question,
    Restriction,
    RestrictionKind,
    Status,
    apply_decision,
    now_ms,
)
from jansamvad.store.base import BadState, LimitReached, NotFound, OwnQuestion, Store
from tests.contract.conftest import Parts

pytestmark = pytest.mark.anyio

# The shortest way from a new (pending, unpinned) question to every (state, pinned) situation.
PATHS: dict[tuple[QState, bool], list[str]] = {
    (QState.PENDING, False): [],
    (QState.APPROVED, False): ["approve"],
    (QState.APPROVED, True): ["approve", "pin"],
    (QState.ANSWERED, False): ["approve", "answer"],
    (QState.ANSWERED, True): ["approve", "pin", "answer"],
    (QState.REJECTED, False): ["reject"],
}


async def ask(store: Store, th: str, n: int = 1, *, author: str = "c-sita") -> Question:
    q, created = await store.add_question(
        th, author=author, key=f"key-{n:08d}", text=f"प्रश्न {n}?", name="सीता", region="Patna"
    )
    assert created
    return q


async def test_townhall_create_get_and_list(parts: Parts) -> None:
    store = parts.store()
    first = await store.create_townhall("जन संवाद", "hi")
    second = await store.create_townhall("Town hall", "en")
    assert first.id != second.id
    got = await store.get_townhall(first.id)
    assert got is not None
    assert (got.id, got.title, got.lang, got.status, got.created_ms) == (
        first.id,
        "जन संवाद",
        "hi",
        Status.SCHEDULED,
        first.created_ms,
    )
    assert [t.id for t in await store.list_townhalls()] == [first.id, second.id]
    assert await store.get_townhall("nosuch") is None


async def test_townhall_status_goes_live_and_ended_is_final(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    assert (await store.set_status(th, Status.LIVE)).status is Status.LIVE
    assert (await store.get_townhall(th)).status is Status.LIVE  # type: ignore[union-attr]
    assert (await store.set_status(th, Status.ENDED)).status is Status.ENDED
    assert (await store.set_status(th, Status.ENDED)).status is Status.ENDED
    for status in (Status.LIVE, Status.SCHEDULED):
        with pytest.raises(BadState):
            await store.set_status(th, status)
    assert (await store.get_townhall(th)).status is Status.ENDED  # type: ignore[union-attr]


async def test_townhall_open_cap_counts_scheduled_and_live_not_ended(parts: Parts) -> None:
    store = parts.store()
    first = await store.create_townhall("one", "hi", max_open=2)
    await store.set_status(first.id, Status.LIVE)
    second = await store.create_townhall("two", "hi", max_open=2)
    with pytest.raises(LimitReached, match="the limit is 2"):
        await store.create_townhall("three", "hi", max_open=2)
    await store.set_status(second.id, Status.ENDED)  # ending one frees its place
    third = await store.create_townhall("three", "hi", max_open=2)
    with pytest.raises(LimitReached):
        await store.create_townhall("four", "hi", max_open=2)
    assert (await store.create_townhall("no cap", "hi")).id  # max_open=0: no cap (internal callers, the demo)
    assert {t.id for t in await store.list_townhalls()} >= {first.id, second.id, third.id}


async def test_townhall_open_cap_is_not_fooled_by_an_index_entry_a_crash_left(parts: Parts) -> None:
    if not parts.backend.is_redis:
        pytest.skip("the open-town-hall index exists in Redis only (the memory store counts the town halls)")
    store = parts.store()
    first = await store.create_townhall("one", "hi", max_open=2)
    # A node died between ending a town hall and removing it from the index; another id names nothing at all.
    conn = parts.backend.conn()
    try:
        await conn.execute("ZADD", parts.backend.keys.open_townhalls, 1, "vanished")
        await conn.execute("HSET", parts.backend.keys.townhall(first.id).meta, "status", Status.ENDED.value)
        second = await store.create_townhall("two", "hi", max_open=2)  # both stale entries are cleaned, not counted
        members = await conn.execute("ZRANGE", parts.backend.keys.open_townhalls, 0, -1)
        assert sorted(m.decode() for m in members) == [second.id]
    finally:
        await conn.close()


async def test_townhall_ended_expires_after_the_retention_and_others_stay(parts: Parts) -> None:
    store = parts.store(ended_retention_s=1.0)
    ended = await store.create_townhall("ended", "hi")
    kept = await store.create_townhall("kept", "hi")
    await ask(store, ended.id)
    await ask(store, kept.id)
    await store.add_reactions(ended.id, {"clap": 2})
    if parts.backend.is_redis:  # its event stream expires with it (same hash tag)
        broker, _ = await parts.broker()
        await broker.publish(f"th:{ended.id}", {"t": "speech", "text": "अंत"}, history=True)
    await store.set_status(ended.id, Status.ENDED)
    assert (await store.get_townhall(ended.id)).status is Status.ENDED  # type: ignore[union-attr]  # for export
    await asyncio.sleep(1.3)
    assert await store.get_townhall(ended.id) is None
    assert [t.id for t in await store.list_townhalls()] == [kept.id]
    with pytest.raises(NotFound):
        await store.questions(ended.id, [QState.PENDING])
    assert len(await store.questions(kept.id, [QState.PENDING])) == 1
    if parts.backend.is_redis:
        conn = parts.backend.conn()
        try:
            assert await conn.keys_with_prefix(parts.backend.keys.townhall(ended.id).base + ":") == []
            assert await conn.keys_with_prefix(parts.backend.keys.townhall(kept.id).base + ":")
            assert (await broker.history(f"th:{ended.id}", 0, 10)).head == 0
        finally:
            await conn.close()


async def test_townhall_missing_raises_not_found(parts: Parts) -> None:
    store = parts.store()
    with pytest.raises(NotFound):
        await store.set_status("nosuch", Status.LIVE)
    with pytest.raises(NotFound):
        await store.add_question("nosuch", author="a", key="k-000001", text="t", name="n", region="r")
    with pytest.raises(NotFound):
        await store.questions("nosuch", [QState.PENDING])
    with pytest.raises(NotFound):
        await store.get_question("nosuch", "q1")
    with pytest.raises(NotFound):
        await store.add_reactions("nosuch", {"clap": 1})


async def test_question_is_stored_pending_with_its_fields(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    got = await store.get_question(th, q.qid)
    assert got is not None
    assert (got.qid, got.th, got.author, got.name, got.region, got.text, got.key) == (
        q.qid,
        th,
        "c-sita",
        "सीता",
        "Patna",
        "प्रश्न 1?",
        "key-00000001",
    )
    assert (got.state, got.pinned, got.votes, got.decisions, got.ts) == (QState.PENDING, False, 0, [], q.ts)
    assert await store.get_question(th, "q999") is None


async def test_question_is_idempotent_per_author_and_key(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    again, created = await store.add_question(th, author="c-sita", key="key-00000001", text="x", name="n", region="r")
    assert not created and again.qid == q.qid and again.text == "प्रश्न 1?"
    # The same key from someone else, or another key from the same author, is another question.
    other, created = await store.add_question(th, author="c-ram", key="key-00000001", text="x", name="n", region="r")
    assert created and other.qid != q.qid
    third = await ask(store, th, 2)
    assert len({q.qid, other.qid, third.qid}) == 3
    assert len(await store.questions(th, [QState.PENDING])) == 3


async def test_question_ids_are_unique_under_concurrency(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    results = await asyncio.gather(
        *(
            store.add_question(th, author=f"c-{i}", key=f"key-{i:08d}", text=f"q{i}", name="n", region="r")
            for i in range(100)
        )
    )
    assert all(created for _, created in results)
    assert len({q.qid for q, _ in results}) == 100


async def test_question_same_key_concurrently_is_created_once(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    results = await asyncio.gather(
        *(store.add_question(th, author="c-sita", key="key-retried", text="t", name="n", region="r") for _ in range(50))
    )
    assert sum(created for _, created in results) == 1
    assert len({q.qid for q, _ in results}) == 1


async def test_questions_filter_by_state_oldest_first(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    qs = [await ask(store, th, n) for n in range(1, 6)]
    await store.decide(th, qs[3].qid, "approve", "m", "")
    await store.decide(th, qs[0].qid, "approve", "m", "")
    await store.decide(th, qs[1].qid, "reject", "m", "off topic")
    await store.decide(th, qs[0].qid, "answer", "l", "")
    public = await store.questions(th, PUBLIC_STATES)
    assert [q.qid for q in public] == [qs[0].qid, qs[3].qid]
    assert [q.state for q in public] == [QState.ANSWERED, QState.APPROVED]
    assert [q.qid for q in await store.questions(th, [QState.PENDING])] == [qs[2].qid, qs[4].qid]
    assert [q.qid for q in await store.questions(th, [QState.REJECTED])] == [qs[1].qid]
    assert [q.qid for q in await store.questions(th, list(QState))] == [q.qid for q in qs]
    assert await store.questions(th, []) == []


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("start", sorted(PATHS, key=str), ids=lambda s: f"{s[0]}{'-pinned' if s[1] else ''}")
async def test_decide_follows_the_state_machine(parts: Parts, start: tuple[QState, bool], action: str) -> None:
    """Every action from every situation does what models.apply_decision does, or raises BadState, changing nothing."""
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    for step in PATHS[start]:
        q = await store.decide(th, q.qid, step, "m-setup", "")
    assert (q.state, q.pinned) == start
    expected = copy.deepcopy(q)
    applies = apply_decision(expected, action, "m-mod", "why", 0)
    if not applies:
        with pytest.raises(BadState):
            await store.decide(th, q.qid, action, "m-mod", "why")
        after = await store.get_question(th, q.qid)
        assert after is not None
        assert (after.state, after.pinned, len(after.decisions)) == (q.state, q.pinned, len(q.decisions))
        return
    decided = await store.decide(th, q.qid, action, "m-mod", "why")
    assert (decided.state, decided.pinned) == (expected.state, expected.pinned)
    stored = await store.get_question(th, q.qid)
    assert stored is not None and (stored.state, stored.pinned) == (expected.state, expected.pinned)
    assert [d.action for d in stored.decisions] == [*PATHS[start], action]
    # The state index moved with it.
    assert [x.qid for x in await store.questions(th, [expected.state])] == [q.qid]


async def test_decide_records_who_when_and_why(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    await store.decide(th, q.qid, "approve", "m-asha", "")
    await store.decide(th, q.qid, "pin", "l-leader", "पहले यह")
    decided = await store.decide(th, q.qid, "reject", "m-asha", "duplicate of q7")
    assert [(d.action, d.by, d.reason) for d in decided.decisions] == [
        ("approve", "m-asha", ""),
        ("pin", "l-leader", "पहले यह"),
        ("reject", "m-asha", "duplicate of q7"),
    ]
    stamps = [d.ts for d in decided.decisions]
    assert stamps == sorted(stamps) and stamps[0] >= q.ts
    assert not decided.pinned  # a rejection unpins
    stored = await store.get_question(th, q.qid)
    assert stored is not None and stored.decisions == decided.decisions


async def test_decide_unknown_question_raises_not_found(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    with pytest.raises(NotFound):
        await store.decide(th, "q404", "approve", "m", "")


async def test_decide_concurrently_applies_one_transition(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    results = await asyncio.gather(
        *(store.decide(th, q.qid, "approve", f"m-{i}", "") for i in range(20)), return_exceptions=True
    )
    assert sum(isinstance(r, Question) for r in results) == 1
    assert all(isinstance(r, BadState) for r in results if not isinstance(r, Question))
    stored = await store.get_question(th, q.qid)
    assert stored is not None and len(stored.decisions) == 1


async def test_upvote_counts_one_vote_per_user_under_concurrency(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    await store.decide(th, q.qid, "approve", "m", "")
    results = await asyncio.gather(*(store.upvote(th, q.qid, f"c-{i % 50}") for i in range(200)))
    assert sum(counted for _, counted in results) == 50
    assert max(votes for votes, _ in results) == 50
    stored = await store.get_question(th, q.qid)
    assert stored is not None and stored.votes == 50
    assert await store.upvote(th, q.qid, "c-7") == (50, False)
    assert await store.upvote(th, q.qid, "c-new") == (51, True)


async def test_upvote_keeps_counting_after_answer(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    await store.decide(th, q.qid, "approve", "m", "")
    assert await store.upvote(th, q.qid, "c-1") == (1, True)
    await store.decide(th, q.qid, "answer", "l", "")
    assert await store.upvote(th, q.qid, "c-2") == (2, True)
    assert await store.upvote(th, q.qid, "c-1") == (2, False)


async def test_upvote_refuses_the_askers_own_question(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th, author="c-sita")
    await store.decide(th, q.qid, "approve", "m", "")
    with pytest.raises(OwnQuestion):
        await store.upvote(th, q.qid, "c-sita")
    assert await store.upvote(th, q.qid, "c-ram") == (1, True)
    stored = await store.get_question(th, q.qid)
    assert stored is not None and stored.votes == 1


async def test_upvote_needs_a_public_question(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    pending = await ask(store, th, 1)
    rejected = await ask(store, th, 2)
    await store.decide(th, rejected.qid, "reject", "m", "")
    for q in (pending, rejected):
        with pytest.raises(BadState):
            await store.upvote(th, q.qid, "c-1")
    with pytest.raises(NotFound):
        await store.upvote(th, "q404", "c-1")
    stored = await store.get_question(th, pending.qid)
    assert stored is not None and stored.votes == 0


async def test_reactions_sum_into_totals(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    assert await store.add_reactions(th, {"clap": 3, "heart": 1}) == {"clap": 3, "heart": 1}
    assert await store.add_reactions(th, {"clap": 2, "laugh": 5}) == {"clap": 5, "heart": 1, "laugh": 5}
    assert await store.add_reactions(th, {}) == {"clap": 5, "heart": 1, "laugh": 5}
    other = (await store.create_townhall("t2", "hi")).id
    assert await store.add_reactions(other, {"sad": 1}) == {"sad": 1}


async def test_reactions_concurrent_adds_all_count(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    await asyncio.gather(*(store.add_reactions(th, {"clap": 1, "heart": 2}) for _ in range(100)))
    assert await store.add_reactions(th, {}) == {"clap": 100, "heart": 200}


# Audience interaction: auto-moderation, groups, rankings, slow mode, polls, claims, restrictions, the audit log.


async def test_question_auto_rejected_keeps_its_flags_and_is_audited(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q, created = await store.add_question(
        th,
        author="c-x",
        key="key-spam0001",
        text="buy now",
        name="n",
        region="r",
        state=QState.REJECTED,
        flags=["link", "spam"],
        lang="en",
    )
    assert created and q.state is QState.REJECTED and q.flags == ["link", "spam"] and q.lang == "en"
    assert [(d.action, d.by, d.reason, d.ts) for d in q.decisions] == [("reject", "auto", "link,spam", q.ts)]
    assert await store.audit(th) == [{"ts": q.ts, "what": "reject", "qid": q.qid, "by": "auto", "reason": "link,spam"}]
    assert [x.qid for x in await store.questions(th, [QState.REJECTED])] == [q.qid]
    assert await store.questions(th, [QState.PENDING]) == []


async def test_question_group_and_lang_are_stored(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    first, _ = await store.add_question(
        th, author="a", key="key-00000001", text="सड़क?", name="n", region="r", lang="hi"
    )
    second, _ = await store.add_question(
        th, author="b", key="key-00000002", text="सड़क कब?", name="n", region="r", group=first.qid
    )
    assert (first.group, first.lang) == (first.qid, "hi")
    assert second.group == first.qid
    stored = await store.get_question(th, second.qid)
    assert stored is not None and (stored.group, stored.flags, stored.lang) == (first.qid, [], "")
    assert await store.groups(th, 10) == [(first.qid, "सड़क?")]


async def test_question_for_key_finds_the_stored_question(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    found = await store.question_for_key(th, "c-sita", "key-00000001")
    assert found is not None and found.qid == q.qid
    assert await store.question_for_key(th, "c-ram", "key-00000001") is None
    assert await store.question_for_key(th, "c-sita", "key-99999999") is None
    with pytest.raises(NotFound):
        await store.question_for_key("nosuch", "c-sita", "key-00000001")


async def test_recent_texts_are_the_authors_latest_oldest_first(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    for n in range(1, 61):
        await store.add_question(th, author="c-sita", key=f"key-{n:08d}", text=f"text {n}", name="n", region="r")
    await store.add_question(th, author="c-ram", key="key-00000001", text="ram's", name="n", region="r")
    assert await store.recent_texts(th, "c-sita", 3) == ["text 58", "text 59", "text 60"]
    assert await store.recent_texts(th, "c-sita", 100) == [f"text {n}" for n in range(11, 61)]  # 50 kept
    assert await store.recent_texts(th, "c-ram", 5) == ["ram's"]
    assert await store.recent_texts(th, "c-nobody", 5) == []
    assert await store.recent_texts(th, "c-sita", 0) == []


async def test_groups_are_the_newest_oldest_first(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    qs = [await ask(store, th, n) for n in range(1, 5)]
    await store.add_question(th, author="c-2", key="key-follower", text="same", name="n", region="r", group=qs[0].qid)
    assert await store.groups(th, 2) == [(qs[2].qid, "प्रश्न 3?"), (qs[3].qid, "प्रश्न 4?")]
    assert [g for g, _ in await store.groups(th, 10)] == [q.qid for q in qs]
    assert await store.groups(th, 0) == []


async def test_top_votes_ranks_public_questions_and_their_groups(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    a = await ask(store, th, 1)
    b, _ = await store.add_question(th, author="c-b", key="key-b0000001", text="b", name="n", region="r", group=a.qid)
    c = await ask(store, th, 3)
    d = await ask(store, th, 4)  # stays pending: never ranked
    for q in (a, b, c):
        await store.decide(th, q.qid, "approve", "m", "")
    for q, voters in ((a, 3), (b, 2), (c, 4)):
        for i in range(voters):
            await store.upvote(th, q.qid, f"c-{i}")
    assert await store.top_votes(th, 10) == (
        {c.qid: 4, a.qid: 3, b.qid: 2},
        {a.qid: 5, c.qid: 4},
    )
    assert await store.top_votes(th, 1) == ({c.qid: 4}, {a.qid: 5})
    # Answered questions stay ranked; a rejected one leaves, and its group keeps the rest of its votes.
    await store.decide(th, c.qid, "answer", "l", "")
    await store.decide(th, b.qid, "reject", "m", "")
    assert await store.top_votes(th, 10) == ({c.qid: 4, a.qid: 3}, {c.qid: 4, a.qid: 3})
    await store.decide(th, a.qid, "reject", "m", "")
    assert await store.top_votes(th, 10) == ({c.qid: 4}, {c.qid: 4})
    assert d.qid not in (await store.top_votes(th, 10))[0]
    assert await store.top_votes(th, 0) == ({}, {})


async def test_top_votes_breaks_ties_by_id(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    qs = [await ask(store, th, n) for n in range(1, 13)]  # q1 ... q12: "q10" sorts before "q2"
    for q in qs:
        await store.decide(th, q.qid, "approve", "m", "")
    for q in qs[:6]:
        await store.upvote(th, q.qid, "c-1")
    top, groups = await store.top_votes(th, 8)
    assert list(top) == ["q1", "q2", "q3", "q4", "q5", "q6", "q10", "q11"]
    assert list(groups) == list(top)


async def test_slow_mode_is_stored_and_audited(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    assert (await store.set_slow_mode(th, 30)).slow_mode_s == 30
    got = await store.get_townhall(th)
    assert got is not None and got.slow_mode_s == 30
    assert (await store.set_slow_mode(th, 0)).slow_mode_s == 0
    assert [(e["what"], e["seconds"]) for e in await store.audit(th)] == [("slow_mode", 30), ("slow_mode", 0)]
    with pytest.raises(NotFound):
        await store.set_slow_mode("nosuch", 10)


async def test_poll_vote_second_vote_returns_the_option_that_counts(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    poll = await store.create_poll(th, "सड़क या बिजली?", ["सड़क", "बिजली", "पानी"])
    await store.set_poll_state(th, poll.pid, PollState.OPEN, "l")
    assert await store.vote_poll(th, poll.pid, "c-1", 0) == (0, True)
    assert await store.vote_poll(th, poll.pid, "c-1", 2) == (0, False)  # the first vote counts, and says so
    closed = await store.set_poll_state(th, poll.pid, PollState.CLOSED, "l")
    assert closed.counts == [1, 0, 0]


async def test_poll_cannot_open_once_the_townhall_has_ended(parts: Parts) -> None:
    # Checked in the same step as the opening: a poll_open racing `end` either opens before the end (and `end`
    # closes it) or is refused, never left open for good.
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    poll = await store.create_poll(th, "q?", ["a", "b"])
    await store.set_status(th, Status.ENDED)
    with pytest.raises(BadState):
        await store.set_poll_state(th, poll.pid, PollState.OPEN, "l")
    assert await store.polls(th, (PollState.OPEN,)) == []


async def test_poll_vote_on_voters_kept_as_a_set_by_an_older_node(parts: Parts) -> None:
    # Polls opened before an upgrade keep their voters as a Redis set (user ids only). During and after a rolling
    # upgrade votes on them still count once per user instead of failing with WRONGTYPE.
    if not parts.backend.is_redis:
        pytest.skip("the voters' key format is Redis's")
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    poll = await store.create_poll(th, "q?", ["a", "b"])
    await store.set_poll_state(th, poll.pid, PollState.OPEN, "l")
    conn = parts.backend.conn()
    voters = parts.backend.keys.townhall(th).poll(poll.pid).voters
    await conn.execute("SADD", voters, "c-old")  # an older node's vote
    try:
        assert await store.vote_poll(th, poll.pid, "c-old", 1) == (1, False)
        assert await store.vote_poll(th, poll.pid, "c-new", 1) == (1, True)
        assert (await store.vote_poll(th, poll.pid, "c-new", 0))[1] is False  # a repeat counts nothing
    finally:
        await conn.close()
    closed = await store.set_poll_state(th, poll.pid, PollState.CLOSED, "l")
    assert closed.counts == [0, 1]


async def test_poll_goes_draft_open_closed_with_one_vote_per_user(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    poll = await store.create_poll(th, "सड़क या बिजली?", ["सड़क", "बिजली", "पानी"])
    assert (poll.question, poll.options, poll.state, poll.counts) == (
        "सड़क या बिजली?",
        ["सड़क", "बिजली", "पानी"],
        PollState.DRAFT,
        [0, 0, 0],
    )
    with pytest.raises(BadState):
        await store.vote_poll(th, poll.pid, "c-1", 0)  # not open yet
    with pytest.raises(BadState):
        await store.set_poll_state(th, poll.pid, PollState.CLOSED, "l")  # draft -> closed skips open
    opened = await store.set_poll_state(th, poll.pid, PollState.OPEN, "l-leader")
    assert opened.state is PollState.OPEN
    results = await asyncio.gather(*(store.vote_poll(th, poll.pid, f"c-{i % 10}", i % 3) for i in range(40)))
    assert sum(counted for _, counted in results) == 10
    assert await store.vote_poll(th, poll.pid, "c-new", 2) == (2, True)
    with pytest.raises(BadState):
        await store.vote_poll(th, poll.pid, "c-other", 3)  # no such option
    with pytest.raises(BadState):
        await store.vote_poll(th, poll.pid, "c-other", -1)
    closed = await store.set_poll_state(th, poll.pid, PollState.CLOSED, "l-leader")
    assert closed.state is PollState.CLOSED and sum(closed.counts) == 11 and closed.counts[2] >= 1
    with pytest.raises(BadState):
        await store.vote_poll(th, poll.pid, "c-late", 0)
    for state in PollState:
        with pytest.raises(BadState):
            await store.set_poll_state(th, poll.pid, state, "l")  # closed is final
    assert [(e["what"], e["pid"], e["by"]) for e in await store.audit(th)] == [
        ("poll_open", poll.pid, "l-leader"),
        ("poll_closed", poll.pid, "l-leader"),
    ]


async def test_polls_filter_by_state_oldest_first(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    first = await store.create_poll(th, "one?", ["a", "b"])
    second = await store.create_poll(th, "two?", ["a", "b"])
    third = await store.create_poll(th, "three?", ["a", "b"])
    await store.set_poll_state(th, third.pid, PollState.OPEN, "l")
    await store.set_poll_state(th, first.pid, PollState.OPEN, "l")
    await store.vote_poll(th, first.pid, "c-1", 1)
    opened = await store.polls(th, [PollState.OPEN])
    assert [p.pid for p in opened] == [first.pid, third.pid]
    assert opened[0].counts == [0, 1]
    assert [p.pid for p in await store.polls(th, [PollState.DRAFT])] == [second.pid]
    assert len({first.pid, second.pid, third.pid}) == 3


async def test_poll_missing_raises_not_found(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    with pytest.raises(NotFound):
        await store.set_poll_state(th, "p404", PollState.OPEN, "l")
    with pytest.raises(NotFound):
        await store.vote_poll(th, "p404", "c-1", 0)
    with pytest.raises(NotFound):
        await store.create_poll("nosuch", "q?", ["a", "b"])
    with pytest.raises(NotFound):
        await store.polls("nosuch", list(PollState))


async def test_claim_holds_a_question_for_one_moderator_at_a_time(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    holder, until = await store.claim(th, q.qid, "m-asha", 10_000)
    assert holder == "m-asha" and until > now_ms() + 5_000
    assert (await store.claim(th, q.qid, "m-ravi", 10_000))[0] == "m-asha"
    assert (await store.claim(th, q.qid, "m-asha", 20_000))[1] > until  # the holder extends it
    assert await store.claim_holder(th, q.qid) == "m-asha"
    assert await store.release(th, q.qid, "m-ravi") is False
    assert await store.release(th, q.qid, "m-asha") is True
    assert await store.claim_holder(th, q.qid) is None
    assert (await store.claim(th, q.qid, "m-ravi", 10_000))[0] == "m-ravi"
    with pytest.raises(NotFound):
        await store.claim(th, "q404", "m-asha", 1000)


async def test_claim_runs_out(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    await store.claim(th, q.qid, "m-asha", 50)
    await asyncio.sleep(0.1)
    assert await store.claim_holder(th, q.qid) is None
    assert (await store.claim(th, q.qid, "m-ravi", 10_000))[0] == "m-ravi"


async def test_restriction_applies_in_its_scope_and_a_ban_wins(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    other = (await store.create_townhall("t2", "hi")).id
    now = now_ms()
    timeout = Restriction("c-x", RestrictionKind.TIMEOUT, now + 60_000, th, "m-asha", "spam", now)
    await store.restrict(timeout)
    assert await store.restriction(th, "c-x") == timeout
    assert await store.restriction(other, "c-x") is None
    assert await store.restriction(th, "c-y") is None
    ban = Restriction("c-x", RestrictionKind.BAN, 0, "*", "a-admin", "abuse", now)
    await store.restrict(ban)
    assert await store.restriction(th, "c-x") == ban
    assert await store.restriction(other, "c-x") == ban
    await store.lift("*", "c-x", "a-admin", "appeal")
    assert await store.restriction(th, "c-x") == timeout
    await store.lift(th, "c-x", "m-asha", "")
    assert await store.restriction(th, "c-x") is None
    assert [e["what"] for e in await store.audit(th)] == ["timeout", "ban", "lift", "lift"]
    assert [e["what"] for e in await store.audit(other)] == ["ban", "lift"]  # everywhere: in every town hall


async def test_restrictions_of_many_users_in_one_read_match_one_by_one(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    now = now_ms()
    timeout = Restriction("c-x", RestrictionKind.TIMEOUT, now + 60_000, th, "m-asha", "spam", now)
    ban = Restriction("c-z", RestrictionKind.BAN, 0, "*", "a-admin", "abuse", now)
    await store.restrict(timeout)
    await store.restrict(ban)
    assert await store.restrictions(th, ["c-x", "c-y", "c-z"]) == {"c-x": timeout, "c-y": None, "c-z": ban}


async def test_restriction_that_ended_is_not_active(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    now = now_ms()
    await store.restrict(Restriction("c-x", RestrictionKind.TIMEOUT, now - 1, th, "m", "", now - 60_000))
    assert await store.restriction(th, "c-x") is None


async def test_audit_lists_every_change_in_order(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("t", "hi")).id
    q = await ask(store, th)
    await store.decide(th, q.qid, "approve", "m-asha", "")
    await store.set_slow_mode(th, 10)
    poll = await store.create_poll(th, "p?", ["a", "b"])
    await store.set_poll_state(th, poll.pid, PollState.OPEN, "l")
    await store.decide(th, q.qid, "reject", "m-asha", "rude")
    audit = await store.audit(th)
    assert [e["what"] for e in audit] == ["approve", "slow_mode", "poll_open", "reject"]
    assert audit[3] == {"ts": audit[3]["ts"], "what": "reject", "qid": q.qid, "by": "m-asha", "reason": "rude"}
    with pytest.raises(NotFound):
        await store.audit("nosuch")


async def test_store_counts_questions_per_state(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("counts", "hi")).id
    qids = []
    for i in range(4):
        q, _ = await store.add_question(th, author=f"c-{i}", key=f"count-key-{i}", text="x", name="n", region="")
        qids.append(q.qid)
    await store.decide(th, qids[0], "approve", "m", "")
    await store.decide(th, qids[1], "reject", "m", "")
    await store.decide(th, qids[2], "approve", "m", "")
    await store.decide(th, qids[2], "answer", "l", "")
    counts = await store.counts(th)
    assert counts == {QState.PENDING: 1, QState.APPROVED: 1, QState.REJECTED: 1, QState.ANSWERED: 1}


# The region tree (issue 16): put whole, read whole, one unit by code, versions.


def _small_tree(suffix: str = "") -> Any:
    from jansamvad.regions import DEFAULT_LEVELS, RegionTree, Unit  # here, not at the top: other branches edit those

    return RegionTree(
        DEFAULT_LEVELS,
        [
            Unit("BR", "", "state", "बिहार", "Bihar"),
            Unit("BR-236", "BR", "district", "गया" + suffix, "Gaya" + suffix),
            Unit("BR-216", "BR", "district", "मुज़फ़्फ़रपुर", "Muzaffarpur"),
            Unit("AC-1", "BR-236", "ac", "बोधगया", "Bodh Gaya"),
            Unit("B-1", "AC-1", "booth", 'बूथ 1, "स्कूल"', 'Booth 1, "school"'),
        ],
    )


async def test_region_tree_is_none_until_put_and_then_whole(parts: Parts) -> None:
    from jansamvad.regions import Unit

    store = parts.store()
    assert await store.region_tree() is None
    assert await store.region_tree_version() == 0
    assert await store.region_unit("BR") is None
    tree = _small_tree()
    version = await store.put_region_tree(tree)
    assert version > 0 and await store.region_tree_version() == version
    got = await store.region_tree()
    assert got == tree
    assert got is not None and got.path("B-1") == ("BR", "BR-236", "AC-1", "B-1")
    assert await store.region_unit("B-1") == Unit("B-1", "AC-1", "booth", 'बूथ 1, "स्कूल"', 'Booth 1, "school"')
    assert await store.region_unit("nope") is None


async def test_region_tree_put_replaces_the_whole_tree_with_a_new_version(parts: Parts) -> None:
    from jansamvad.regions import DEFAULT_LEVELS, RegionTree, Unit

    store = parts.store()
    first = await store.put_region_tree(_small_tree())
    smaller = RegionTree(DEFAULT_LEVELS, [Unit("UP", "", "state", "उत्तर प्रदेश", "Uttar Pradesh")])
    second = await store.put_region_tree(smaller)
    assert second > first
    assert await store.region_tree() == smaller
    assert await store.region_unit("BR-236") is None  # nothing of the old tree is left visible
    third = await store.put_region_tree(_small_tree(" (नया)"))
    assert third > second
    unit = await store.region_unit("BR-236")
    assert unit is not None and unit.name_hi == "गया (नया)"


async def test_region_tree_with_custom_levels_and_a_lakh_of_units_round_trips(parts: Parts) -> None:
    from jansamvad.regions import Level, RegionTree, Unit

    levels = (Level("zone", "क्षेत्र", "Zone"), Level("unit", "इकाई", "Unit"))
    units = [Unit("Z", "", "zone", "क्षेत्र", "Zone")] + [
        Unit(f"U{n}", "Z", "unit", f"इकाई {n}", f"Unit {n}") for n in range(100_000)
    ]
    tree = RegionTree(levels, units)
    store = parts.store()
    await store.put_region_tree(tree)
    got = await store.region_tree()
    assert got is not None and got.levels == levels and len(got) == 100_001 and got == tree
