"""A node's side of the roll-up: its citizens (and booth screens and their audience) per unit and its activity, kept in
dicts at join, leave, ask, approve, react, poll vote and a screen's audience (O(1) each, never on the fan-out path),
and handed to the Rollup once per tick as the units that changed, each with its ancestors: the node sums up the tree,
so a read fetches only the units it shows.

Numbers go out absolute (rollup/base.py). Each town hall's report on this node has its own name (`report`): when the
node stops serving a town hall, that report retires on its own, and serving it again starts a new one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

from jansamvad.regions import RegionTree
from jansamvad.rollup.base import UNKNOWN_UNIT, gauge_field

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
        self.gauges: dict[Field, int] = {}  # (gauge, unit) -> its number there now (viewers, screens, audience)
        self.changed: set[Field] = set()  # gauges that changed since the last take
        self.taken: dict[Field, int] = {}  # (gauge, unit) -> its number as of the last take
        # (gauge, unit) -> the path its number was added along: kept while it is not 0, so it leaves along the same
        # path even if the tree was replaced meanwhile.
        self.paths: dict[Field, Sequence[str]] = {}
        self.sums: dict[Field, int] = {}  # (gauge, unit or ancestor) -> summed over its subtree, as of the last take
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
        self.gauge(th, "viewers", unit, 1)
        self.count(th, "joins", unit)

    def leave(self, th: str, unit: str) -> None:
        self.gauge(th, "viewers", unit, -1)

    def gauge(self, th: str, gauge: str, unit: str, delta: int) -> None:
        """Move a gauge (GAUGES) of a unit by `delta`; it never goes below 0."""
        if not delta:
            return
        hall = self._hall(th) if delta > 0 else self._halls.get(th)
        key = (gauge, unit or UNKNOWN_UNIT)
        if hall is None or (delta < 0 and not hall.gauges.get(key)):
            return
        if unit and unit != UNKNOWN_UNIT:
            self.has_units = True
        hall.gauges[key] = max(0, hall.gauges.get(key, 0) + delta)
        hall.changed.add(key)

    def count(self, th: str, counter: str, unit: str, n: int = 1) -> None:
        increments = self._hall(th).increments
        if unit and unit != UNKNOWN_UNIT:
            self.has_units = True
        key = (counter, unit or UNKNOWN_UNIT)
        increments[key] = increments.get(key, 0) + n

    def pending(self) -> list[str]:
        """Town halls to write this tick: every one this node has a report in (a write renews it)."""
        return list(self._halls)

    def changed(self, th: str) -> bool:
        """Whether the town hall's next write carries anything but the renewal of its report."""
        hall = self._halls.get(th)
        return hall is None or bool(hall.full or hall.changed or hall.increments or hall.dirty)

    def report(self, th: str) -> str:
        """The name of this node's current report in the town hall (a suffix of the node id)."""
        return self._hall(th).report

    def take(self, th: str, path_of: PathOf) -> tuple[dict[str, int], Activity, bool]:
        """For one write: (this node's gauges of every unit and ancestor whose number changed, or all of them when
        full, by `gauge_field`; its activity totals that changed, or all of them when full; full). Then call
        `written`."""
        hall = self._hall(th)
        touched: set[Field] = set()
        for key in hall.changed:
            gauge, unit = key
            now = hall.gauges.get(key, 0)
            delta = now - hall.taken.get(key, 0)
            path = hall.paths.get(key)
            if path is None:
                path = hall.paths[key] = tuple(path_of(unit))
            for code in path if delta else ():
                summed = (gauge, code)
                hall.sums[summed] = hall.sums.get(summed, 0) + delta
                touched.add(summed)
            if now:
                hall.taken[key] = now
            else:
                hall.gauges.pop(key, None)
                hall.taken.pop(key, None)
                hall.paths.pop(key, None)
        hall.changed.clear()
        for (counter, unit), n in hall.increments.items():
            for code in hall.paths.get(("viewers", unit)) or path_of(unit):
                key = (counter, code)
                hall.totals[key] = hall.totals.get(key, 0) + n
                hall.dirty.add(key)
        hall.increments.clear()
        full, hall.full = hall.full, False
        if full:
            gauges = {gauge_field(g, code): n for (g, code), n in hall.sums.items() if n > 0}
            hall.in_flight = dict(hall.totals)
        else:
            gauges = {gauge_field(g, code): hall.sums[g, code] for g, code in touched}
            hall.in_flight = {key: hall.totals[key] for key in hall.dirty}
        hall.dirty.clear()
        for key in touched:
            if not hall.sums[key]:
                del hall.sums[key]
        activity: Activity = {}
        for (counter, code), n in hall.in_flight.items():
            activity.setdefault(counter, {})[code] = n
        return gauges, activity, full

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
            if not hall.gauges and not hall.increments and not hall.dirty:
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
