"""The region tree: an organisation's own hierarchy (state → district → constituency → panchayat → booth) as data.

A tree has named levels, top first, and units: each unit has a code (what a join link carries), a Hindi and an
English name, a level and a parent. Every unit knows its path of ancestors (`RegionTree.path`), so "is X in the
subtree of Y" is a look at a tuple of at most a few codes: what counts summed up the tree, moderators scoped to a
subtree and announcements to a subtree (issue 16, later items) build on.

The CSV form (import and export):

    # levels: state|राज्य|State, district|ज़िला|District, ...     (optional first line; default: DEFAULT_LEVELS)
    code,parent,level,name_hi,name_en
    BR,,state,बिहार,Bihar
    BR-230,BR,district,पटना,Patna
"""

from __future__ import annotations

import csv
import io
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
LEVEL_RE = re.compile(r"[a-z][a-z0-9_]{0,23}")
MAX_NAME_CHARS = 80
MAX_LEVELS = 12
MAX_UNITS = 2_000_000  # Uttar Pradesh has ~1.7 lakh booths; a bound on what an import can make every node hold
RESERVED_CODES = frozenset({"levels"})  # GET /api/regions/levels
CSV_HEADER = ("code", "parent", "level", "name_hi", "name_en")
LEVELS_PREFIX = "# levels:"


class RegionError(ValueError):
    """The tree or a CSV row is invalid; the message names the row and the reason."""


@dataclass(frozen=True, slots=True)
class Level:
    id: str
    name_hi: str
    name_en: str


DEFAULT_LEVELS: tuple[Level, ...] = (
    Level("state", "राज्य", "State"),
    Level("district", "ज़िला", "District"),
    Level("ac", "विधानसभा क्षेत्र", "Assembly constituency"),
    Level("panchayat", "पंचायत / शक्ति केंद्र", "Panchayat / Shakti Kendra"),
    Level("booth", "बूथ", "Booth"),
)


@dataclass(frozen=True, slots=True)
class Unit:
    code: str
    parent: str  # "" for a root
    level: str
    name_hi: str
    name_en: str


def unit(code: str, parent: str, level: str, name_hi: str, name_en: str) -> Unit:
    """A Unit whose level and parent strings are shared with its siblings (a lakh of booths, a few dozen levels and
    parents' codes: ~13 MB less per node for Bihar)."""
    return Unit(code, sys.intern(parent), sys.intern(level), name_hi, name_en)


def _clean_name(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value).split())


