"""The Broker contract (broker/base.py), run against the memory broker, Redis standalone and a Redis cluster."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import Parts

pytestmark = pytest.mark.anyio

CH = "th:abc"
MOD = "th:abc:mod"
OTHER = "th:xyz"


def speech(n: int) -> dict[str, object]:
    return {"t": "speech", "text": f"वाक्य {n}", "final": True, "n": n}


async def test_publish_seq_starts_at_one_and_counts_up(parts: Parts) -> None:
    broker, _ = await parts.broker()
    assert [await broker.publish(CH, speech(i), history=True) for i in range(3)] == [1, 2, 3]


async def test_publish_concurrent_seqs_have_no_holes_or_repeats(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    seqs = await asyncio.gather(*(broker.publish(CH, speech(i), history=True) for i in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    delivered = await recorder.wait_for(CH, 200)
    assert [p.seq for p in delivered] == list(range(1, 201))
    hist = await broker.history(CH, 0, 1000)
    assert [p.seq for p in hist.publications] == list(range(1, 201))
    # The seq a publish returned is the one its data travels with, live and in history.
    by_n = {n: seq for n, seq in enumerate(seqs)}
    assert all(by_n[p.data["n"]] == p.seq for p in delivered)
    assert all(by_n[p.data["n"]] == p.seq for p in hist.publications)


async def test_publish_seq_is_per_channel(parts: Parts) -> None:
    broker, _ = await parts.broker()
    assert await broker.publish(CH, speech(1), history=True) == 1
    assert await broker.publish(OTHER, speech(1), history=True) == 1
    assert await broker.publish(MOD, speech(1), history=True) == 1
    assert await broker.publish(CH, speech(2), history=True) == 2


async def test_publish_ephemeral_has_seq_zero_and_stays_out_of_history(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    assert await broker.publish(CH, speech(1), history=True) == 1
    assert await broker.publish(CH, {"t": "audio", "data": b"\x00\xff", "n": 1}, history=False) == 0
    assert await broker.publish(CH, speech(2), history=True) == 2
    delivered = await recorder.wait_for(CH, 3)
    assert sorted(p.seq for p in delivered) == [0, 1, 2]
    hist = await broker.history(CH, 0, 100)
    assert [p.seq for p in hist.publications] == [1, 2]
    assert hist.head == 2


async def test_publish_once_publishes_a_key_once_and_repeats_its_seq(parts: Parts) -> None:
    """A leader's speech resent after `unavailable` (or a lost ack) is spoken once: same key, same seq, one event."""
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    assert await broker.publish_once(CH, speech(1), "key-speech-0001") == (1, False)
    assert await broker.publish(CH, speech(2), history=True) == 2
    assert await broker.publish_once(CH, speech(1), "key-speech-0001") == (1, True)  # the resend
    assert await broker.publish_once(CH, speech(3), "key-speech-0003") == (3, False)
    assert await broker.publish_once(OTHER, speech(1), "key-speech-0001") == (1, False)  # keys are per channel
    delivered = await recorder.wait_for(CH, 3)
    assert [p.seq for p in delivered] == [1, 2, 3]
    assert [p.data["n"] for p in (await broker.history(CH, 0, 100)).publications] == [1, 2, 3]


async def test_publish_once_concurrent_resends_publish_once(parts: Parts) -> None:
    broker, _ = await parts.broker()
    results = await asyncio.gather(*(broker.publish_once(CH, speech(1), "key-same-0001") for _ in range(20)))
    assert sorted(results) == [(1, False)] + [(1, True)] * 19
    assert (await broker.history(CH, 0, 100)).head == 1


async def test_publish_ephemeral_only_channel_has_no_history(parts: Parts) -> None:
    broker, _ = await parts.broker()
    await broker.publish(MOD, {"t": "queue_add"}, history=False)
    hist = await broker.history(MOD, 0, 10)
    assert (hist.publications, hist.head, hist.complete) == ([], 0, True)


