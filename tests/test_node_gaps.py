"""A node that misses publications (its subscription dropped for a while) fills the hole from history."""

from __future__ import annotations

from typing import Any

import pytest

from jansamvad.models import Status
from jansamvad.node import moderation_channel, public_channel
from jansamvad.server import RunningServer
from tests.helpers import Session, joined, make_hall

pytestmark = pytest.mark.anyio


async def test_node_fills_a_stream_gap_from_history_in_order(server: RunningServer) -> None:
    hall = await make_hall(server)
    node = server.node
    await node.store.set_status(hall.th, Status.LIVE)
    citizen = await joined(server, hall.citizen_token())
    channel = public_channel(hall.th)
    await node.publish_event(hall.th, {"t": "speech", "text": "1"})
    # The subscription is lost (as when a Redis connection drops): two events are published that this node never
    # hears about. (unsubscribe() would refuse: the hub still has listeners on the channel.)
    node.broker._subscribed.discard(channel)  # type: ignore[attr-defined]
    await node.publish_event(hall.th, {"t": "speech", "text": "2"})
    await node.publish_event(hall.th, {"t": "speech", "text": "3"})
    await node.broker.subscribe(channel)
    await node.publish_event(hall.th, {"t": "speech", "text": "4"})
    texts = [(await citizen.recv_until(lambda m: m["t"] == "speech"))["text"] for _ in range(4)]
    assert texts == ["1", "2", "3", "4"]
    assert node.stream_gaps == 1


async def test_node_gap_older_than_history_makes_sessions_resync(make_server: Any) -> None:
    server = await make_server(history_size=10)
    hall = await make_hall(server)
    node = server.node
    await node.store.set_status(hall.th, Status.LIVE)
    citizen = await joined(server, hall.citizen_token())
    channel = public_channel(hall.th)
    await node.publish_event(hall.th, {"t": "speech", "text": "first"})
    await citizen.recv_until(lambda m: m["t"] == "speech")
    node.broker._subscribed.discard(channel)  # type: ignore[attr-defined]  # the subscription is lost
    for i in range(20):
        await node.publish_event(hall.th, {"t": "speech", "text": f"lost {i}"})
    await node.broker.subscribe(channel)
    await node.publish_event(hall.th, {"t": "speech", "text": "after"})
    code, _ = await citizen.expect_close()
    assert code == 1012  # reconnect: the resume will get a snapshot


async def test_node_fills_a_moderation_stream_gap_from_history_in_order(server: RunningServer) -> None:
    hall = await make_hall(server)
    node = server.node
    moderator = await joined(server, hall.moderator)
    channel = moderation_channel(hall.th)

    def claim(n: int) -> dict[str, Any]:
        return {"t": "claim_update", "qid": f"q{n}", "by": "m-other", "until": n}

    await node.publish_moderation(hall.th, claim(1))
    node.broker._subscribed.discard(channel)  # type: ignore[attr-defined]  # the subscription is lost
    await node.publish_moderation(hall.th, claim(2))
    await node.publish_moderation(hall.th, claim(3))
    await node.broker.subscribe(channel)
    await node.publish_moderation(hall.th, claim(4))
    got = [await moderator.recv_until(lambda m: m["t"] == "claim_update") for _ in range(4)]
    assert [(m["mseq"], m["qid"]) for m in got] == [(1, "q1"), (2, "q2"), (3, "q3"), (4, "q4")]


async def test_node_moderation_gap_older_than_history_gives_moderators_a_snapshot(make_server: Any) -> None:
    server = await make_server(history_size=10)
    hall = await make_hall(server)
    node = server.node
    moderator = await joined(server, hall.moderator)
    channel = moderation_channel(hall.th)
    await node.publish_moderation(hall.th, {"t": "claim_update", "qid": "q0", "by": None, "until": 0})
    first = await moderator.recv_until(lambda m: m["t"] == "claim_update")
    node.broker._subscribed.discard(channel)  # type: ignore[attr-defined]  # the subscription is lost
    for i in range(20):
        await node.publish_moderation(hall.th, {"t": "claim_update", "qid": f"q{i}", "by": None, "until": 0})
    await node.broker.subscribe(channel)
    await node.publish_moderation(hall.th, {"t": "claim_update", "qid": "q-after", "by": None, "until": 0})
    code, _ = await moderator.expect_close()
    assert code == 1012  # reconnect; the notices it missed are gone from history, so the resume gets a snapshot
    again = await Session.open(server)
    welcome, snapshot = await again.hello(hall.moderator, last_seq=0, last_mseq=first["mseq"])
    assert welcome["recovered"] is False and snapshot is not None and snapshot["mseq"] == 22
