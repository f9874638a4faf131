"""Joins on a real Valkey share their reads (join_reads.py, issue 19): many joins at once cost a few Redis commands
each, not seven; every one of them still gets a correct snapshot, a banned user among them is still refused, and a
join while Redis is down ends in the documented 1013."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from jansamvad.models import Restriction, RestrictionKind, now_ms
from jansamvad.protocol.codes import CloseCode
from jansamvad.server import RunningServer
from tests.contract.support import eventually
from tests.helpers import Session, joined, make_hall
from tests.redis_servers import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.timeout(60)]

MakeServer = Callable[..., Awaitable[RunningServer]]
JOINS = 60


def commands_processed(server: RedisServer) -> int:
    with server.client() as client:
        info: dict[str, Any] = client.info("stats")
        return int(info["total_commands_processed"])


async def open_all(node: RunningServer, count: int) -> list[Session]:
    return list(await asyncio.gather(*(Session.open(node, "json") for _ in range(count))))


async def test_join_batching_many_joins_at_once_share_reads_and_get_correct_snapshots(
    make_server: MakeServer, redis_standalone: RedisServer
) -> None:
    node = await make_server(redis_url=redis_standalone.url, redis_prefix="join-batch-" + str(now_ms()))
    hall = await make_hall(node)
    leader = await joined(node, hall.leader)
    moderator = await joined(node, hall.moderator)
    await leader.request({"t": "go_live"})
    for k in range(3):
        await leader.request({"t": "speech", "text": f"वाक्य {k}", "final": True})
    asker = await joined(node, hall.citizen_token(sub="c-asker"))
    asked = await asker.request({"t": "ask", "key": "key-0001", "text": "सड़क कब बनेगी?"})
    await moderator.recv_until(lambda m: m["t"] == "queue_add")
    await moderator.request({"t": "moderate", "qid": asked["qid"], "action": "approve"})
    head = (await leader.recv_until(lambda m: m["t"] == "question"))["seq"]
    now = now_ms()
    await node.node.store.restrict(Restriction("c-banned", RestrictionKind.BAN, 0, hall.th, "m-mod", "spam", now))

    sessions = await open_all(node, JOINS)  # upgraded, not joined: the hellos below arrive together
    before = commands_processed(redis_standalone)
    subs = ["c-banned" if i == 7 else f"c-{i}" for i in range(JOINS)]
    await asyncio.gather(
        *(s.send({"t": "hello", "token": hall.citizen_token(sub=sub)}) for s, sub in zip(sessions, subs, strict=True))
    )
    results: list[Any] = []
    for session, sub in zip(sessions, subs, strict=True):
        if sub == "c-banned":
            results.append(await session.expect_close())
            continue
        welcome = await session.recv()
        snapshot = await session.recv()
        results.append((welcome, snapshot))
    commands = commands_processed(redis_standalone) - before

    assert results[7][0] == CloseCode.BANNED
    for i, result in enumerate(results):
        if i == 7:
            continue
        welcome, snapshot = result
        assert welcome["t"] == "welcome" and welcome["seq"] == head and welcome["status"] == "live"
        assert snapshot["t"] == "snapshot" and snapshot["seq"] == head
        assert [s["text"] for s in snapshot["speech"]] == ["वाक्य 0", "वाक्य 1", "वाक्य 2"]
        assert [q["qid"] for q in snapshot["questions"]] == [asked["qid"]]
    # One by one, a citizen's join was 7 commands (town hall, 2 restriction GETs, history, questions, polls,
    # reactions). Batched, the joins of a moment share them; the presence and roll-up ticks add a few.
    assert commands < 2 * JOINS, f"{commands} Redis commands for {JOINS} joins"
    # Everyone is counted, and the room goes on live after the batched snapshot: the next speech reaches all.
    said = await leader.request({"t": "speech", "text": "सब जुड़ गए", "final": True})
    live = [s for i, s in enumerate(sessions) if i != 7]
    for session in live:
        speech = await session.recv_until(lambda m: m["t"] == "speech")
        assert speech["seq"] == said["seq"] == head + 1
    # Every citizen is counted: the asker and the joins but the banned one.
    await eventually(lambda: node.node.aggregates.audience(hall.th)["n"] == JOINS, 5, "presence to count everyone")


async def test_join_batching_joins_while_redis_is_down_close_with_1013_then_join_again(
    make_server: MakeServer, restartable_redis: RedisServer
) -> None:
    node = await make_server(redis_url=restartable_redis.url, redis_prefix="join-outage", join_timeout_s=3.0)
    hall = await make_hall(node)
    sessions = await open_all(node, 10)
    restartable_redis.stop()
    await asyncio.gather(
        *(s.send({"t": "hello", "token": hall.citizen_token(sub=f"c-{i}")}) for i, s in enumerate(sessions))
    )
    codes = [(await s.expect_close(10))[0] for s in sessions]
    assert codes == [CloseCode.TRY_AGAIN_LATER] * 10

    await asyncio.to_thread(restartable_redis.start)
    await eventually(lambda: node.node.broker.healthy, 10, "the broker to reconnect")
    again = await open_all(node, 5)
    await asyncio.gather(
        *(s.send({"t": "hello", "token": hall.citizen_token(sub=f"c-{i}")}) for i, s in enumerate(again))
    )
    for session in again:
        assert (await session.recv(5))["t"] == "welcome"
        assert (await session.recv(5))["t"] == "snapshot"
