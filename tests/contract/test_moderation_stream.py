"""The moderation stream (`mseq`) and the join's bound, kept from the client side.

- Notices (queue_add, queue_update, claim_update) are numbered 1, 2, 3 … per town hall, from the head in welcome.
- A moderator who reconnects with last_seq and last_mseq gets what was missed once, in order; too old: a snapshot.
- A moderator who stays connected through a Redis restart sees every acknowledged question exactly once, also those
  acknowledged after Redis came back and before the node had subscribed again (they are filled from history).
- A resent ask answered `dup` publishes the notice that the first attempt stored the question for but never published.
- A hello always ends, within join_timeout: welcome or a close 1013, also right after Redis returns and while it hangs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from jansamvad.redis_keys import RedisKeys
from jansamvad.server import RunningServer
from tests.contract.support import eventually
from tests.helpers import Session, joined, make_hall
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.anyio

MakeServer = Callable[..., Awaitable[RunningServer]]
# Many questions from one loopback address in a few seconds: the per-citizen and per-IP limits are not under test.
UNLIMITED = {
    "ask_per_minute": 100_000,
    "ask_per_minute_per_ip": 100_000,
    "citizen_msgs_per_s": 1_000.0,
    "citizen_msg_burst": 1_000,
}


def is_notice(message: dict[str, Any]) -> bool:
    return message["t"] in ("queue_add", "queue_update", "claim_update")


async def notices(session: Session, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    return [await session.recv_until(is_notice, timeout, skipped=True) for _ in range(count)]


async def test_modstream_notices_are_numbered_from_the_head_in_welcome(server: RunningServer) -> None:
    hall = await make_hall(server)
    moderator = await Session.open(server)
    welcome, snapshot = await moderator.hello(hall.moderator)
    assert welcome["mseq"] == 0 and snapshot is not None and snapshot["mseq"] == 0 and snapshot["queue"] == []
    citizen = await joined(server, hall.citizen_token())
    asked = await citizen.request({"t": "ask", "key": "key-0001", "text": "पानी कब आएगा?"})
    claimed = await moderator.request({"t": "claim", "qid": asked["qid"]})
    assert claimed["t"] == "ack"
    await moderator.request({"t": "moderate", "qid": asked["qid"], "action": "approve"})
    got = await notices(moderator, 3)
    assert [(m["t"], m["mseq"]) for m in got] == [("queue_add", 1), ("claim_update", 2), ("queue_update", 3)]
    # A citizen never sees the moderation stream.
    public = await citizen.recv_until(lambda m: m["t"] == "question")
    assert "mseq" not in public
    late = await Session.open(server)
    welcome, snapshot = await late.hello(hall.moderator)
    assert welcome["mseq"] == 3 and snapshot is not None and snapshot["mseq"] == 3


async def test_modstream_moderator_resumes_with_last_mseq_and_gets_missed_notices_once(server: RunningServer) -> None:
    hall = await make_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token())
    first = await citizen.request({"t": "ask", "key": "key-0001", "text": "पहला सवाल"})
    [added] = await notices(moderator, 1)
    assert added["mseq"] == 1 and added["q"]["qid"] == first["qid"]
    await moderator.close()
    second = await citizen.request({"t": "ask", "key": "key-0002", "text": "दूसरा सवाल"})
    other = await joined(server, hall.admin, th=hall.th)
    await other.request({"t": "claim", "qid": first["qid"]})

    again = await Session.open(server)
    welcome, snapshot = await again.hello(hall.moderator, last_seq=0, last_mseq=1)
    assert welcome["recovered"] is True and snapshot is None and welcome["mseq"] == 3
    missed = await notices(again, 2)
    assert [(m["t"], m["mseq"]) for m in missed] == [("queue_add", 2), ("claim_update", 3)]
    assert missed[0]["q"]["qid"] == second["qid"] and missed[1]["by"] == "a-admin"
    # Then live, without a repeat of what the replay carried.
    third = await citizen.request({"t": "ask", "key": "key-0003", "text": "तीसरा सवाल"})
    [live] = await notices(again, 1)
    assert (live["mseq"], live["q"]["qid"]) == (4, third["qid"])


async def test_modstream_moderator_gets_a_snapshot_when_last_mseq_left_the_history(make_server: MakeServer) -> None:
    server = await make_server(history_size=10, **UNLIMITED)
    hall = await make_hall(server)
    citizen = await joined(server, hall.citizen_token())
    acks = [await citizen.request({"t": "ask", "key": f"key-{i:04d}", "text": f"सवाल {i}"}) for i in range(12)]
    asked = [ack["qid"] for ack in acks if ack["state"] == "pending"]  # auto-moderation holds back repeats
    moderator = await Session.open(server)
    welcome, snapshot = await moderator.hello(hall.moderator, last_seq=0, last_mseq=1)
    assert welcome["recovered"] is False and snapshot is not None
    assert snapshot["mseq"] == 12 and [q["qid"] for q in snapshot["queue"]] == asked
    # A last_mseq ahead of the stream (the stream was reset) also gets a snapshot.
    ahead = await Session.open(server)
    welcome, snapshot = await ahead.hello(hall.moderator, last_seq=0, last_mseq=99)
    assert welcome["recovered"] is False and snapshot is not None and snapshot["mseq"] == 12


# On real Redis


@pytest.mark.redis
async def test_modstream_resent_ask_publishes_the_notice_its_first_attempt_could_not(
    make_server: MakeServer, restartable_redis: RedisServer
) -> None:
    server = await make_server(redis_url=restartable_redis.url, redis_prefix="resend")
    hall = await make_hall(server)
    moderator = await joined(server, hall.moderator)
    citizen = await joined(server, hall.citizen_token())
    # The question is stored, then publishing its notice fails: the moderation stream's counter is not a number.
    seq_key = RedisKeys("resend").channel(f"th:{hall.th}:mod").seq
    with restartable_redis.client() as admin:
        admin.set(seq_key, "not-a-number")
    failed = await citizen.request({"t": "ask", "key": "key-0001", "text": "क्या कोई सुन रहा है?"})
    assert failed["t"] == "error", failed
    with restartable_redis.client() as admin:
        admin.delete(seq_key)
    resent = await citizen.request({"t": "ask", "key": "key-0001", "text": "क्या कोई सुन रहा है?"})
    assert resent["t"] == "ack" and resent["dup"] is True
    [added] = await notices(moderator, 1)
    assert (added["t"], added["mseq"], added["q"]["qid"]) == ("queue_add", 1, resent["qid"])
    # Once only: another resend publishes nothing more.
    assert (await citizen.request({"t": "ask", "key": "key-0001", "text": "क्या कोई सुन रहा है?"}))["dup"] is True
    with pytest.raises(TimeoutError):
        await moderator.recv_until(is_notice, 0.5)


class Asker:
    """Citizens on one node who each ask once and resend with the same key until acknowledged (the client's rule)."""

    def __init__(self, sessions: list[Session]) -> None:
        self.sessions = sessions
        self.acked: list[str] = []
        self.unavailable = 0
        self.n = 0

    async def ask_one(self) -> str:
        session = self.sessions[self.n % len(self.sessions)]
        key = f"outage-{self.n:05d}"
        self.n += 1
        for _ in range(200):  # bounded: 200 × 50 ms
            reply = await session.request({"t": "ask", "key": key, "text": f"सवाल {key}"})
            if reply["t"] == "ack":
                self.acked.append(reply["qid"])
                return str(reply["qid"])
            assert reply["code"] in ("unavailable", "internal"), reply
            self.unavailable += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key} was never acknowledged")


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_modstream_connected_moderator_sees_every_acked_question_once_across_redis_restarts(
    make_server: MakeServer, restartable_redis: RedisServer
) -> None:
    options = {"redis_url": restartable_redis.url, "redis_prefix": "modstream", **UNLIMITED}
    node_a = await make_server(**options)  # the moderator's node
    node_b = await make_server(**options)  # the citizens' node
    hall = await make_hall(node_a)
    moderator = await joined(node_a, hall.moderator)
    asker = Asker([await joined(node_b, hall.citizen_token(sub=f"c-{i}")) for i in range(4)])
    broker_a = node_a.node.broker
    in_window = 0  # questions acknowledged while node A's subscriber was not back yet: what the test is about
    for _outage in range(3):  # the window is random (the subscriber's backoff has jitter): a few outages at most
        restartable_redis.stop()
        await eventually(lambda: not broker_a.healthy, 5, "node A to notice the outage")
        resent = asyncio.create_task(asker.ask_one())  # answered `unavailable` until Redis is back, then acked
        await asyncio.sleep(3)  # long enough for the subscriber's reconnect backoff to grow to its 2 s ceiling
        await asyncio.to_thread(restartable_redis.start)
        await resent
        async with asyncio.timeout(15):
            while not broker_a.healthy:
                await asker.ask_one()
                in_window += not broker_a.healthy
        for _ in range(3):
            await asker.ask_one()
        if in_window:
            break
    assert in_window, "no question was acknowledged between Redis' return and node A's resubscription"

    seen: Counter[str] = Counter()
    mseqs: list[int] = []
    async with asyncio.timeout(15):
        while not set(asker.acked) <= set(seen):
            message = await moderator.recv_until(is_notice, 15, skipped=True)
            mseqs.append(message["mseq"])
            if message["t"] == "queue_add":
                seen[message["q"]["qid"]] += 1
            elif message["t"] == "queue_update" and message["by"] == "auto":  # rejected by auto-moderation
                seen[message["qid"]] += 1
    with pytest.raises(TimeoutError):  # and nothing more: no notice twice
        message = await moderator.recv_until(is_notice, 0.5)
    assert seen == Counter(asker.acked), "every acknowledged question once in the live queue"
    assert mseqs == list(range(1, len(mseqs) + 1))
    print(f"\n{len(asker.acked)} questions acked over the outages, {in_window} in the resubscribe window")


