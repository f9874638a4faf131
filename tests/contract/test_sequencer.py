"""The one sequencer's policy (broker/sequencer.py), against the memory broker, Redis and a Redis cluster: when a
subscription is lost and made again, what was published meanwhile is filled from history, in order, once each; what
history no longer has is reported through `handle_gone` (the node resyncs: tests/test_node_gaps.py); every seq is
either delivered or reported gone, never silently skipped."""

from __future__ import annotations

from typing import Any

import pytest

from jansamvad.broker.base import Broker
from jansamvad.broker.memory import MemoryBroker
from jansamvad.broker.redis import RedisBroker
from jansamvad.models import Status
from jansamvad.node import public_channel
from tests.contract.conftest import Backend, Parts
from tests.contract.support import eventually
from tests.helpers import Session, joined, make_hall

pytestmark = pytest.mark.anyio

CH = "th:seq"


def speech(n: int) -> dict[str, Any]:
    return {"t": "speech", "text": str(n), "n": n}


async def drop_subscription(broker: Broker, channel: str) -> None:
    """Lose the broker's subscription to a channel the hub still has (as when its connection drops), without
    telling the sequencer: publications go on, but none reach this broker."""
    if isinstance(broker, MemoryBroker):
        broker._subscribed.discard(channel)
        return
    assert isinstance(broker, RedisBroker)
    for reader in broker._readers.values():
        for pub in list(reader.active):
            if broker._names.get(pub) == channel:
                await reader.unsubscribe(pub)
                await eventually(lambda r=reader: not r._unsub_pending, 5, "the server to confirm the unsubscribe")


async def test_sequencer_fills_a_hole_from_history_in_order(parts: Parts) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    await drop_subscription(broker, CH)
    for n in (2, 3):
        await broker.publish(CH, speech(n), history=True)
    await broker.subscribe(CH)  # made again: the sequencer reads what it missed
    await broker.publish(CH, speech(4), history=True)
    await recorder.wait_for(CH, 4)
    assert recorder.seqs(CH) == [1, 2, 3, 4]
    assert [p.data["n"] for p in recorder.on(CH)] == [1, 2, 3, 4]
    assert recorder.gone == []
    assert broker.stream_gaps == 1


async def test_sequencer_reports_what_history_lost_and_never_skips_silently(parts: Parts) -> None:
    broker, recorder = await parts.broker(history_size=10)
    await recorder.listen(broker, CH)
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    await drop_subscription(broker, CH)
    for n in range(2, 22):  # 20 while away; history keeps the newest 10 (12..21)
        await broker.publish(CH, speech(n), history=True)
    await broker.subscribe(CH)
    await broker.publish(CH, speech(22), history=True)
    await eventually(lambda: 22 in recorder.seqs(CH), 5, "the live publication after the hole")
    # One report, from the first missed seq up to what history still has (12, or 13 when the fill read history after
    # the 22nd was published); everything after it delivered, in order, once each.
    [(channel, gone)] = recorder.gone
    assert channel == CH and gone.start == 2 and gone.stop in (12, 13)
    assert recorder.seqs(CH) == [1, *range(gone.stop, 23)]


async def test_sequencer_passes_a_subscription_made_twice_without_a_loss_through_unchanged(parts: Parts) -> None:
    # A room re-created before the late unsubscribe ran subscribes again: nothing is missed, nothing is replayed.
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.publish(CH, speech(1), history=True)
    await broker.subscribe(CH)
    await broker.publish(CH, speech(2), history=True)
    await recorder.wait_for(CH, 2)
    assert recorder.seqs(CH) == [1, 2] and recorder.gone == []


async def test_sequencer_history_lost_makes_a_node_on_redis_resync_its_sessions(
    make_server: Any, backend: Backend
) -> None:
    # The node's side of the policy on a real Redis (tests/test_node_gaps.py does it on the memory broker): the
    # broker reports the seqs gone, the node closes the room's sessions with 1012, their resume gets a snapshot.
    if not backend.is_redis:
        pytest.skip("the memory broker's node is tests/test_node_gaps.py")
    server = await make_server(history_size=10, redis_url=backend.url, redis_prefix=backend.prefix)
    hall = await make_hall(server)
    node = server.node
    await node.store.set_status(hall.th, Status.LIVE)
    citizen = await joined(server, hall.citizen_token())
    await node.publish_event(hall.th, {"t": "speech", "text": "first"})
    first = await citizen.recv_until(lambda m: m["t"] == "speech")
    channel = public_channel(hall.th)
    await drop_subscription(node.broker, channel)
    for i in range(20):
        await node.publish_event(hall.th, {"t": "speech", "text": f"lost {i}"})
    await node.broker.subscribe(channel)
    code, _ = await citizen.expect_close()
    assert code == 1012
    again = await Session.open(server)
    welcome, snapshot = await again.hello(hall.citizen_token(sub="c-again"), last_seq=first["seq"])
    assert welcome["recovered"] is False and snapshot is not None and snapshot["seq"] == first["seq"] + 20
