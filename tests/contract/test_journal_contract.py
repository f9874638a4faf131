"""The Journal contract, on memory, Redis standalone and a Redis cluster: the whole transcript by seq, appends
idempotent per seq, partial speech and other events left out, newest `limit` read oldest first, expiry renewed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jansamvad.journal.base import Journal
from jansamvad.journal.memory import MemoryJournal
from jansamvad.journal.redis import RedisJournal
from tests.contract.conftest import Backend

pytestmark = pytest.mark.anyio


@pytest.fixture
async def journal(backend: Backend) -> AsyncIterator[Journal]:
    made: Journal = RedisJournal(backend.conn(), backend.keys, keep_s=3600) if backend.is_redis else MemoryJournal()
    yield made
    await made.close()


async def test_journal_keeps_final_speech_and_notices_by_seq(journal: Journal) -> None:
    await journal.append("th1", 1, {"t": "status", "status": "live", "ts": 1})
    for seq in range(2, 1502):  # longer than any history window
        await journal.append("th1", seq, {"t": "speech", "text": f"वाक्य {seq}", "final": True, "ts": seq})
    await journal.append("th1", 1502, {"t": "speech", "text": "अधूरा", "final": False, "ts": 1502})
    await journal.append("th1", 1503, {"t": "question", "q": {"qid": "q1"}, "ts": 1503})
    await journal.append("th1", 1504, {"t": "announce", "text": "घोषणा", "ts": 1504})
    speech = await journal.read("th1", "speech")
    assert [e.seq for e in speech] == list(range(2, 1502))
    assert speech[0].event == {"t": "speech", "text": "वाक्य 2", "final": True, "ts": 2}
    assert [(e.seq, e.event["t"]) for e in await journal.read("th1", "notice")] == [(1, "status"), (1504, "announce")]
    assert [e.seq for e in await journal.read("th1", "speech", 3)] == [1499, 1500, 1501]
    assert await journal.read("th2", "speech") == []


async def test_journal_append_is_idempotent_per_seq(journal: Journal) -> None:
    await journal.append("th1", 7, {"t": "speech", "text": "पहली बार", "ts": 100})
    await journal.append("th1", 7, {"t": "speech", "text": "पहली बार", "ts": 200})  # a resend's copy, later ts
    entries = await journal.read("th1", "speech")
    assert [(e.seq, e.event["ts"]) for e in entries] == [(7, 100)]


async def test_journal_keys_expire_with_the_townhall_data(backend: Backend) -> None:
    if not backend.is_redis:
        pytest.skip("expiry is Redis-only (the memory journal lives as long as the process)")
    journal = RedisJournal(backend.conn(), backend.keys, keep_s=3600)
    try:
        await journal.append("th1", 1, {"t": "speech", "text": "x", "ts": 1})
        conn = backend.conn().retain()
        try:
            ttl = await conn.execute("PTTL", backend.keys.townhall("th1").journal("speech"))
        finally:
            await conn.close()
        assert 3_500_000 < int(ttl) <= 3_600_000
    finally:
        await journal.close()
