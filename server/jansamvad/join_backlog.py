"""The Retry-After of a 503 `joining` (issue 19): the wait a storm's clients are told grows with the queue outside.

When `max_joining` sessions are between their upgrade and their `welcome`, the gateway turns the next handshake away
with HTTP 503. A fixed `Retry-After: 1` makes every client of a storm knock again every second: 30,000 clients
waiting for a node that joins 2,000 a second cost it 30,000 refused handshakes a second (each one an accept, a
request parsed, a 503 written), more CPU than the joins themselves, and the clients as much again.

So the gateway tells each client about half the time the queue outside needs to drain: the clients waiting divided
by the joins a second this process completes. Neither is known exactly; both are measured over the last window:
- joins a second: the welcomes sent in the window;
- clients waiting outside (Little's law): each client turned away waits the Retry-After it was told (the client's
  jitter, x0.5-1.5, averages out), so the Retry-After seconds told in the window, divided by the window, is the
  number of clients that were waiting on average. This stays right while the Retry-After itself changes.
The answer is bounded by RETRY_MIN_S and RETRY_MAX_S: a client that waits too long leaves the node idle, one that
comes back too early only costs another 503. docs/protocol.md (section 10) says the same.
"""

from __future__ import annotations

import math

RETRY_MIN_S = 1
RETRY_MAX_S = 10  # x1.5 jitter: 15 s, half the 30 s a storm has to be back in (issue 19)
WINDOW_S = 1.0


class JoinBacklog:
    """Counts welcomes and refusals per window and turns them into the Retry-After of the next refusals."""

    __slots__ = ("started", "_joined", "_told_s", "retry_after", "waiting", "joins_per_s")

    def __init__(self, now: float = 0.0) -> None:
        self.started = now  # the window's start (loop time; the gateway sets it when it starts)
        self._joined = 0
        self._told_s = 0  # Retry-After seconds told in this window
        self.retry_after = RETRY_MIN_S  # what a refusal is told now
        self.waiting = 0.0  # clients waiting outside, estimated over the last window
        self.joins_per_s = 0.0  # welcomes a second over the last window

    def joined(self, now: float) -> None:
        """A session got its welcome."""
        self._roll(now)
        self._joined += 1

    def refuse(self, now: float) -> int:
        """A handshake is turned away because the joins in flight are at max_joining: its Retry-After."""
        self._roll(now)
        self._told_s += self.retry_after
        return self.retry_after

    def _roll(self, now: float) -> None:
        elapsed = now - self.started
        if elapsed < WINDOW_S:
            return
        self.waiting = self._told_s / elapsed
        self.joins_per_s = self._joined / elapsed
        drain_s = self.waiting / max(self.joins_per_s, 1.0)
        # Half the drain time: with the client's jitter the clients come back over 0.25-0.75 of it, so the door never
        # stands idle while some still wait outside; those turned away again are told the (shorter) rest. At most
        # twice the last answer: in the first second of a storm the joins have only begun to finish, and the rate
        # measured then is far below what the process does a second later.
        wanted = math.ceil(drain_s / 2)
        self.retry_after = min(RETRY_MAX_S, 2 * self.retry_after, max(RETRY_MIN_S, wanted))
        self.started, self._joined, self._told_s = now, 0, 0
