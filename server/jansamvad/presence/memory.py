"""The embedded default: one process, so the totals are the reports this process made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jansamvad.presence.base import Audience, PresenceManager


class MemoryPresence:
    def __init__(self) -> None:
        self._reports: dict[str, dict[str, Audience]] = {}

    async def report(self, node_id: str, counts: Mapping[str, Audience]) -> None:
        self._reports[node_id] = dict(counts)

    async def totals(self, townhalls: Iterable[str]) -> dict[str, Audience]:
        totals = {}
        for th in townhalls:
            reports = [r[th] for r in self._reports.values() if th in r]
            totals[th] = Audience(sum(a.citizens for a in reports), sum(a.staff for a in reports))
        return totals

    async def by_node(self, th: str) -> dict[str, Audience]:
        return {node: counts[th] for node, counts in self._reports.items() if th in counts and counts[th].total > 0}

    async def close(self) -> None:
        self._reports.clear()


_: type[PresenceManager] = MemoryPresence