class RegionTree:
    """A validated tree: parents exist, a child is at a deeper level than its parent, no cycles, unique codes."""

    def __init__(self, levels: Iterable[Level], units: Iterable[Unit]) -> None:
        self.levels: tuple[Level, ...] = tuple(levels)
        if not 1 <= len(self.levels) <= MAX_LEVELS:
            raise RegionError(f"a tree has 1 to {MAX_LEVELS} levels")
        self.depth_of_level = {level.id: i for i, level in enumerate(self.levels)}
        if len(self.depth_of_level) != len(self.levels):
            raise RegionError("level ids must be unique")
        for level in self.levels:
            if not LEVEL_RE.fullmatch(level.id):
                raise RegionError(f"level {level.id!r}: a-z, 0-9, _ (up to 24, starting with a letter)")
        self.units: dict[str, Unit] = {}
        for unit in units:
            if unit.code in self.units:
                raise RegionError(f"unit {unit.code}: code used twice")
            self.units[unit.code] = unit
            if len(self.units) > MAX_UNITS:
                raise RegionError(f"more than {MAX_UNITS} units")
        self.children: dict[str, list[str]] = {}
        for unit in self.units.values():
            self._check(unit)
            if unit.parent:
                self.children.setdefault(unit.parent, []).append(unit.code)
        # Ancestors are resolved once here (levels only deepen towards the leaves, so there is no cycle).
        self._paths: dict[str, tuple[str, ...]] = {}
        for code in self.units:
            self.path(code)

    def _check(self, unit: Unit) -> None:
        if not CODE_RE.fullmatch(unit.code):
            raise RegionError(f"unit {unit.code!r}: code must be 1-40 of A-Z a-z 0-9 _ -, not starting with _ or -")
        if unit.code in RESERVED_CODES:
            raise RegionError(f"unit {unit.code}: the code is reserved (a path of the region API)")
        if unit.level not in self.depth_of_level:
            raise RegionError(f"unit {unit.code}: unknown level {unit.level!r}")
        for name in (unit.name_hi, unit.name_en):
            if not name or len(name) > MAX_NAME_CHARS:
                raise RegionError(f"unit {unit.code}: name_hi and name_en are required, up to {MAX_NAME_CHARS}")
        if unit.parent:
            parent = self.units.get(unit.parent)
            if parent is None:
                raise RegionError(f"unit {unit.code}: parent {unit.parent} does not exist")
            if self.depth_of_level[parent.level] >= self.depth_of_level[unit.level]:
                raise RegionError(f"unit {unit.code}: its parent {parent.code} must be at a higher level")

    def path(self, code: str) -> tuple[str, ...]:
        """The unit's ancestors from the root down, the unit itself last."""
        known = self._paths.get(code)
        if known is not None:
            return known
        unit = self.units[code]
        path = (*self.path(unit.parent), code) if unit.parent else (code,)
        self._paths[code] = path
        return path

    def within(self, code: str, ancestor: str) -> bool:
        """Whether `code` is `ancestor` or in its subtree: O(depth)."""
        return ancestor in self.path(code)

    def get(self, code: str) -> Unit | None:
        return self.units.get(code)

    def level(self, level_id: str) -> Level:
        return self.levels[self.depth_of_level[level_id]]

    def descendants(self, code: str, level: str | None = None) -> list[Unit]:
        """Units below `code` (all, or those at `level`), depth first in import order."""
        return list(self.iter_descendants(code, level))

    def iter_descendants(self, code: str, level: str | None = None) -> Iterator[Unit]:
        """`descendants`, one at a time: a caller that wants the first few walks only as far as those (a state's
        subtree is a lakh of booths)."""
        stop = self.depth_of_level[level] if level is not None else len(self.levels)
        stack = list(reversed(self.children.get(code, [])))
        while stack:
            unit = self.units[stack.pop()]
            if level is None or unit.level == level:
                yield unit
            if self.depth_of_level[unit.level] < stop:  # nothing at `level` lies below a unit at or under it
                stack.extend(reversed(self.children.get(unit.code, [])))

    def ordered(self) -> list[Unit]:
        """Every unit, parents before children: roots, then depth first, siblings in code order. One order for
        every store (a Redis hash keeps none), so an export is the same whichever store it came from."""
        roots = sorted(code for code, unit in self.units.items() if not unit.parent)
        out: list[Unit] = []
        stack = list(reversed(roots))
        while stack:
            unit = self.units[stack.pop()]
            out.append(unit)
            stack.extend(sorted(self.children.get(unit.code, []), reverse=True))
        return out

    def __len__(self) -> int:
        return len(self.units)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegionTree) and self.levels == other.levels and self.units == other.units

    __hash__ = None  # type: ignore[assignment]


def parse_levels(spec: str) -> tuple[Level, ...]:
    """`id|name_hi|name_en, ...` (names optional: the id is used)."""
    levels = []
    for part in spec.split(","):
        fields = [f.strip() for f in part.split("|")]
        if not fields[0]:
            continue
        hi = fields[1] if len(fields) > 1 and fields[1] else fields[0]
        en = fields[2] if len(fields) > 2 and fields[2] else hi
        levels.append(Level(fields[0], hi, en))
    return tuple(levels)


def format_levels(levels: Iterable[Level]) -> str:
    return ", ".join(f"{level.id}|{level.name_hi}|{level.name_en}" for level in levels)


def read_csv(text: str) -> RegionTree:
    """Parse the CSV form (module docstring). Raises RegionError naming the first bad line."""
    lines = text.lstrip("\ufeff").splitlines()
    levels = DEFAULT_LEVELS
    if lines and lines[0].startswith(LEVELS_PREFIX):
        levels = parse_levels(lines[0][len(LEVELS_PREFIX) :])
        lines = lines[1:]
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise RegionError(f"the header must be {','.join(CSV_HEADER)}")
    units = []
    for number, row in enumerate(reader, start=2):
        if not row or not any(row):
            continue
        if len(row) != len(CSV_HEADER):
            raise RegionError(f"line {number}: expected {len(CSV_HEADER)} fields, got {len(row)}")
        code, parent, level, hi, en = (field.strip() for field in row)
        units.append(unit(code, parent, level, _clean_name(hi), _clean_name(en)))
    return RegionTree(levels, units)


def write_csv(tree: RegionTree) -> str:
    out = io.StringIO()
    out.write(f"{LEVELS_PREFIX} {format_levels(tree.levels)}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for unit in tree.ordered():
        writer.writerow((unit.code, unit.parent, unit.level, unit.name_hi, unit.name_en))
    return out.getvalue()


def bihar_districts() -> RegionTree:
    """The shipped data: Bihar and its 38 districts (codes BR-<Census 2011 district code>)."""
    text = resources.files("jansamvad").joinpath("regions_data/bihar_districts.csv").read_text(encoding="utf-8")
    return read_csv(text)
