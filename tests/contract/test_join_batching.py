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


OURS = frozenset({"cmdstat_info", "cmdstat_hello", "cmdstat_client|setinfo"})  # the test's own look at the server


def command_calls(server: RedisServer) -> dict[str, int]:
    """Calls per command so far (INFO commandstats)."""
    with server.client() as client:
        return {name: int(stat["calls"]) for name, stat in client.info("commandstats").items()}


def node_commands(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands the node sent between two readings, by name (the test's own INFO and connection left out)."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0) and k not in OURS}


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
    before = command_calls(redis_standalone)
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
    commands = node_commands(before, command_calls(redis_standalone))

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
    assert sum(commands.values()) < 2 * JOINS, f"Redis commands for {JOINS} joins: {commands}"
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


async def test_join_batching_a_later_join_reuses_reads_until_an_event_or_a_tick(
    make_server: MakeServer, redis_standalone: RedisServer
) -> None:
    # No aggregates tick during the test (presence every 60 s): only events may end a reuse.
    node = await make_server(
        redis_url=redis_standalone.url, redis_prefix="join-reuse-" + str(now_ms()), presence_interval_s=60.0
    )
    hall = await make_hall(node)
    leader = await joined(node, hall.leader)
    moderator = await joined(node, hall.moderator)
    await leader.request({"t": "go_live"})
    await joined(node, hall.citizen_token(sub="c-first"))

    before = command_calls(redis_standalone)
    session = await Session.open(node, "json")
    _, snapshot = await session.hello(hall.citizen_token(sub="c-second"))
    assert snapshot is not None and snapshot["status"] == "live" and snapshot["speech"] == []
    # Nothing happened since the first join's reads: only the restriction (2 MGETs) is read for this one.
    assert node_commands(before, command_calls(redis_standalone)) == {"cmdstat_mget": 2}

    said = await leader.request({"t": "speech", "text": "नई बात", "final": True})
    await session.recv_until(lambda m: m["t"] == "speech")  # handed on by this node: the kept reads are stale
    _, snapshot = await (await Session.open(node, "json")).hello(hall.citizen_token(sub="c-third"))
    assert snapshot is not None and snapshot["seq"] == said["seq"]
    assert [s["text"] for s in snapshot["speech"]] == ["नई बात"]

    asked = await session.request({"t": "ask", "key": "key-0002", "text": "पानी कब आएगा?"})
    await moderator.recv_until(lambda m: m["t"] == "queue_add")
    await moderator.request({"t": "moderate", "qid": asked["qid"], "action": "approve"})
    public = await session.recv_until(lambda m: m["t"] == "question")
    _, snapshot = await (await Session.open(node, "json")).hello(hall.citizen_token(sub="c-fourth"))
    assert snapshot is not None and snapshot["seq"] == public["seq"]
    assert [q["qid"] for q in snapshot["questions"]] == [asked["qid"]]

    await leader.request({"t": "end"})
    closed = await Session.open(node, "json")
    await closed.send({"t": "hello", "token": hall.citizen_token(sub="c-late")})
    assert (await closed.expect_close())[0] == CloseCode.TOWNHALL_ENDED


async def test_join_batching_resumes_at_once_replay_exactly_what_each_missed(
    make_server: MakeServer, redis_standalone: RedisServer
) -> None:
    node = await make_server(
        redis_url=redis_standalone.url, redis_prefix="join-resume-" + str(now_ms()), history_size=20
    )
    hall = await make_hall(node)
    leader = await joined(node, hall.leader)
    await leader.request({"t": "go_live"})
    for k in range(25):
        await leader.request({"t": "speech", "text": f"वाक्य {k}", "final": True})
    head = 26
    # Each resume missed a different stretch; the first one more than the history window (20) still holds.
    lasts = [1, *range(head - 19, head + 1)] * 2
    sessions = await open_all(node, len(lasts))
    before = command_calls(redis_standalone)
    await asyncio.gather(
        *(
            s.send({"t": "hello", "token": hall.citizen_token(sub=f"c-r{i}"), "last_seq": last})
            for i, (s, last) in enumerate(zip(sessions, lasts, strict=True))
        )
    )
    for session, last in zip(sessions, lasts, strict=True):
        welcome = await session.recv()
        assert welcome["t"] == "welcome" and welcome["seq"] == head
        if last == 1:  # past the window: a snapshot instead
            assert not welcome["recovered"] and (await session.recv())["t"] == "snapshot"
            continue
        assert welcome["recovered"]
        replay = [await session.recv() for _ in range(head - last)]
        assert [m["seq"] for m in replay] == list(range(last + 1, head + 1))
        assert [m["text"] for m in replay] == [f"वाक्य {seq - 2}" for seq in range(last + 1, head + 1)]
        assert [(await session.recv())["t"] for _ in range(2)] == ["viewers", "votes"]
    commands = node_commands(before, command_calls(redis_standalone))
    # One by one, a resume ran two scripts (history, top votes): 84 for these 42; the presence tick adds a few.
    scripts = commands.get("cmdstat_evalsha", 0) + commands.get("cmdstat_eval", 0)
    assert scripts < len(lasts) // 2, f"Redis commands for {len(lasts)} resumes: {commands}"
