"""The PresenceManager interface: each node reports its local audience per town hall; anyone can read the totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol


class Audience(NamedTuple):
    """Who listens to one town hall: citizens (what `viewers.n` shows) and staff (leaders, moderators, admins)."""

    citizens: int = 0
    staff: int = 0

    @property
    def total(self) -> int:
        return self.citizens + self.staff


class PresenceManager(Protocol):
    async def report(self, node_id: str, counts: Mapping[str, Audience]) -> None:
        """Replace this node's audience counts (town hall id -> audience). Stale reports expire."""
        ...

    async def totals(self, townhalls: Iterable[str]) -> dict[str, Audience]:
        """The audience of each town hall summed over every live node (zero for town halls nobody reported)."""
        ...

    async def by_node(self, th: str) -> dict[str, Audience]:
        """The live audience of one town hall per node (nodes whose report has not expired)."""
        ...

    async def close(self) -> None: ...
