"""The embedded default: one process, so its one node never dies while someone reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jansamvad.rollup.base import COUNTERS, GAUGES, Rollup, UnitCounts, gauge_field


class MemoryRollup:
    def __init__(self) -> None:
        self._viewers: dict[str, dict[str, dict[str, int]]] = {}  # th -> node -> gauge field -> number
        self._activity: dict[str, dict[str, dict[str, int]]] = {}  # th -> node -> "counter|unit" -> total
        self._retired: dict[str, dict[str, int]] = {}  # th -> "counter|unit" -> total of nodes gone

    async def write(
        self,
        node_id: str,
        th: str,
        gauges: Mapping[str, int],
        activity: Mapping[str, Mapping[str, int]],
        *,
        full: bool,
    ) -> bool:
        nodes, done = self._viewers.setdefault(th, {}), self._activity.setdefault(th, {})
        if node_id not in nodes and not full:
            return False
        if full:
            nodes[node_id], done[node_id] = {}, {}
        mine, acts = nodes[node_id], done[node_id]
        for name, n in gauges.items():
            if n > 0:
                mine[name] = n
            else:
                mine.pop(name, None)
        for counter, totals in activity.items():
            for unit, n in totals.items():
                acts[f"{counter}|{unit}"] = n
        return True

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        out: UnitCounts = {}
        sources = [self._retired.get(th, {}), *self._activity.get(th, {}).values()]
        named = tuple(counters)
        for unit in dict.fromkeys(codes):
            counts = {}
            for counter in named:
                if counter in GAUGES:
                    name = gauge_field(counter, unit)
                    n = sum(mine.get(name, 0) for mine in self._viewers.get(th, {}).values())
                else:
                    n = sum(source.get(f"{counter}|{unit}", 0) for source in sources)
                if n:
                    counts[counter] = n
            if counts:
                out[unit] = counts
        return out

    async def close(self) -> None:
        self._viewers.clear()
        self._activity.clear()
        self._retired.clear()


_: type[Rollup] = MemoryRollup
