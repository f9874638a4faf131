"""The fan-out engine in isolation: listeners are small recording objects, the frames are real bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgpack
import pytest

from jansamvad.fanout import Fanout
from jansamvad.feeds import Mode, feed_of
from jansamvad.hub import Hub
from jansamvad.protocol.codec import Encoding

pytestmark = pytest.mark.anyio


class Recorder:
    """A listener that records what the fan-out writes to it."""

    def __init__(
        self, encoding: Encoding = Encoding.MSGPACK, *, slow: bool = False, mode: Mode = Mode.CAPTIONS
    ) -> None:
        self.encoding = encoding
        self.feed = feed_of(encoding, mode)
        self.paused: list[tuple[str, int, bytes]] | None = None
        self.fast_write = None  # always the fan-out's checked path (write_broadcast)
        self.slow = slow
        self.writes: list[bytes] = []
        self.dropped = False
        self.resumed_after: Mapping[str, int] | None = None

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None:
        if self.slow:  # the same policy as WsConnection over its buffer cap
            self.dropped = self.dropped or must_deliver
            return
        self.writes.append(blob)

    def resume(self, after: Mapping[str, int]) -> None:
        paused, self.paused = self.paused or [], None
        self.resumed_after = after
        self.writes.append(b"".join(f for stream, seq, f in paused if seq == 0 or seq > after.get(stream, 0)))


def frames(blob: bytes) -> list[dict[str, object]]:
    """Split a blob of unmasked server frames into decoded msgpack messages."""
    out = []
    i = 0
    while i < len(blob):
        n = blob[i + 1] & 0x7F
        start = i + 2
        if n == 126:
            n, start = int.from_bytes(blob[i + 2 : i + 4], "big"), i + 4
        out.append(msgpack.unpackb(blob[start : start + n]))
        i = start + n
    return out


async def started(tick_s: float = 0.001, writes_per_yield: int = 1000, coalesce_s: float = 0.0) -> Fanout:
    """A started fan-out; without coalescing unless asked (these tests are about ticks; tests/test_feeds.py covers
    coalescing)."""
    fanout = Fanout(tick_s=tick_s, writes_per_yield=writes_per_yield, coalesce_s=coalesce_s)
    fanout.start()
    return fanout


async def settle() -> None:
    await asyncio.sleep(0.02)


async def test_fanout_encodes_once_per_format_not_per_listener() -> None:
    fanout = await started()
    hub = Hub()
    listeners = [Recorder() for _ in range(500)] + [Recorder(Encoding.JSON) for _ in range(3)]
    for listener in listeners:
        hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    fanout.enqueue(room, 1, {"t": "speech", "text": "नमस्ते"})
    await settle()
    assert fanout.frames_built == 2  # one msgpack frame, one JSON frame, for 503 listeners
    first = listeners[0].writes[0]
    assert all(listener.writes[0] is first for listener in listeners[:500]), "the very same bytes object"
    assert frames(first) == [{"t": "speech", "text": "नमस्ते", "seq": 1}]
    json_payload = '{"t":"speech","text":"नमस्ते","seq":1}'.encode()
    assert listeners[-1].writes[0] == bytes((0x81, len(json_payload))) + json_payload
    await fanout.stop()


async def test_fanout_batches_a_tick_into_one_write_per_listener() -> None:
    fanout = await started(tick_s=0.01)
    hub = Hub()
    listeners = [Recorder() for _ in range(50)]
    for listener in listeners:
        hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    for seq in range(1, 13):
        fanout.enqueue(room, seq, {"t": "speech", "text": f"s{seq}"})
    await asyncio.sleep(0.05)
    for listener in listeners:
        assert len(listener.writes) == 1
        assert [m["seq"] for m in frames(listener.writes[0])] == list(range(1, 13))
    assert fanout.writes == 50
    await fanout.stop()


async def test_fanout_conflates_aggregates_to_the_latest_value_per_tick() -> None:
    fanout = await started(tick_s=0.01)
    hub = Hub()
    listener = Recorder()
    hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    for n in range(1, 101):
        fanout.conflate(room, {"t": "viewers", "n": n})
        fanout.conflate(room, {"t": "votes", "v": {f"q{n % 3}": n}})
    await asyncio.sleep(0.05)
    assert frames(listener.writes[0]) == [
        {"t": "viewers", "n": 100},
        {"t": "votes", "v": {"q1": 100, "q2": 98, "q0": 99}},
    ]
    await fanout.stop()


async def test_fanout_slow_listener_is_skipped_for_droppable_and_dropped_for_must_deliver() -> None:
    fanout = await started()
    hub = Hub()
    slow, fast = Recorder(slow=True), Recorder()
    hub.add("th:x", slow)
    hub.add("th:x", fast)
    room = hub.room("th:x")
    assert room is not None
    fanout.conflate(room, {"t": "viewers", "n": 2})
    fanout.enqueue(room, 0, {"t": "audio", "data": b"x"}, droppable=True)
    await settle()
    assert not slow.dropped and len(fast.writes) == 1
    fanout.enqueue(room, 1, {"t": "speech", "text": "ज़रूरी"})
    await settle()
    assert slow.dropped and len(fast.writes) == 2
    await fanout.stop()


async def test_fanout_yields_to_the_loop_during_a_big_fan_out() -> None:
    fanout = await started(writes_per_yield=100)
    hub = Hub()
    for _ in range(5000):
        hub.add("th:x", Recorder())
    room = hub.room("th:x")
    assert room is not None
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    worker = asyncio.get_running_loop().create_task(other_work())
    before = ticks
    fanout.enqueue(room, 1, {"t": "speech", "text": "x"})
    await settle()
    worker.cancel()
    assert fanout.writes == 5000
    assert ticks - before >= 45, "other tasks ran between chunks of 100 writes"
    await fanout.stop()


async def test_fanout_paused_listener_gets_frames_on_resume_without_replayed_seqs() -> None:
    fanout = await started()
    hub = Hub()
    listener = Recorder()
    listener.paused = []
    hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    for seq in (4, 5, 6):
        fanout.enqueue(room, seq, {"t": "speech", "text": str(seq)})
    fanout.conflate(room, {"t": "viewers", "n": 1})
    fanout.resume(listener, {"seq": 5})  # the replay already sent up to seq 5
    await settle()
    assert listener.resumed_after == {"seq": 5} and listener.paused is None
    assert [m.get("seq") for m in frames(listener.writes[-1])] == [6, None]
    await fanout.stop()


async def test_fanout_paused_listener_in_two_streams_drops_only_what_each_replay_covered() -> None:
    # A moderator replays the public stream (seq) and the moderation stream (mseq): each has its own number line.
    fanout = await started()
    hub = Hub()
    listener = Recorder()
    listener.paused = []
    hub.add("th:x", listener)
    hub.add("th:x:mod", listener, "mseq")
    public, moderation = hub.room("th:x"), hub.room("th:x:mod")
    assert public is not None and moderation is not None
    for seq in (4, 5):
        fanout.enqueue(public, seq, {"t": "speech", "text": str(seq)})
    for mseq in (2, 3):
        fanout.enqueue(moderation, mseq, {"t": "claim_update", "qid": "q1", "by": None, "until": 0})
    fanout.resume(listener, {"seq": 4, "mseq": 2})
    await settle()
    got = [(m["t"], m.get("seq"), m.get("mseq")) for m in frames(listener.writes[-1])]
    assert got == [("speech", 5, None), ("claim_update", None, 3)]
    await fanout.stop()


def seqs_written(listener: Recorder) -> list[object]:
    return [m.get("seq") for blob in listener.writes for m in frames(blob) if m.get("seq") is not None]


async def test_fanout_resume_during_a_held_partial_sees_each_seq_exactly_once() -> None:
    # A partial transcript waits up to COALESCE_S for company. A session that joins meanwhile gets it in its replay
    # (its history read already has seq 1); the held room must reach it while it is still paused, where the resume's
    # filter drops seq 1, not after the resume, when it would come a second time ("seq 1 after 1").
    fanout = await started(coalesce_s=0.3)
    hub = Hub()
    live, joining, elsewhere = Recorder(), Recorder(), Recorder()
    hub.add("th:x", live)
    hub.add("th:y", elsewhere)
    joining.paused = []
    hub.add("th:x", joining)
    room, other = hub.room("th:x"), hub.room("th:y")
    assert room is not None and other is not None
    fanout.enqueue(room, 1, {"t": "speech", "text": "जनसं", "final": False})  # held (coalescing)
    fanout.enqueue(other, 7, {"t": "speech", "text": "और", "final": False})  # held; nobody there is joining
    fanout.resume(joining, {"seq": 1})  # the replay covered seq 1
    await settle()
    fanout.enqueue(room, 2, {"t": "speech", "text": "जनसंवाद", "final": False})  # after the replay: live, once
    await asyncio.sleep(0.45)  # past every hold
    assert joining.paused is None
    assert seqs_written(joining) == [2]
    assert seqs_written(live) == [1, 2]
    assert seqs_written(elsewhere) == [7]
    await fanout.stop()


async def test_fanout_resume_flushes_only_the_held_rooms_it_is_in() -> None:
    # The fix must not undo coalescing elsewhere: a held room without a resuming member keeps waiting.
    fanout = await started(coalesce_s=0.3)
    hub = Hub()
    joining, elsewhere = Recorder(), Recorder()
    joining.paused = []
    hub.add("th:x", joining)
    hub.add("th:y", elsewhere)
    other = hub.room("th:y")
    assert other is not None
    fanout.enqueue(other, 7, {"t": "speech", "text": "और", "final": False})
    fanout.resume(joining, {"seq": 0})
    await settle()
    assert elsewhere.writes == [], "a held room nobody joins was flushed early"
    await asyncio.sleep(0.35)
    assert seqs_written(elsewhere) == [7]
    await fanout.stop()
