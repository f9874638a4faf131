"""The Store contract (store/base.py), run against the memory store, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio
import copy

import pytest

from jansamvad.models import PUBLIC_STATES, TRANSITIONS, QState, Question, Status, apply_decision
from jansamvad.store.base import BadState, NotFound, Store
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