async def test_publication_bytes_unicode_and_nesting_survive(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    data = {
        "t": "audio",
        "data": bytes(range(256)) * 40,
        "text": "नमस्ते 👋 \u0000 end",
        "n": 2**40,
        "neg": -7,
        "ok": True,
        "none": None,
        "q": {"qid": "q1", "votes": 3, "tags": ["a", "ब"]},
        "v": {"q1": 1, "q2": 2},
    }
    seq = await broker.publish(CH, data, history=True)
    [live] = await recorder.wait_for(CH, 1)
    assert live.data == data and live.seq == seq and live.channel == CH
    [stored] = (await broker.history(CH, 0, 10)).publications
    assert stored.data == data and stored.seq == seq and stored.channel == CH
    assert isinstance(live.data["data"], bytes)


async def test_history_since_returns_later_publications_in_order(parts: Parts) -> None:
    broker, _ = await parts.broker()
    for i in range(10):
        await broker.publish(CH, speech(i), history=True)
    hist = await broker.history(CH, 4, 100)
    assert [p.seq for p in hist.publications] == [5, 6, 7, 8, 9, 10]
    assert [p.data["n"] for p in hist.publications] == [4, 5, 6, 7, 8, 9]
    assert (hist.head, hist.complete) == (10, True)


async def test_history_since_head_is_empty_and_complete(parts: Parts) -> None:
    broker, _ = await parts.broker()
    for i in range(3):
        await broker.publish(CH, speech(i), history=True)
    for since in (3, 7):
        hist = await broker.history(CH, since, 100)
        assert (hist.publications, hist.head, hist.complete) == ([], 3, True)


async def test_history_limit_keeps_the_newest_and_is_incomplete(parts: Parts) -> None:
    broker, _ = await parts.broker()
    for i in range(10):
        await broker.publish(CH, speech(i), history=True)
    hist = await broker.history(CH, 0, 3)
    assert [p.seq for p in hist.publications] == [8, 9, 10]
    assert (hist.head, hist.complete) == (10, False)
    exact = await broker.history(CH, 7, 3)
    assert [p.seq for p in exact.publications] == [8, 9, 10] and exact.complete


async def test_history_window_keeps_history_size_events(parts: Parts) -> None:
    broker, _ = await parts.broker(history_size=10)
    for i in range(25):
        await broker.publish(CH, speech(i), history=True)
    everything = await broker.history(CH, 0, 100)
    assert [p.seq for p in everything.publications] == list(range(16, 26))
    assert (everything.head, everything.complete) == (25, False)
    # Resuming from just before the window is complete; from further back, events are missing.
    assert (await broker.history(CH, 15, 100)).complete
    older = await broker.history(CH, 14, 100)
    assert not older.complete and [p.seq for p in older.publications] == list(range(16, 26))


async def test_history_of_unknown_channel_is_empty(parts: Parts) -> None:
    broker, _ = await parts.broker()
    fresh = await broker.history("th:never", 0, 10)
    assert (fresh.publications, fresh.head, fresh.complete) == ([], 0, True)
    # A client that saw events the broker does not know of cannot be resumed.
    assert not (await broker.history("th:never", 5, 10)).complete


async def test_subscribe_delivers_in_seq_order(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    for i in range(50):
        await broker.publish(CH, speech(i), history=True)
        if i % 10 == 0:
            await broker.publish(CH, {"t": "votes", "v": {"q1": i}}, history=False)
    delivered = await recorder.wait_for(CH, 55)
    events = [p.seq for p in delivered if p.seq]
    assert events == list(range(1, 51))
    assert [p.data["n"] for p in delivered if p.seq] == list(range(50))


async def test_subscribe_delivers_only_subscribed_channels(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.publish(OTHER, speech(0), history=True)
    await broker.publish(MOD, {"t": "queue_add"}, history=False)
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    await asyncio.sleep(0.05)
    assert {p.channel for p in recorder.pubs} == {CH}


async def test_subscribe_to_several_channels_of_one_townhall(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await recorder.listen(broker, MOD)
    await broker.publish(MOD, {"t": "queue_add", "q": {"qid": "q1"}}, history=False)
    await broker.publish(CH, speech(1), history=True)
    [mod] = await recorder.wait_for(MOD, 1)
    assert mod.seq == 0 and mod.data["t"] == "queue_add"
    assert (await recorder.wait_for(CH, 1))[0].seq == 1


async def test_subscribe_twice_delivers_once(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.subscribe(CH)
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    await asyncio.sleep(0.05)
    assert recorder.seqs(CH) == [1]


async def test_unsubscribe_stops_delivery(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    await recorder.leave(broker, CH)
    await broker.publish(CH, speech(2), history=True)
    await asyncio.sleep(0.1)
    assert recorder.seqs(CH) == [1]
    # Subscribing again delivers again, and the stream went on meanwhile.
    await recorder.listen(broker, CH)
    assert await broker.publish(CH, speech(3), history=True) == 3
    await recorder.wait_for(CH, 2)
    assert recorder.seqs(CH) == [1, 3]


async def test_unsubscribe_unknown_channel_is_harmless(parts: Parts) -> None:
    broker, _ = await parts.broker()
    await broker.unsubscribe("th:never")


async def test_broker_is_healthy_once_started(parts: Parts) -> None:
    broker, _ = await parts.broker()
    assert broker.healthy


async def test_moderation_stream_keyed_notices_are_once_per_key_and_replayable(parts: Parts) -> None:
    # The node's moderation stream: `queue_add` once per question (key q:<qid>), other notices unkeyed, all replayable.
    broker, recorder = await parts.broker()
    await recorder.listen(broker, MOD)
    assert await broker.publish_once(MOD, {"t": "queue_add", "q": {"qid": "q1"}}, "q:q1") == (1, False)
    assert await broker.publish(MOD, {"t": "claim_update", "qid": "q1", "by": "m-1", "until": 1}, history=True) == 2
    assert await broker.publish_once(MOD, {"t": "queue_add", "q": {"qid": "q1"}}, "q:q1") == (1, True)
    assert await broker.publish_once(CH, speech(1), "q:q1") == (1, False)  # keys are per channel
    delivered = await recorder.wait_for(MOD, 2)
    await asyncio.sleep(0.05)
    assert [(p.seq, p.data["t"]) for p in recorder.on(MOD)] == [(1, "queue_add"), (2, "claim_update")]
    assert [p.seq for p in delivered] == [1, 2]
    hist = await broker.history(MOD, 1, 100)
    assert (hist.head, hist.complete, [p.seq for p in hist.publications]) == (2, True, [2])


AUDIO = "th:abc:audio"


async def test_publish_kept_is_delivered_ephemeral_and_kept_as_the_latest(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    assert await broker.kept(AUDIO) is None
    await recorder.listen(broker, AUDIO)
    first = {"t": "audio", "data": b"\x1aE\xdf\xa3one", "n": 1, "init": True, "mime": "audio/webm"}
    await broker.publish_kept(AUDIO, first)
    await broker.publish(AUDIO, {"t": "audio", "data": b"\x00two", "n": 2, "init": False}, history=False)
    delivered = await recorder.wait_for(AUDIO, 2)
    assert [(p.seq, p.data["n"]) for p in delivered] == [(0, 1), (0, 2)]
    assert dict(await broker.kept(AUDIO) or {}) == first  # an ordinary publish does not replace it
    second = {**first, "data": b"\x1aE\xdf\xa3three", "n": 3}
    await broker.publish_kept(AUDIO, second)
    assert dict(await broker.kept(AUDIO) or {}) == second
    # Kept, not history: the channel's stream stays empty, and other channels keep nothing.
    assert (await broker.history(AUDIO, 0, 10)).head == 0
    assert await broker.kept(CH) is None


async def test_audio_channel_is_its_own_subscription_beside_the_townhall_channel(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.publish_kept(AUDIO, {"t": "audio", "data": b"x", "n": 1, "init": True})
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    await asyncio.sleep(0.05)
    assert recorder.on(AUDIO) == []  # a node without audio listeners gets no audio
    await recorder.listen(broker, AUDIO)
    await broker.publish(AUDIO, {"t": "audio", "data": b"y", "n": 2}, history=False)
    assert (await recorder.wait_for(AUDIO, 1))[0].data["data"] == b"y"
    await recorder.leave(broker, AUDIO)
    await broker.publish(AUDIO, {"t": "audio", "data": b"z", "n": 3}, history=False)
    await broker.publish(CH, speech(2), history=True)
    await recorder.wait_for(CH, 2)
    await asyncio.sleep(0.05)
    assert [p.data["n"] for p in recorder.on(AUDIO)] == [2]
