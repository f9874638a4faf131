"""A node's side of the roll-up: its citizens per unit and its activity increments, kept in dicts at join, leave, ask,
approve, react and poll vote (O(1) each, never on the fan-out path), and handed to the Rollup once per tick as the
units that changed, each with its ancestors: the node sums up the tree, so a read fetches only the units it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jansamvad.regions import RegionTree
from jansamvad.rollup.base import UNKNOWN_UNIT

# A unit's path of ancestors, the root first and the unit last (RegionTree.path), or just the unit when the tree
# does not know it (UNKNOWN_UNIT, a unit of a replaced tree, or no tree at all).
PathOf = Callable[[str], Sequence[str]]


def path_in(tree: RegionTree | None) -> PathOf:
    def path_of(code: str) -> Sequence[str]:
        return tree.path(code) if tree is not None and tree.get(code) is not None else (code,)

    return path_of


Activity = dict[str, dict[str, int]]  # counter -> unit -> increment


class UnitTally:
    def __init__(self) -> None:
        self.viewers: dict[str, dict[str, int]] = {}  # th -> unit -> this node's citizens listening there
        self._changed: dict[str, set[str]] = {}  # th -> units whose viewers changed since the last take
        self._activity: dict[str, Activity] = {}  # th -> counter -> unit -> increment since the last take
        self._carry: dict[str, Activity] = {}  # th -> increments of a failed write (already summed up the tree)
        self._taken: dict[str, dict[str, int]] = {}  # th -> unit -> its viewers as of the last take
        # th -> unit -> the path its viewers were added along: kept while it has any, so they leave along the same
        # path even if the tree was replaced meanwhile.
        self._paths: dict[str, dict[str, Sequence[str]]] = {}
        self._sums: dict[str, dict[str, int]] = {}  # th -> unit or ancestor -> this node's viewers in its subtree
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
        if units is None or not units.get(unit):
            return
        units[unit] -= 1
        self._changed.setdefault(th, set()).add(unit)

    def count(self, th: str, counter: str, unit: str, n: int = 1) -> None:
        increments = self._activity.setdefault(th, {}).setdefault(counter, {})
        unit = unit or UNKNOWN_UNIT
        increments[unit] = increments.get(unit, 0) + n

    def pending(self) -> set[str]:
        """Town halls with something to write (changes, activity, or a report to renew)."""
        return set(self.viewers) | set(self._changed) | set(self._activity) | set(self._carry)

    def take(self, th: str, path_of: PathOf) -> tuple[dict[str, int], Activity, bool]:
        """For one write: (this node's viewers of every unit and ancestor whose count changed, or of all of them when
        full; the activity increments summed up the tree; full)."""
        units = self.viewers.get(th, {})
        taken = self._taken.setdefault(th, {})
        paths = self._paths.setdefault(th, {})
        sums = self._sums.setdefault(th, {})
        touched: set[str] = set()
        for unit in self._changed.pop(th, set()):
            now = units.get(unit, 0)
            delta = now - taken.get(unit, 0)
            path = paths.get(unit)
            if path is None:
                path = paths[unit] = tuple(path_of(unit))
            for code in path if delta else ():
                sums[code] = sums.get(code, 0) + delta
                touched.add(code)
            if now:
                taken[unit] = now
            else:
                units.pop(unit, None)
                taken.pop(unit, None)
                paths.pop(unit, None)
        full = th in self.full
        self.full.discard(th)
        viewers = {code: n for code, n in sums.items() if n > 0} if full else {code: sums[code] for code in touched}
        for code in touched:
            if not sums[code]:
                del sums[code]
        if not units:
            for state in (self.viewers, self._taken, self._paths, self._sums):
                state.pop(th, None)
        activity = self._carry.pop(th, {})
        for counter, increments in self._activity.pop(th, {}).items():
            summed = activity.setdefault(counter, {})
            for unit, n in increments.items():
                for code in paths.get(unit) or path_of(unit):
                    summed[code] = summed.get(code, 0) + n
        return viewers, activity, full

    def failed(self, th: str, activity: Activity) -> None:
        """A write did not go through: its activity goes with the next one, which carries every unit."""
        carry = self._carry.setdefault(th, {})
        for counter, increments in activity.items():
            summed = carry.setdefault(counter, {})
            for code, n in increments.items():
                summed[code] = summed.get(code, 0) + n
        self.forgotten(th)

    def forgotten(self, th: str) -> None:
        if th in self.viewers:
            self.full.add(th)
