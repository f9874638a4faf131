"""The embedded default: one process, so its one node never dies while someone reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jansamvad.rollup.base import COUNTERS, Rollup, UnitCounts


class MemoryRollup:
    def __init__(self) -> None:
        self._viewers: dict[str, dict[str, dict[str, int]]] = {}  # th -> node -> unit -> citizens
        self._activity: dict[str, UnitCounts] = {}  # th -> unit -> counter -> count

    async def write(
        self,
        node_id: str,
        th: str,
        viewers: Mapping[str, int],
        activity: Mapping[str, Mapping[str, int]],
        *,
        full: bool,
    ) -> bool:
        nodes = self._viewers.setdefault(th, {})
        known = node_id in nodes
        mine = nodes.setdefault(node_id, {})
        if full:
            mine.clear()
        for unit, n in viewers.items():
            if n > 0:
                mine[unit] = n
            else:
                mine.pop(unit, None)
        units = self._activity.setdefault(th, {})
        for counter, increments in activity.items():
            for unit, n in increments.items():
                counts = units.setdefault(unit, {})
                counts[counter] = counts.get(counter, 0) + n
        return known or full

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        wanted, named = set(codes), set(counters)
        out: UnitCounts = {}
        for unit, counts in self._activity.get(th, {}).items():
            if unit in wanted:
                picked = {counter: n for counter, n in counts.items() if counter in named and n}
                if picked:
                    out[unit] = picked
        if "viewers" in named:
            for mine in self._viewers.get(th, {}).values():
                for unit, n in mine.items():
                    if unit in wanted:
                        counts = out.setdefault(unit, {})
                        counts["viewers"] = counts.get("viewers", 0) + n
        return out

    async def close(self) -> None:
        self._viewers.clear()
        self._activity.clear()


_: type[Rollup] = MemoryRollup
