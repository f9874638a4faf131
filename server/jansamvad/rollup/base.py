"""The Rollup interface: nodes write what changed per region unit once per aggregates tick, each unit's counts already
summed up its ancestors by the node (rollup/tally.py); the dashboard reads only the units it shows (a unit and its
children), so a read costs the size of one screen, not of the tree.

Every number a node writes is absolute (its citizens listening per unit now; its activity per unit since it began
writing), so a write repeated after a lost answer changes nothing. Viewers count while the node's report is live: a
node that dies stops renewing it and its viewers drop out (like presence). Its activity (joins, asked, approved,
reactions, votes) stays counted: when a node dies or closes, its activity joins the town hall's retired counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

UNKNOWN_UNIT = "unknown"  # where citizens without a unit in their token (no `ru`) are counted
# The gauges: numbers of now, gone with the node that counted them. Citizens listening (`viewers`), booth screens
# connected (`screens`) and the people their volunteers say are watching them (`audience`, screens.py). A screen is
# not a viewer: "people reached" is viewers + audience, and nobody in it is counted twice.
GAUGES = ("viewers", "screens", "audience")
# The activity counters: sessions that joined (reach), questions asked, approve decisions, reactions, poll votes (a
# citizen's first vote in a poll).
ACTIVITY = ("joins", "asked", "approved", "reactions", "votes")
COUNTERS = (*GAUGES, *ACTIVITY)


def gauge_field(gauge: str, unit: str) -> str:
    """A gauge's name in a node's report: the unit alone for viewers (as the report always held them), else
    `<gauge>|<unit>`."""
    return unit if gauge == "viewers" else f"{gauge}|{unit}"


UnitCounts = dict[str, dict[str, int]]  # unit -> counter name (COUNTERS) -> count; absent counters are 0


class Rollup(Protocol):
    async def write(
        self,
        node_id: str,
        th: str,
        gauges: Mapping[str, int],
        activity: Mapping[str, Mapping[str, int]],
        *,
        full: bool,
    ) -> bool:
        """Set this node's gauges per unit (`gauge_field` -> number; 0: none left there) and its activity so far
        (counter -> unit -> total); with `full`, whatever is not named is 0. Renews the node's report. Returns False,
        writing nothing, when the node's report had been removed (it was taken for dead, and its activity retired):
        the caller then counts its activity from what it had not written yet, and writes everything (`full`)."""
        ...

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        """The counts of these units (each with its subtree): gauges summed over the live nodes, activity since the
        start. Units and counters with nothing counted are left out."""
        ...

    async def close(self) -> None: ...
