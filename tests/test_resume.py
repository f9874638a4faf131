"""Resume with last_seq: every missed event once, in order, before live ones; a snapshot when the gap is too old."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jansamvad.models import Status
from jansamvad.server import RunningServer
from tests.helpers import Session, joined, make_hall

pytestmark = pytest.mark.anyio


async def speak(leader: Session, n: int, start: int = 0) -> list[int]:
    return [(await leader.request({"t": "speech", "text": f"वाक्य {start + i}"}))["seq"] for i in range(n)]


async def test_resume_replays_missed_events_in_order_without_duplicates(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    citizen = await joined(server, hall.citizen_token())
    await speak(leader, 3)
    seen = [(await citizen.recv_until(lambda m: m["t"] == "speech"))["seq"] for _ in range(3)]
    await citizen.close()
    missed = await speak(leader, 5, start=3)
    again = await Session.open(server)
    welcome, snapshot = await again.hello(hall.citizen_token(), last_seq=seen[-1])
    assert welcome["recovered"] is True and snapshot is None and welcome["seq"] == missed[-1]
    replay = [await again.recv() for _ in range(5)]
    assert [m["seq"] for m in replay] == missed
    assert [m["text"] for m in replay] == [f"वाक्य {i}" for i in range(3, 8)]
    viewers = await again.recv()
    assert viewers["t"] == "viewers"


async def test_resume_live_events_during_replay_are_neither_lost_nor_doubled(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    first = await speak(leader, 20)
    # Speak while the new session is joining: its replay and the live stream overlap.
    speaking = asyncio.get_running_loop().create_task(speak(leader, 20, start=20))
    again = await Session.open(server)
    await again.hello(hall.citizen_token(), last_seq=first[4])
    await speaking
    seqs: list[int] = []
    while len(seqs) < 35:
        message = await again.recv()
        if message["t"] == "speech":
            seqs.append(message["seq"])
    assert seqs == list(range(first[5], first[5] + 35))


async def test_resume_gap_older_than_history_gets_a_snapshot(make_server: Any) -> None:
    server = await make_server(history_size=10)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    seqs = await speak(leader, 30)
    session = await Session.open(server)
    welcome, snapshot = await session.hello(hall.citizen_token(), last_seq=2)
    assert welcome["recovered"] is False and snapshot is not None
    assert snapshot["seq"] == seqs[-1] and snapshot["status"] == "live"
    assert [s["seq"] for s in snapshot["speech"]] == seqs[-10:]


async def test_resume_last_seq_ahead_of_the_stream_gets_a_snapshot(server: RunningServer) -> None:
    hall = await make_hall(server)
    session = await Session.open(server)
    welcome, snapshot = await session.hello(hall.citizen_token(), last_seq=500)
    assert welcome["recovered"] is False and snapshot is not None and snapshot["seq"] == 0


async def test_resume_moderator_always_gets_the_queue_snapshot(server: RunningServer) -> None:
    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    citizen = await joined(server, hall.citizen_token())
    await citizen.request({"t": "ask", "key": "resume-q1", "text": "कतार में"})
    session = await Session.open(server)
    welcome, snapshot = await session.hello(hall.moderator, last_seq=0)
    assert welcome["recovered"] is False and snapshot is not None
    assert [q["text"] for q in snapshot["queue"]] == ["कतार में"]


async def test_resume_brings_votes_up_to_date(server: RunningServer) -> None:
    hall = await make_hall(server)
    moderator = await joined(server, hall.moderator)
    asker = await joined(server, hall.citizen_token(sub="c-asker"))
    qid = (await asker.request({"t": "ask", "key": "resume-q2", "text": "वोट"}))["qid"]
    await moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    voter = await joined(server, hall.citizen_token(sub="c-voter"))
    await voter.request({"t": "upvote", "qid": qid})
    session = await Session.open(server)
    welcome, _ = await session.hello(hall.citizen_token(sub="c-late"), last_seq=0)
    assert welcome["recovered"] is True
    votes = await session.recv_until(lambda m: m["t"] == "votes")
    assert votes["v"] == {qid: 1}


async def test_resume_join_frames_leave_in_one_write(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A join's own frames (welcome + snapshot, or welcome + replay + aggregates) are corked into one transport
    write: one syscall per join instead of one per frame."""
    from jansamvad.connection import WsConnection

    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    leader = await joined(server, hall.leader)
    seqs = await speak(leader, 3)
    writes: list[bytes] = []  # what reaches the transport: a frame sent uncorked, or everything held at uncork()
    real_send, real_uncork = WsConnection.send_frame, WsConnection.uncork

    def send_spy(self: WsConnection, frame: bytes) -> None:
        if self.corked is None and self.state.name == "OPEN":
            writes.append(frame)
        real_send(self, frame)

    def uncork_spy(self: WsConnection) -> None:
        if self.corked and self.state.name == "OPEN":
            writes.append(b"".join(self.corked))
        real_uncork(self)

    monkeypatch.setattr(WsConnection, "send_frame", send_spy)
    monkeypatch.setattr(WsConnection, "uncork", uncork_spy)
    fresh = await Session.open(server)
    welcome, snapshot = await fresh.hello(hall.citizen_token(sub="c-fresh"))
    assert welcome["t"] == "welcome" and snapshot is not None and snapshot["seq"] == seqs[-1]
    assert len(writes) == 1  # welcome and snapshot in one write

    writes.clear()
    again = await Session.open(server)
    welcome, _ = await again.hello(hall.citizen_token(sub="c-again"), last_seq=seqs[0])
    assert welcome["recovered"] is True
    replay = [await again.recv_until(lambda m: m.get("t") == "speech") for _ in range(2)]
    assert [m["seq"] for m in replay] == seqs[1:]
    assert len(writes) == 1  # welcome, the two missed speeches and the viewer count in one write
