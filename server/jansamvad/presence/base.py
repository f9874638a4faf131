"""The PresenceManager interface: each node reports its local listener counts; anyone can read the totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class PresenceManager(Protocol):
    async def report(self, node_id: str, counts: Mapping[str, int]) -> None:
        """Replace this node's listener counts (town hall id -> listeners). Stale reports expire."""
        ...

    async def totals(self, townhalls: Iterable[str]) -> dict[str, int]: ...

    async def by_node(self, th: str) -> dict[str, int]:
        """Live listeners of one town hall per node (nodes whose report has not expired)."""
        ...

    async def close(self) -> None: ...
