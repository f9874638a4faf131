"""What only the Redis broker does: several nodes on one stream, outages, silent servers, clusters."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from jansamvad.broker.redis import RedisBroker
from jansamvad.redis_conn import RedisConn, RedisUnavailable
from jansamvad.redis_keys import RedisKeys
from tests.contract.conftest import REDIS_BACKENDS, Backend, Parts, backend_for
from tests.contract.support import Recorder, eventually
from tests.redis_servers import Cluster, RedisServer, free_port

pytestmark = pytest.mark.anyio

CH = "th:abc"
MOD = "th:abc:mod"
OTHER = "th:xyz"
# Quick to notice trouble and to come back, so outage tests take a second, not ten.
FAST = {"health_interval_s": 0.1, "dead_after_s": 0.5, "backoff_base_s": 0.02, "backoff_max_s": 0.2}


@pytest.fixture(params=REDIS_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return backend_for(request, request.param)


def servers(request: pytest.FixtureRequest, backend: Backend) -> list[RedisServer]:
    if backend.kind == "cluster":
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        return cluster.nodes
    return [request.getfixturevalue("redis_standalone")]


def speech(n: int) -> dict[str, object]:
    return {"t": "speech", "text": f"वाक्य {n}", "n": n}


async def test_broker_nodes_share_one_stream(parts: Parts) -> None:
    node_a, seen_a = await parts.broker()
    node_b, seen_b = await parts.broker()
    await seen_a.listen(node_a, CH)
    await seen_b.listen(node_b, CH)
    seqs = await asyncio.gather(
        *(node_a.publish(CH, speech(i), history=True) for i in range(0, 100, 2)),
        *(node_b.publish(CH, speech(i), history=True) for i in range(1, 100, 2)),
    )
    assert sorted(seqs) == list(range(1, 101))
    for seen in (seen_a, seen_b):
        await seen.wait_for(CH, 100)
        assert seen.seqs(CH) == list(range(1, 101))
    # Both nodes saw the same event under the same seq.
    assert [p.data for p in seen_a.on(CH)] == [p.data for p in seen_b.on(CH)]
    assert [p.seq for p in (await node_b.history(CH, 0, 1000)).publications] == list(range(1, 101))


async def test_broker_unsubscribe_keeps_a_channel_the_hub_still_has(parts: Parts) -> None:
    # The node spawns unsubscribe() as a task when a room empties; if a new listener re-created the room before the
    # task ran, the hub lists the channel again and the late unsubscribe must not cut the new listener off.
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.unsubscribe(CH)  # late: the recorder (the hub) still has CH
    await broker.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)


async def test_broker_fills_the_hole_left_while_its_subscription_was_down(
    parts: Parts, backend: Backend, request: pytest.FixtureRequest
) -> None:
    subscriber, recorder = await parts.broker(**{**FAST, "backoff_base_s": 0.3, "backoff_max_s": 0.4})
    publisher, _ = await parts.broker()
    await recorder.listen(subscriber, CH)
    await publisher.publish(CH, speech(1), history=True)
    await recorder.wait_for(CH, 1)
    for server in servers(request, backend):
        with server.client() as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    # Published while the subscriber is away (it waits at least 0.15 s before it reconnects).
    for i in range(2, 5):
        await publisher.publish(CH, speech(i), history=True)
    await recorder.wait_for(CH, 4)
    assert isinstance(subscriber, RedisBroker) and subscriber.holes_filled == 3  # from history, not live
    await publisher.publish(CH, speech(5), history=True)
    await recorder.wait_for(CH, 5)
    await asyncio.sleep(0.05)
    assert recorder.seqs(CH) == [1, 2, 3, 4, 5]
    assert [p.data["n"] for p in recorder.on(CH)] == [1, 2, 3, 4, 5]


async def test_broker_fills_a_hole_after_a_resubscribe_on_a_channel_it_had_delivered_nothing_of(
    parts: Parts, backend: Backend, request: pytest.FixtureRequest
) -> None:
    # A quiet moderation stream: subscribed, nothing published yet, then the subscription is lost and notices are
    # published before it is back. There is no "last delivered seq" to start the fill from but the head at subscribe.
    subscriber, recorder = await parts.broker(**{**FAST, "backoff_base_s": 0.3, "backoff_max_s": 0.4})
    publisher, _ = await parts.broker()
    await publisher.publish(MOD, speech(1), history=True)  # before the subscription: not for this subscriber
    await recorder.listen(subscriber, MOD)
    for server in servers(request, backend):
        with server.client() as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    for i in range(2, 4):
        await publisher.publish(MOD, speech(i), history=True)
    await recorder.wait_for(MOD, 2)
    await publisher.publish(MOD, speech(4), history=True)
    await recorder.wait_for(MOD, 3)
    await asyncio.sleep(0.05)
    assert recorder.seqs(MOD) == [2, 3, 4]


@pytest.mark.redis
async def test_broker_reconnects_after_the_server_restarts(restartable_redis: RedisServer) -> None:
    parts = Parts(Backend("redis", restartable_redis.url))
    try:
        broker, recorder = await parts.broker(**FAST)
        await recorder.listen(broker, CH)
        await recorder.listen(broker, MOD)
        assert await broker.publish(CH, speech(1), history=True) == 1
        await recorder.wait_for(CH, 1)

        restartable_redis.stop()
        await eventually(lambda: not broker.healthy, 3, "the broker to notice the outage")
        with pytest.raises(ConnectionError):
            await broker.publish(CH, speech(2), history=True)
        with pytest.raises(ConnectionError):
            await broker.history(CH, 0, 10)
        # A room created during the outage: the hub has it, subscribing fails now, the reconnect catches up.
        recorder.channels.add(OTHER)
        with pytest.raises(ConnectionError):
            await broker.subscribe(OTHER)

        await asyncio.to_thread(restartable_redis.start)
        await eventually(lambda: broker.healthy, 5, "the broker to reconnect")
        keys = RedisKeys(parts.backend.prefix)
        with restartable_redis.client() as admin:
            subscribed = set(admin.execute_command("PUBSUB", "SHARDCHANNELS"))
        assert {keys.channel(c).pub.encode() for c in (CH, MOD, OTHER)} <= subscribed
        assert await broker.publish(CH, speech(2), history=True) == 2  # the seq survived (AOF)
        await broker.publish(MOD, {"t": "queue_add"}, history=False)
        await broker.publish(OTHER, speech(1), history=True)
        await recorder.wait_for(CH, 2)
        await recorder.wait_for(MOD, 1)
        await recorder.wait_for(OTHER, 1)
        assert recorder.seqs(CH) == [1, 2]
    finally:
        await parts.close()


@pytest.mark.redis
async def test_broker_in_a_cluster_survives_a_primary_restart(restartable_cluster: Cluster) -> None:
    parts = Parts(Backend("cluster", restartable_cluster.url))
    try:
        broker, recorder = await parts.broker(**FAST)
        channels = [f"th:hall{i}" for i in range(12)]  # spread over the three primaries
        for channel in channels:
            await recorder.listen(broker, channel)
        for channel in channels:
            await broker.publish(channel, speech(1), history=True)
        await eventually(lambda: all(recorder.seqs(c) == [1] for c in channels), 5, "the first events")

        victim = restartable_cluster.nodes[1]
        victim.stop()
        await eventually(lambda: broker.shards() == (3, 2), 3, "the broker to notice the lost primary")
        assert broker.healthy  # one shard down is not Redis down: the other shards' town halls go on
        await asyncio.to_thread(victim.start)
        await asyncio.to_thread(restartable_cluster.wait_ok)
        await eventually(lambda: broker.shards() == (3, 3), 10, "the reader of the restarted primary")

        async def publish_when_served(channel: str) -> int:
            for _ in range(100):  # the cluster may answer CLUSTERDOWN for a moment after it healed
                try:
                    return await broker.publish(channel, speech(2), history=True)
                except ConnectionError:
                    # Unknown outcome: the event may have been stored before the connection broke, so a retry
                    # may store it twice (each copy with its own seq). Nothing is lost, nothing is out of order.
                    await asyncio.sleep(0.05)
            raise AssertionError(f"could not publish on {channel}")

        results = await asyncio.gather(*(publish_when_served(c) for c in channels), return_exceptions=True)
        heads = [r for r in results if isinstance(r, int)]
        assert len(heads) == len(channels), results
        assert all(head >= 2 for head in heads)  # the seq survived the restart (AOF)
        await eventually(
            lambda: all(recorder.seqs(c) == list(range(1, head + 1)) for c, head in zip(channels, heads, strict=True)),
            5,
            "every event, in order, without holes",
        )
    finally:
        await parts.close()


@pytest.mark.redis
async def test_broker_notices_a_server_that_stops_answering(restartable_redis: RedisServer) -> None:
    parts = Parts(Backend("redis", restartable_redis.url))
    assert restartable_redis.proc is not None
    pid = restartable_redis.proc.pid
    try:
        broker, recorder = await parts.broker(**FAST)
        await recorder.listen(broker, CH)
        os.kill(pid, signal.SIGSTOP)  # the connection stays open; nothing answers: only PING can tell
        try:
            started = time.monotonic()
            await eventually(lambda: not broker.healthy, 3, "the health check to fail")
            assert time.monotonic() - started < 2
        finally:
            os.kill(pid, signal.SIGCONT)
        await eventually(lambda: broker.healthy, 10, "the broker to come back")
        assert await broker.publish(CH, speech(1), history=True) == 1
        await recorder.wait_for(CH, 1)
    finally:
        await parts.close()


async def test_broker_start_fails_fast_when_redis_is_unreachable() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    broker = RedisBroker(RedisConn(url), RedisKeys("test"))
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        await broker.start(Recorder())
    await broker.close()
    assert time.monotonic() - started < 3
    assert isinstance(caught.value, ConnectionError)
    message = str(caught.value)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in message and "hunter2" not in message


@pytest.mark.redis
async def test_broker_in_a_cluster_reads_every_primary(request: pytest.FixtureRequest) -> None:
    cluster: Cluster = request.getfixturevalue("redis_cluster")
    parts = Parts(backend_for(request, "cluster"))
    try:
        broker, recorder = await parts.broker()
        channels = [f"th:hall{i}" for i in range(30)]
        for channel in channels:
            await recorder.listen(broker, channel)
        keys = RedisKeys(parts.backend.prefix)
        per_node = []
        for node in cluster.nodes:
            with node.client() as admin:
                per_node.append(set(admin.execute_command("PUBSUB", "SHARDCHANNELS", f"{keys.prefix}:*")))
        assert all(per_node), "every primary carries some of the channels"
        assert set().union(*per_node) == {keys.channel(c).pub.encode() for c in channels}
        await asyncio.gather(*(broker.publish(c, speech(1), history=True) for c in channels))
        await eventually(lambda: all(recorder.seqs(c) == [1] for c in channels), 5, "one event on every channel")
    finally:
        await parts.close()


async def test_broker_publish_is_one_spublish_whatever_the_subscribers(
    parts: Parts, backend: Backend, request: pytest.FixtureRequest
) -> None:
    broker, recorder = await parts.broker()
    await recorder.listen(broker, CH)
    await broker.subscribe(CH)  # the node never subscribes twice, but if it did, still one subscription
    pub = RedisKeys(backend.prefix).channel(CH).pub
    # Only the primary that owns the channel's slot has its subscriber: exactly one, this node's reader.
    [owner] = [s for s in servers(request, backend) if _subscribers(s, pub)]
    with owner.client() as admin:
        assert _subscribers(owner, pub) == 1
        before = _calls(admin, "spublish")
    for i in range(10):
        await broker.publish(CH, speech(i), history=True)
    await broker.publish(CH, {"t": "votes", "v": {}}, history=False)
    await recorder.wait_for(CH, 11)
    with owner.client() as admin:
        assert _calls(admin, "spublish") - before == 11


def _subscribers(server: RedisServer, channel: str) -> int:
    with server.client() as admin:
        return int(admin.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])


def _calls(admin: redis.Redis, command: str) -> int:
    stats = admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
