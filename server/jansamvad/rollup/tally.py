"""A node's side of the roll-up: its citizens per unit and its activity increments, kept in dicts at join, leave, ask,
approve, react and poll vote (O(1) each, never on the fan-out path), and handed to the Rollup once per tick as the
units that changed. And the read side's sum up the region tree.
"""

from __future__ import annotations

from collections.abc import Iterable

from jansamvad.regions import RegionTree
from jansamvad.rollup.base import COUNTERS, UNKNOWN_UNIT, UnitCounts


class UnitTally:
    def __init__(self) -> None:
        self.viewers: dict[str, dict[str, int]] = {}  # th -> unit -> this node's citizens listening
        self._changed: dict[str, set[str]] = {}  # th -> units whose viewers changed since the last write
        self._activity: dict[str, dict[str, dict[str, int]]] = {}  # th -> counter -> unit -> increment
        self.full: set[str] = set()  # town halls whose next write must carry every unit (new, or forgotten)

    def join(self, th: str, unit: str) -> None:
        units = self.viewers.get(th)
        if units is None:
            units = self.viewers[th] = {}
            self.full.add(th)
        unit = unit or UNKNOWN_UNIT
        units[unit] = units.get(unit, 0) + 1
        self._changed.setdefault(th, set()).add(unit)
        self.count(th, "joins", unit)

    def leave(self, th: str, unit: str) -> None:
        units = self.viewers.get(th)
        unit = unit or UNKNOWN_UNIT
        if units is None or unit not in units:
            return
        units[unit] -= 1
        self._changed.setdefault(th, set()).add(unit)

    def count(self, th: str, counter: str, unit: str, n: int = 1) -> None:
        increments = self._activity.setdefault(th, {}).setdefault(counter, {})
        unit = unit or UNKNOWN_UNIT
        increments[unit] = increments.get(unit, 0) + n

    def pending(self) -> set[str]:
        """Town halls with something to write (changes, activity, or a report to renew)."""
        return set(self.viewers) | set(self._changed) | set(self._activity)

    def take(self, th: str) -> tuple[dict[str, int], dict[str, dict[str, int]], bool]:
        """(viewers of the changed units, or all of them when full; activity increments; full) for one write."""
        units = self.viewers.get(th, {})
        full = th in self.full
        changed = self._changed.pop(th, set())
        viewers = {unit: n for unit, n in units.items() if n > 0} if full else {u: units.get(u, 0) for u in changed}
        self.full.discard(th)
        for unit in changed:
            if units.get(unit) == 0:
                del units[unit]
        if not units:
            self.viewers.pop(th, None)
        return viewers, self._activity.pop(th, {}), full

    def failed(self, th: str, activity: dict[str, dict[str, int]]) -> None:
        """A write did not go through: its activity is added to the next one, which carries every unit."""
        for counter, increments in activity.items():
            for unit, n in increments.items():
                self.count(th, counter, unit, n)
        self.forgotten(th)

    def forgotten(self, th: str) -> None:
        if th in self.viewers:
            self.full.add(th)


def roll_up(tree: RegionTree | None, leaves: UnitCounts) -> UnitCounts:
    """Every unit's counts summed with those of its subtree. Codes the tree does not know (UNKNOWN_UNIT, or units
    of an older tree) keep their own counts and add to no ancestor."""
    out: UnitCounts = {}
    for code, counts in leaves.items():
        path: Iterable[str] = tree.path(code) if tree is not None and tree.get(code) is not None else (code,)
        for ancestor in path:
            total = out.setdefault(ancestor, {})
            for counter, n in counts.items():
                total[counter] = total.get(counter, 0) + n
    return out


def zero_filled(counts: dict[str, int]) -> dict[str, int]:
    return {counter: counts.get(counter, 0) for counter in COUNTERS}
