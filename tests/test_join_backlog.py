"""The Retry-After of a 503 `joining` grows with the clients waiting outside (join_backlog.py; docs/protocol.md 10)."""

from __future__ import annotations

from jansamvad.join_backlog import RETRY_MAX_S, RETRY_MIN_S, JoinBacklog


def window(backlog: JoinBacklog, start: float, joins: int, refusals: int) -> list[int]:
    """One second of a node: `joins` welcomes and `refusals` handshakes turned away, spread over it."""
    told = []
    for i in range(max(joins, refusals)):
        at = start + i / max(joins, refusals, 1) * 0.99
        if i < joins:
            backlog.joined(at)
        if i < refusals:
            told.append(backlog.refuse(at))
    return told


def test_join_backlog_retry_after_is_one_second_before_any_storm() -> None:
    backlog = JoinBacklog(now=0.0)
    assert backlog.refuse(0.5) == RETRY_MIN_S


def test_join_backlog_retry_after_grows_to_half_the_time_the_queue_needs() -> None:
    """5,000 clients wait while the node joins 1,000 a second: come back in about 2.5 s (half the 5 s the queue needs),
    not every second; the answer at most doubles a second while the join rate ramps up."""
    backlog = JoinBacklog(now=0.0)
    assert set(window(backlog, 0.0, joins=1_000, refusals=5_000)) == {1}  # all 5,000 knock every second
    told = window(backlog, 1.0, joins=1_000, refusals=2_500)  # now every 2 s
    assert told[0] == 2 and backlog.waiting == 5_000 and backlog.joins_per_s == 1_000
    told = window(backlog, 2.0, joins=1_000, refusals=2_000)  # the estimate holds (Little's law): not back to 1
    assert told[0] == 3 and backlog.waiting == 5_000


def test_join_backlog_retry_after_returns_to_one_second_once_the_queue_is_gone() -> None:
    backlog = JoinBacklog(now=0.0)
    window(backlog, 0.0, joins=500, refusals=4_000)
    assert backlog.refuse(1.0) == 2
    window(backlog, 1.0, joins=500, refusals=0)  # the last window turned nobody away but the first
    window(backlog, 2.0, joins=500, refusals=0)
    assert backlog.refuse(3.0) == RETRY_MIN_S


def test_join_backlog_retry_after_is_bounded_when_joins_stall() -> None:
    """Joins that do not finish (Redis hung): the wait doubles a second up to a bound, so clients come back to a
    healed node."""
    backlog = JoinBacklog(now=0.0)
    told = [window(backlog, float(second), joins=0, refusals=2_000)[0] for second in range(6)]
    assert told == [1, 2, 4, 8, RETRY_MAX_S, RETRY_MAX_S]
