"""The door of a worker that does not keep up (issue 19): no new upgrade while its oldest join in flight is late.

`max_joining` bounds the joins in flight by count. On a CPU-starved worker (a whole machine's reconnect storm on 2
cores: 8 workers and 12 client processes) 2,000 in flight take longer than `join_timeout` to finish: they are closed
with 1013 (or 4008, their hello read too late) after costing their upgrade and hello, and every one of them comes
back: 131,638 such closes in the 120,000 storm of docs/benchmarks.md. A door keyed to the measured join *rate* was
tried and fed on itself (fewer in, fewer welcomes a second, a narrower door: a 60,000 storm's first connect took
172 s instead of 37 s). This door is keyed to the joins' *age*: while the oldest join in flight whose hello the node
has read was upgraded more than LATE_FRACTION of `join_timeout` ago, a new upgrade gets HTTP 503 `joining_late` with
the queue's `Retry-After` (join_backlog.py). The door opens again as soon as the late joins are welcomed or closed;
a worker that keeps up never closes it, whatever its rate. A broker that hangs closes it too: the joins it holds
would end in 1013 as well.

Only joins whose hello was read count (`inbox` or `claims` set: conn_state.py). A socket that upgrades and never says
hello is the client's delay, bounded by `hello_timeout` and `max_unjoined_per_ip`; it must not hold the door shut
for everyone. Such a one is passed over for good once it is late.

Cost: one deque append per upgrade, and per admission, welcome and close a look at the front (amortized O(1): each
connection leaves the deque once). The upgrade's time is the loop's, taken here: not the connection's `opened_at`,
which is the keepalive wheel's coarse clock, and a starved worker's wheel turns late, so its ages would run ahead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jansamvad.connection import WsConnection

LATE_FRACTION = 0.5  # of join_timeout: a join admitted now would wait behind joins already this old


class JoinAges:
    """The citizen lane's joins in flight in the order of their upgrade; says whether the oldest read one is late."""

    __slots__ = ("_upgraded", "late_s")

    def __init__(self, join_timeout_s: float) -> None:
        self.late_s = LATE_FRACTION * join_timeout_s
        self._upgraded: deque[tuple[float, WsConnection]] = deque()  # (loop time of the upgrade, connection)

    def __len__(self) -> int:
        return len(self._upgraded)

    def upgraded(self, conn: WsConnection, now: float) -> None:
        """A citizen's upgrade was accepted at `now`: its join is in flight until its welcome or its close."""
        self._upgraded.append((now, conn))

    def prune(self, joining: Container[WsConnection]) -> None:
        """Let go of the joins at the front that are over (welcomed or closed): a storm's dropped connections are
        not held here until the next upgrade."""
        upgraded = self._upgraded
        while upgraded and upgraded[0][1] not in joining:
            upgraded.popleft()

    def late(self, now: float, joining: Container[WsConnection]) -> bool:
        """Whether the oldest join still in flight (in `joining`) whose hello was read is older than late_s."""
        upgraded = self._upgraded
        while upgraded:
            at, conn = upgraded[0]
            if conn in joining:
                if now - at <= self.late_s:
                    return False  # the oldest is on time, so is every younger one
                session = conn.client
                if session is not None and (session.inbox is not None or session.claims is not None):
                    return True
            upgraded.popleft()  # welcomed, closed, or silent past late_s: never looked at again
        return False