async def hello_ends(server: RunningServer, token: str, bound: float) -> tuple[str, float]:
    """Send hello; return ("welcome" or the close code, seconds it took). Fails if neither comes within `bound`."""
    session = await Session.open(server)
    started = time.monotonic()
    await session.send({"t": "hello", "token": token})
    try:
        async with asyncio.timeout(bound):
            while True:
                message = await session.recv(bound)
                assert message["t"] != "error", f"a join answered with an error, not welcome or a close: {message}"
                if message["t"] == "welcome":
                    await session.close()
                    return "welcome", time.monotonic() - started
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return str(exc.rcvd.code), time.monotonic() - started
    except TimeoutError:
        raise AssertionError(f"no welcome and no close within {bound} s") from None


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_join_ends_in_welcome_or_1013_right_after_redis_returns(
    make_server: MakeServer, restartable_redis: RedisServer
) -> None:
    server = await make_server(redis_url=restartable_redis.url, redis_prefix="join", join_timeout_s=2.0)
    hall = await make_hall(server)  # nobody listens to it on this node: a hello must subscribe
    broker = server.node.broker
    endings: Counter[str] = Counter()
    in_window = 0
    for _outage in range(3):
        restartable_redis.stop()
        await eventually(lambda: not broker.healthy, 5, "the node to notice the outage")
        ending, _ = await hello_ends(server, hall.moderator, 3.0)
        assert ending == "1013"
        await asyncio.sleep(3)  # long enough for the subscriber's reconnect backoff to grow to its 2 s ceiling
        await asyncio.to_thread(restartable_redis.start)
        async with asyncio.timeout(15):
            while not broker.healthy:
                ending, took = await hello_ends(server, hall.moderator, 3.0)
                endings[ending] += 1
                in_window += 1
        if in_window:
            break
    assert in_window, "no hello between Redis' return and the node's resubscription"
    assert set(endings) <= {"welcome", "1013"}, endings
    # Once the node is back, joins succeed, and nobody is left in a room from the failed ones.
    assert (await hello_ends(server, hall.moderator, 3.0))[0] == "welcome"
    await eventually(lambda: not server.node.hub.rooms, 5, "the rooms of the closed sessions to go")
    print(f"\nhellos in the window: {dict(endings)}")


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_join_ends_in_1013_within_join_timeout_while_redis_is_hung(
    make_server: MakeServer, restartable_redis: RedisServer
) -> None:
    server = await make_server(redis_url=restartable_redis.url, redis_prefix="hung", join_timeout_s=1.5)
    hall = await make_hall(server)
    listener = await joined(server, hall.citizen_token(sub="c-listener"))  # one room already subscribed
    assert restartable_redis.proc is not None
    pid = restartable_redis.proc.pid
    os.kill(pid, signal.SIGSTOP)  # Redis hangs: accepts nothing, answers nothing
    try:
        for token in (hall.moderator, hall.citizen_token(sub="c-new")):
            ending, took = await hello_ends(server, token, 1.5 + 1.0)
            assert ending == "1013", ending
            print(f"\nhello while Redis is stopped: {ending} after {took:.2f} s")
    finally:
        os.kill(pid, signal.SIGCONT)
    async with asyncio.timeout(20):
        while (await hello_ends(server, hall.moderator, 3.0))[0] != "welcome":
            await asyncio.sleep(0.2)
    await listener.close()
