"""The fan-out's feeds (feeds.py): one blob per wire format and listening mode, no per-connection filtering, and
coalescing of partial transcripts, audio chunks and aggregates into fewer writes."""

from __future__ import annotations

import asyncio

import pytest

from jansamvad.feeds import Mode, feed_of
from jansamvad.hub import Hub
from jansamvad.protocol.codec import Encoding
from tests.test_fanout import Recorder, frames, started

pytestmark = pytest.mark.anyio


def types(listener: Recorder) -> list[str]:
    return [str(m["t"]) for blob in listener.writes for m in frames(blob)]


async def test_feeds_audio_reaches_only_members_in_audio_mode() -> None:
    fanout = await started(tick_s=0.001)
    hub = Hub()
    listening, reading, light = Recorder(mode=Mode.AUDIO), Recorder(), Recorder(mode=Mode.LIGHT)
    for member in (listening, reading, light):
        hub.add("th:x", member)
    room = hub.room("th:x")
    assert room is not None
    fanout.enqueue_audio(room, {"t": "audio", "data": b"\x00" * 100, "n": 1, "init": False, "mime": ""})
    fanout.enqueue(room, 1, {"t": "speech", "text": "पूरा", "final": True})
    await asyncio.sleep(0.05)
    assert types(listening) == ["speech", "audio"]
    assert types(reading) == ["speech"] and types(light) == ["speech"]
    assert fanout.messages_out["audio"] == 1


async def test_feeds_audio_is_not_even_queued_for_a_room_without_audio_members() -> None:
    fanout = await started()
    hub = Hub()
    reading = Recorder()
    hub.add("th:x", reading)
    room = hub.room("th:x")
    assert room is not None
    fanout.enqueue_audio(room, {"t": "audio", "data": b"\x00", "n": 1})
    assert room.audio == [] and not room.dirty and not room.lazy
    await asyncio.sleep(0.06)
    assert reading.writes == []


async def test_feeds_light_members_get_no_partials_and_aggregates_paced() -> None:
    fanout = await started(tick_s=0.001)
    hub = Hub()
    full, light = Recorder(), Recorder(mode=Mode.LIGHT)
    hub.add("th:x", full)
    hub.add("th:x", light)
    room = hub.room("th:x")
    assert room is not None
    for n in range(1, 4):
        fanout.enqueue(room, n, {"t": "speech", "text": f"आधा {n}", "final": False})
        fanout.conflate(room, {"t": "viewers", "n": n, "staff": 0})
        await asyncio.sleep(0.02)
    fanout.enqueue(room, 4, {"t": "speech", "text": "पूरा", "final": True})
    await asyncio.sleep(0.02)
    assert types(full).count("speech") == 4 and types(full).count("viewers") == 3
    light_messages = [m for blob in light.writes for m in frames(blob)]
    assert [m["seq"] for m in light_messages if m["t"] == "speech"] == [4]
    # The first aggregate goes at once; the later ones wait for the 5 s turn, as their latest value.
    assert [m["n"] for m in light_messages if m["t"] == "viewers"] == [1]
    assert room.light_pending["viewers"]["n"] == 3


async def test_feeds_set_feed_moves_a_member_between_blobs() -> None:
    fanout = await started(tick_s=0.001)
    hub = Hub()
    member = Recorder()
    hub.add("th:x", member)
    room = hub.room("th:x")
    assert room is not None
    hub.set_feed(member, feed_of(Encoding.MSGPACK, Mode.AUDIO), ["th:x", "th:x:mod"])
    assert room.feeds[feed_of(Encoding.MSGPACK, Mode.AUDIO)] == 1 and sum(room.feeds) == 1
    fanout.enqueue_audio(room, {"t": "audio", "data": b"a", "n": 1})
    await asyncio.sleep(0.06)
    assert types(member) == ["audio"]
    hub.remove("th:x", member)
    assert sum(room.feeds) == 0


async def test_coalescing_puts_partials_audio_and_aggregates_of_one_moment_in_one_write() -> None:
    """Speech partials, audio chunks and aggregates: with coalescing a listener gets those of one moment in one write;
    without it, one write each. (A long coalescing window here, so a loaded machine cannot split a moment; the
    writes per listener per second of a realistic town hall are measured by the bench, docs/benchmarks.md.)"""
    writes = {}
    for coalesce_s in (0.0, 0.25):
        fanout = await started(tick_s=0.005, coalesce_s=coalesce_s)
        hub = Hub()
        listener = Recorder(mode=Mode.AUDIO)
        hub.add("th:x", listener)
        room = hub.room("th:x")
        assert room is not None
        for n in range(1, 4):
            fanout.enqueue(room, n, {"t": "speech", "text": f"आधा {n}", "final": False})
            await asyncio.sleep(0.02)
            fanout.enqueue_audio(room, {"t": "audio", "data": b"\x00" * 900, "n": n})
            await asyncio.sleep(0.02)
            fanout.conflate(room, {"t": "viewers", "n": n, "staff": 0})
            await asyncio.sleep(0.5)
        await fanout.stop()
        assert types(listener).count("speech") == 3 and types(listener).count("audio") == 3
        writes[coalesce_s] = len(listener.writes)
    assert writes[0.25] == 3 < writes[0.0]


async def test_coalescing_never_delays_a_final_sentence() -> None:
    fanout = await started(tick_s=0.001, coalesce_s=10.0)
    hub = Hub()
    listener = Recorder()
    hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    fanout.enqueue(room, 1, {"t": "speech", "text": "आधा", "final": False})
    await asyncio.sleep(0.05)
    assert listener.writes == []  # the partial waits (here: up to 10 s)
    fanout.enqueue(room, 2, {"t": "speech", "text": "पूरा", "final": True})
    await asyncio.sleep(0.05)
    assert [m["seq"] for m in frames(listener.writes[0])] == [1, 2]  # the final one took the partial along
