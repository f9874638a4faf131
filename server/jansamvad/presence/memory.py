"""The embedded default: one process, so the totals are the reports this process made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jansamvad.presence.base import PresenceManager


class MemoryPresence:
    def __init__(self) -> None:
        self._reports: dict[str, dict[str, int]] = {}

    async def report(self, node_id: str, counts: Mapping[str, int]) -> None:
        self._reports[node_id] = dict(counts)

    async def totals(self, townhalls: Iterable[str]) -> dict[str, int]:
        return {th: sum(r.get(th, 0) for r in self._reports.values()) for th in townhalls}

    async def by_node(self, th: str) -> dict[str, int]:
        return {node: counts[th] for node, counts in self._reports.items() if counts.get(th, 0) > 0}

    async def close(self) -> None:
        self._reports.clear()


_: type[PresenceManager] = MemoryPresence
