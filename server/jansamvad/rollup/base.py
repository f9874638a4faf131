"""The Rollup interface: nodes write what changed per region unit once per aggregates tick, each unit's counts already
summed up its ancestors by the node (rollup/tally.py); the dashboard reads only the units it shows (a unit and its
children), so a read costs the size of one screen, not of the tree.

Viewers are a node's own citizens per unit, sent as absolute numbers for the units that changed: a node that dies
stops renewing its report and its viewers drop out of the totals (like presence). The activity counters (asked,
approved, reactions, votes) are cumulative per town hall: a question asked stays asked when its node dies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

UNKNOWN_UNIT = "unknown"  # where citizens without a unit in their token (no `ru`) are counted
# The activity counters: sessions that joined (reach), questions asked, approve decisions, reactions, poll votes (a
# citizen's first vote in a poll).
ACTIVITY = ("joins", "asked", "approved", "reactions", "votes")
COUNTERS = ("viewers", *ACTIVITY)

UnitCounts = dict[str, dict[str, int]]  # unit -> counter name (COUNTERS) -> count; absent counters are 0


class Rollup(Protocol):
    async def write(
        self,
        node_id: str,
        th: str,
        viewers: Mapping[str, int],
        activity: Mapping[str, Mapping[str, int]],
        *,
        full: bool,
    ) -> bool:
        """Record this node's citizens per unit (absolute counts of the units in `viewers`; 0: none left there;
        with `full`, units not named have none) and add `activity` (counter -> unit -> increment). Renews the node's
        report. Returns False when the node's earlier viewer counts were forgotten (it was taken for dead): the caller
        sends all of them again (`full`) next time."""
        ...

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        """The counts of these units (each with its subtree): viewers summed over the live nodes, activity since the
        start. Units and counters with nothing counted are left out."""
        ...

    async def close(self) -> None: ...
