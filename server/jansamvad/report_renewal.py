"""How long a node's presence and roll-up reports live in Redis, and how often a quiet node renews them.

Both reports expire `report_ttl_s` after their last write (a node that dies drops out within 3 ticks,
docs/protocol.md). A tick whose numbers did not change has nothing to write but the renewal: doing that every tick
was a third of a quiet node's CPU (issue 19), so an unchanged report is renewed only once it is half its lifetime
old. With the default 1 s tick (3 s lifetime) that is every second tick, and a renewal still lands a whole tick
before the report would expire; any change is written on the tick that sees it, as before.
"""

from __future__ import annotations

REPORT_TTL_TICKS = 3  # a report outlives this many ticks without a write
MIN_REPORT_TTL_S = 1.0


def report_ttl_s(presence_interval_s: float) -> float:
    """The lifetime of a node's presence and roll-up reports after their last write."""
    return max(REPORT_TTL_TICKS * presence_interval_s, MIN_REPORT_TTL_S)


def renew_after_s(presence_interval_s: float) -> float:
    """How old an unchanged report may get before a tick renews it."""
    return report_ttl_s(presence_interval_s) / 2
