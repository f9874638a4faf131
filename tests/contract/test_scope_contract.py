"""Local moderators in the Store contract (memory, Redis, Redis Cluster): a question keeps its asker's unit, a
`forward` keeps the state and records where the question went (in the decision, the moderators' view and the audit
log), and a forward of a question in a state it does not apply to is refused like any other transition."""

from __future__ import annotations

import pytest

from jansamvad.models import QState
from jansamvad.store.base import BadState
from tests.contract.conftest import Parts

pytestmark = pytest.mark.anyio


async def test_scope_forward_keeps_the_state_and_records_where_the_question_went(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("स्कोप", "hi")).id
    q, _ = await store.add_question(
        th, author="c-1", key="key-00000001", text="गया में पानी?", name="सीता", region="गया", unit="D1-B1"
    )
    assert q.for_moderators()["unit"] == "D1-B1" and q.for_moderators()["fwd"] == ""
    up = await store.decide(th, q.qid, "forward", "m-d1", "अच्छा सवाल", "S1")
    assert up.state is QState.PENDING and up.forwarded_to == "S1"
    assert up.for_moderators()["fwd"] == "S1"
    await store.decide(th, q.qid, "approve", "m-root", "")
    top = await store.decide(th, q.qid, "forward", "m-s1", "", "*")
    assert top.state is QState.APPROVED and top.forwarded_to == "*"
    stored = await store.get_question(th, q.qid)
    assert stored is not None and stored.forwarded_to == "*" and stored.unit == "D1-B1"
    assert [(d.action, d.by, d.to) for d in stored.decisions] == [
        ("forward", "m-d1", "S1"),
        ("approve", "m-root", ""),
        ("forward", "m-s1", "*"),
    ]
    exported = stored.for_export()["decisions"]
    assert exported[0]["to"] == "S1" and "to" not in exported[1]
    audit = [entry for entry in await store.audit(th) if entry.get("qid") == q.qid]
    assert [(e["what"], e.get("to")) for e in audit] == [("forward", "S1"), ("approve", None), ("forward", "*")]


async def test_scope_forward_of_a_rejected_question_is_bad_state(parts: Parts) -> None:
    store = parts.store()
    th = (await store.create_townhall("स्कोप", "hi")).id
    q, _ = await store.add_question(th, author="c-1", key="key-00000002", text="?", name="n", region="", unit="D1")
    await store.decide(th, q.qid, "reject", "m-d1", "")
    with pytest.raises(BadState):
        await store.decide(th, q.qid, "forward", "m-d1", "", "S1")
    stored = await store.get_question(th, q.qid)
    assert stored is not None and stored.forwarded_to == "" and stored.state is QState.REJECTED
