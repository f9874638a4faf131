"""The `viewers` count in a big room is paced (viewers_pace.py, docs/protocol.md section 5): every change in a small
quiet room, in a big one (or a small one growing faster than GROWING_PER_S a second) only a move of more than 1 %
after 5 s, any change after 10 s, or with an event of the tick."""

from __future__ import annotations

from typing import Any

import pytest

from jansamvad import viewers_pace
from jansamvad.channels import public_channel
from jansamvad.server import RunningServer
from jansamvad.viewers_pace import BIG_ROOM, BIG_ROOM_MAX_S, BIG_ROOM_MIN_S, GROWING_PER_S, viewers_due
from tests.helpers import joined, make_hall


def sent_at(server: RunningServer, th: str) -> float:
    """Loop time the town hall's room on this (in-process) node last sent a `viewers` count: the pacing's own clock."""
    return server.node.hub.rooms[public_channel(th)].viewers_sent_at


def test_viewers_pace_small_room_gets_every_change() -> None:
    assert viewers_due(BIG_ROOM, 100, 101, 0.0, with_event=False)


def test_viewers_pace_first_count_always_goes() -> None:
    assert viewers_due(BIG_ROOM * 10, None, 5, 0.0, with_event=False)


def test_viewers_pace_big_room_waits_for_a_move_and_time() -> None:
    big = BIG_ROOM * 5
    assert not viewers_due(big, 10_000, 10_050, BIG_ROOM_MIN_S + 1, with_event=False)  # 0.5 %: not yet
    assert not viewers_due(big, 10_000, 10_500, BIG_ROOM_MIN_S - 1, with_event=False)  # 5 %, too soon
    assert viewers_due(big, 10_000, 10_500, BIG_ROOM_MIN_S, with_event=False)
    assert viewers_due(big, 10_000, 9_000, BIG_ROOM_MIN_S, with_event=False)  # a fall counts too
    assert viewers_due(big, 10_000, 10_001, BIG_ROOM_MAX_S, with_event=False)  # any change, after the longest wait


def test_viewers_pace_big_room_count_rides_with_an_event() -> None:
    assert viewers_due(BIG_ROOM * 5, 10_000, 10_001, 0.1, with_event=True)


async def grown_count_waits(make_server: Any, monkeypatch: pytest.MonkeyPatch, *, before: int) -> None:
    """A room of `before` listeners gets one more: its new count must wait BIG_ROOM_MIN_S (1.5 s here) after the
    last one sent, though the node ticks every 0.1 s. Short waits, so that the pacing shows within a second or two."""
    monkeypatch.setattr(viewers_pace, "BIG_ROOM_MIN_S", 1.5)
    monkeypatch.setattr(viewers_pace, "BIG_ROOM_MAX_S", 3.0)
    server: RunningServer = await make_server(presence_interval_s=0.1)
    hall = await make_hall(server)
    watcher = await joined(server, hall.citizen_token(sub="c-watch"))
    for i in range(before - 1):
        await joined(server, hall.citizen_token(sub=f"c-{i}"))
    await watcher.recv_until(lambda m: m["t"] == "viewers" and m["n"] == before, skipped=True)
    started = sent_at(server, hall.th)  # when the node sent that count (the client may have read it much later)
    await joined(server, hall.citizen_token(sub="c-more"))
    grown = await watcher.recv_until(lambda m: m["t"] == "viewers", timeout=5)
    assert grown["n"] == before + 1
    assert sent_at(server, hall.th) - started >= 1.5  # an unpaced room would have had it within a tick


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_viewers_pace_big_room_on_a_node_sends_the_grown_count_late(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewers_pace, "BIG_ROOM", 2)  # a "big room" of 3 listeners, growing by a third
    await grown_count_waits(make_server, monkeypatch, before=3)


def test_viewers_pace_small_room_growing_fast_is_paced() -> None:
    small = BIG_ROOM // 10
    fast = GROWING_PER_S * 3  # citizens a second since the last count: the room fills at the start of a hall
    assert not viewers_due(small, 100, 100 + fast, 1.0, with_event=False)
    wait = BIG_ROOM_MIN_S - 1
    assert not viewers_due(small, 100, 100 + int(fast * wait), wait, with_event=False)
    assert viewers_due(small, 100, 100 + int(fast * BIG_ROOM_MIN_S), BIG_ROOM_MIN_S, with_event=False)  # one per 5 s
    assert viewers_due(small, 100, 100 + fast, 0.5, with_event=True)  # rides with an event, as in a big room


def test_viewers_pace_small_room_at_a_human_pace_gets_every_change() -> None:
    small = BIG_ROOM // 10
    assert viewers_due(small, 100, 100 + GROWING_PER_S, 1.0, with_event=False)
    assert viewers_due(small, 100, 100 - 3, 0.2, with_event=False)
    assert viewers_due(small, 100, 100 + 5 * GROWING_PER_S, 6.0, with_event=False)  # 100 in 6 s after a quiet spell


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_viewers_pace_fast_growing_small_room_on_a_node_waits(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A room of 2 listeners, far below BIG_ROOM, but growing "fast" (any change counts as fast growth here).
    monkeypatch.setattr(viewers_pace, "GROWING_PER_S", 0)
    await grown_count_waits(make_server, monkeypatch, before=1)
