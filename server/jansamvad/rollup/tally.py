"""A node's side of the roll-up: its citizens per unit and its activity, kept in dicts at join, leave, ask, approve,
react and poll vote (O(1) each, never on the fan-out path), and handed to the Rollup once per tick as the units that
changed, each with its ancestors: the node sums up the tree, so a read fetches only the units it shows.

Numbers go out absolute (rollup/base.py). Each town hall's report on this node has its own name (`report`): when the
node stops serving a town hall, that report retires on its own, and serving it again starts a new one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

from jansamvad.regions import RegionTree
from jansamvad.rollup.base import UNKNOWN_UNIT

# A unit's path of ancestors, the root first and the unit last (RegionTree.path), or just the unit when the tree
# does not know it (UNKNOWN_UNIT, a unit of a replaced tree, or no tree at all).
PathOf = Callable[[str], Sequence[str]]
Activity = dict[str, dict[str, int]]  # counter -> unit -> number
Field = tuple[str, str]  # (counter, unit)
Outcome = Literal["written", "failed", "forgotten"]


def path_in(tree: RegionTree | None) -> PathOf:
    def path_of(code: str) -> Sequence[str]:
        return tree.path(code) if tree is not None and tree.get(code) is not None else (code,)

    return path_of


class _Hall:
    """One town hall's counts on this node."""

    def __init__(self, report: str) -> None:
        self.report = report
        self.viewers: dict[str, int] = {}  # unit -> citizens listening there now
        self.changed: set[str] = set()  # units whose viewers changed since the last take
        self.taken: dict[str, int] = {}  # unit -> its viewers as of the last take
        # unit -> the path its viewers were added along: kept while it has any, so they leave along the same path
        # even if the tree was replaced meanwhile.
        self.paths: dict[str, Sequence[str]] = {}
        self.sums: dict[str, int] = {}  # unit or ancestor -> citizens in its subtree, as of the last take
        self.increments: dict[Field, int] = {}  # (counter, leaf unit) -> since the last take
        self.totals: dict[Field, int] = {}  # (counter, unit or ancestor) -> since the report began
        self.dirty: set[Field] = set()  # totals not yet written
        self.written: dict[Field, int] = {}  # totals as the report holds them
        self.in_flight: dict[Field, int] = {}  # totals of the write under way
        self.full = True  # the next write carries everything (a new report, or one that failed or was forgotten)


class UnitTally:
    def __init__(self) -> None:
        self._halls: dict[str, _Hall] = {}
        self._reports = itertools.count(1)
        self.has_units = False  # whether anyone was counted under a unit of the tree (then sums need the tree)

    def _hall(self, th: str) -> _Hall:
        hall = self._halls.get(th)
        if hall is None:
            hall = self._halls[th] = _Hall(str(next(self._reports)))
        return hall

    def join(self, th: str, unit: str) -> None:
        hall = self._hall(th)
        unit = unit or UNKNOWN_UNIT
        hall.viewers[unit] = hall.viewers.get(unit, 0) + 1
        hall.changed.add(unit)
        self.count(th, "joins", unit)

    def leave(self, th: str, unit: str) -> None:
        hall = self._halls.get(th)
        unit = unit or UNKNOWN_UNIT
        if hall is None or not hall.viewers.get(unit):
            return
        hall.viewers[unit] -= 1
        hall.changed.add(unit)

    def count(self, th: str, counter: str, unit: str, n: int = 1) -> None:
        increments = self._hall(th).increments
        if unit and unit != UNKNOWN_UNIT:
            self.has_units = True
        key = (counter, unit or UNKNOWN_UNIT)
        increments[key] = increments.get(key, 0) + n

    def pending(self) -> list[str]:
        """Town halls to write this tick: every one this node has a report in (a write renews it)."""
        return list(self._halls)

    def report(self, th: str) -> str:
        """The name of this node's current report in the town hall (a suffix of the node id)."""
        return self._hall(th).report

    def take(self, th: str, path_of: PathOf) -> tuple[dict[str, int], Activity, bool]:
        """For one write: (this node's viewers of every unit and ancestor whose count changed, or of all of them when
        full; its activity totals that changed, or all of them when full; full). Then call `written`."""
        hall = self._hall(th)
        touched: set[str] = set()
        for unit in hall.changed:
            now = hall.viewers.get(unit, 0)
            delta = now - hall.taken.get(unit, 0)
            path = hall.paths.get(unit)
            if path is None:
                path = hall.paths[unit] = tuple(path_of(unit))
            for code in path if delta else ():
                hall.sums[code] = hall.sums.get(code, 0) + delta
                touched.add(code)
            if now:
                hall.taken[unit] = now
            else:
                hall.viewers.pop(unit, None)
                hall.taken.pop(unit, None)
                hall.paths.pop(unit, None)
        hall.changed.clear()
        for (counter, unit), n in hall.increments.items():
            for code in hall.paths.get(unit) or path_of(unit):
                key = (counter, code)
                hall.totals[key] = hall.totals.get(key, 0) + n
                hall.dirty.add(key)
        hall.increments.clear()
        full, hall.full = hall.full, False
        if full:
            viewers = {code: n for code, n in hall.sums.items() if n > 0}
            hall.in_flight = dict(hall.totals)
        else:
            viewers = {code: hall.sums[code] for code in touched}
            hall.in_flight = {key: hall.totals[key] for key in hall.dirty}
        hall.dirty.clear()
        for code in touched:
            if not hall.sums[code]:
                del hall.sums[code]
        activity: Activity = {}
        for (counter, code), n in hall.in_flight.items():
            activity.setdefault(counter, {})[code] = n
        return viewers, activity, full

    def written(self, th: str, outcome: Outcome) -> None:
        """How the write of the last `take` went: written; failed (unknown whether it landed: the next write carries
        everything again); forgotten (the report had been removed and its activity retired: what it held is no
        longer this report's, and the next write starts it again with everything else)."""
        hall = self._halls.get(th)
        if hall is None:
            return
        sent, hall.in_flight = hall.in_flight, {}
        if outcome == "written":
            hall.written.update(sent)
            if not hall.viewers and not hall.increments and not hall.dirty:
                del self._halls[th]  # nobody here any more: the report retires on its own, a later one starts anew
            return
        hall.full = True
        if outcome == "forgotten":
            for key, n in hall.written.items():
                left = hall.totals.get(key, 0) - n
                if left:
                    hall.totals[key] = left
                else:
                    hall.totals.pop(key, None)
            hall.written = {}
