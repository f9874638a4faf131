"""Whole nodes on Redis: several nodes serve one town hall; one broker message per event per node; outages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from jansamvad.models import PollState
from jansamvad.redis_conn import RedisConn, RedisUnavailable
from jansamvad.redis_keys import RedisKeys
from jansamvad.server import RunningServer, start_server
from tests.contract.conftest import REDIS_BACKENDS, Backend, backend_for
from tests.contract.support import eventually
from tests.helpers import Session, joined, make_hall, node_settings
from tests.redis_servers import Cluster, RedisServer, free_port

pytestmark = pytest.mark.anyio

MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(params=REDIS_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return backend_for(request, request.param)


def on_redis(backend: Backend) -> dict[str, Any]:
    return {"redis_url": backend.url, "redis_prefix": backend.prefix}


async def test_node_two_nodes_serve_one_townhall(make_server: MakeServer, backend: Backend) -> None:
    node_a = await make_server(**on_redis(backend))
    node_b = await make_server(**on_redis(backend))
    hall = await make_hall(node_a)  # stored in Redis, so node B knows it too
    leader = await joined(node_b, hall.leader)
    moderator = await joined(node_b, hall.moderator)
    citizen = await Session.open(node_a)
    welcome, _ = await citizen.hello(hall.citizen_token(sub="c-on-a"))
    assert welcome["th"] == hall.th and welcome["status"] == "scheduled"
    other = await joined(node_b, hall.citizen_token(sub="c-on-b"))

    live = await leader.request({"t": "go_live"})
    said = await leader.request({"t": "speech", "text": "नमस्ते"})
    assert (live["seq"], said["seq"]) == (1, 2)
    for session in (citizen, other):
        status = await session.recv_until(lambda m: m["t"] == "status")
        speech = await session.recv_until(lambda m: m["t"] == "speech")
        assert (status["seq"], speech["seq"], speech["text"]) == (1, 2, "नमस्ते")

    asked = await citizen.request({"t": "ask", "key": "key-0001", "text": "सड़क कब बनेगी?"})
    queued = await moderator.recv_until(lambda m: m["t"] == "queue_add")
    assert queued["q"]["qid"] == asked["qid"]
    await moderator.request({"t": "moderate", "qid": asked["qid"], "action": "approve"})
    public = await citizen.recv_until(lambda m: m["t"] == "question")
    assert public["q"]["qid"] == asked["qid"] and public["seq"] == 3

    # Votes from both nodes land on one question; each citizen counts once; the asker's own vote is refused on
    # whichever node it comes from (the store knows the asker).
    third = await joined(node_a, hall.citizen_token(sub="c-third"))
    assert (await other.request({"t": "upvote", "qid": asked["qid"]}))["votes"] == 1
    assert (await third.request({"t": "upvote", "qid": asked["qid"]}))["votes"] == 2
    assert (await third.request({"t": "upvote", "qid": asked["qid"]}))["dup"] is True
    assert (await citizen.request({"t": "upvote", "qid": asked["qid"]}))["code"] == "own_question"
    asker_on_b = await joined(node_b, hall.citizen_token(sub="c-on-a"))
    assert (await asker_on_b.request({"t": "upvote", "qid": asked["qid"]}))["code"] == "own_question"
    await asker_on_b.close()

    # Viewers are summed over the nodes: three citizens (viewers.n), and a leader and a moderator (viewers.staff).
    await citizen.recv_until(lambda m: m["t"] == "viewers" and (m["n"], m["staff"]) == (3, 2), timeout=5, skipped=True)

    # A client of node A resumes on node B from where it was.
    await citizen.close()
    resumed = await Session.open(node_b)
    welcome, snapshot = await resumed.hello(hall.citizen_token(sub="c-on-a"), last_seq=1)
    assert welcome["recovered"] and snapshot is None
    replay = [await resumed.recv_until(lambda m: "seq" in m) for _ in range(2)]
    assert [m["seq"] for m in replay] == [2, 3]


async def test_node_end_closes_open_polls_with_final_counts_on_every_node(
    make_server: MakeServer, backend: Backend
) -> None:
    node_a = await make_server(**on_redis(backend))
    node_b = await make_server(**on_redis(backend))
    hall = await make_hall(node_a)
    leader = await joined(node_a, hall.leader)
    await leader.request({"t": "go_live"})
    pid = (await leader.request({"t": "poll_create", "question": "ठीक?", "options": ["हाँ", "नहीं"]}))["pid"]
    await leader.request({"t": "poll_open", "pid": pid})
    voters = [await joined(node, hall.citizen_token(sub=f"c-{i}")) for i, node in enumerate((node_a, node_b, node_b))]
    for voter, option in zip(voters, (0, 1, 1), strict=True):
        await voter.request({"t": "poll_vote", "pid": pid, "option": option})
    ended = await leader.request({"t": "end"})
    for voter in voters:  # on both nodes: the poll's final counts, then the end, then 4005
        poll = await voter.recv_until(lambda m: m["t"] in ("poll", "status") and m["seq"] > 2)
        assert (poll["t"], poll["p"]["state"], poll["p"]["counts"]) == ("poll", "closed", [1, 2])
        status = await voter.recv_until(lambda m: m["t"] == "status")
        assert (status["status"], status["seq"]) == ("ended", ended["seq"]) and poll["seq"] == ended["seq"] - 1
        assert (await voter.expect_close())[0] == 4005
    assert [p.state for p in await node_b.node.store.polls(hall.th, list(PollState))] == [PollState.CLOSED]


async def test_node_publishes_one_message_per_event_however_many_listeners(
    make_server: MakeServer, backend: Backend, request: pytest.FixtureRequest
) -> None:
    node = await make_server(**on_redis(backend))
    hall = await make_hall(node)
    leader = await joined(node, hall.leader)
    citizens = [await joined(node, hall.citizen_token(sub=f"c-{i}")) for i in range(20)]
    pub = RedisKeys(backend.prefix).channel(f"th:{hall.th}").pub
    servers: list[RedisServer] = (
        request.getfixturevalue("redis_cluster").nodes
        if backend.kind == "cluster"
        else [request.getfixturevalue("redis_standalone")]
    )
    counts = {}
    for server in servers:
        with server.client() as admin:
            counts[server.port] = int(admin.execute_command("PUBSUB", "SHARDNUMSUB", pub)[1])
    assert sorted(counts.values())[-1] == 1 and sum(counts.values()) == 1  # one subscription: the node's

    [owner] = [server for server in servers if counts[server.port]]
    with owner.client() as admin:
        before = int(admin.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0))
    ack = await leader.request({"t": "go_live"})
    for citizen in citizens:
        status = await citizen.recv_until(lambda m: m["t"] == "status")
        assert status["seq"] == ack["seq"]
    with owner.client() as admin:
        after = int(admin.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0))
    # One SPUBLISH for the event (the aggregates tick may add the odd viewers/reactions message, not 20).
    assert 1 <= after - before <= 3


async def test_node_fails_fast_when_redis_is_unreachable() -> None:
    settings = node_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at redis://127.0.0.1"):
        await asyncio.wait_for(start_server(settings), 5)


@pytest.mark.redis
async def test_node_is_not_ready_while_redis_is_down(make_server: MakeServer, restartable_redis: RedisServer) -> None:
    node = await make_server(redis_url=restartable_redis.url, redis_prefix="outage")
    hall = await make_hall(node)
    citizen = await joined(node, hall.citizen_token())

    async def ready() -> int:
        async with httpx.AsyncClient(base_url=node.base_url, timeout=5) as http:
            return (await http.get("/readyz")).status_code

    assert await ready() == 200
    restartable_redis.stop()
    await eventually(lambda: not node.node.broker.healthy, 5, "the broker to notice the outage")
    assert await ready() == 503
    error = await citizen.request({"t": "ask", "key": "key-0001", "text": "क्या कोई है?"})
    assert error["t"] == "error" and error["code"] == "unavailable" and error["retry_ms"] > 0

    await asyncio.to_thread(restartable_redis.start)
    await eventually(lambda: node.node.broker.healthy, 10, "the broker to reconnect")
    assert await ready() == 200
    ack = await citizen.request({"t": "ask", "key": "key-0001", "text": "क्या कोई है?"})  # the same key, resent
    assert ack["t"] == "ack" and "dup" not in ack


@pytest.mark.redis
async def test_node_finds_a_cluster_from_either_url_form(redis_cluster: Cluster, redis_standalone: RedisServer) -> None:
    """redis+cluster:// says so; a plain redis:// URL of any cluster node is detected; a standalone stays one."""
    for url, cluster in (
        (redis_cluster.url, True),
        (f"redis://127.0.0.1:{redis_cluster.nodes[1].port}", True),
        (redis_standalone.url, False),
    ):
        conn = RedisConn(url).retain()
        try:
            await conn.connect()
            assert conn.cluster is cluster
            assert len(conn.primaries()) == (3 if cluster else 1)
        finally:
            await conn.close()
