"""Events for part of a room: announcements to a region subtree, moderation notices for scoped moderators.

The stream stays one stream: a targeted event has its `seq` (or `mseq`) like any other, in the same order for
everyone. Who may see it is decided per *group*, never per connection on the ordinary path:

- The node keeps a local index of its citizens' unit paths, every ancestor of their `ru` (`UnitIndex`: built once at
  join from the tree, removed at leave). An announcement `to` a unit goes in full to the citizens with that unit on
  their path (and to staff), and as a `skip` filler with the same seq to everyone else, so nobody sees a hole and
  nobody sees it twice. The path is the tree's own cached tuple, shared by every citizen of a booth: the index costs
  one dict entry per citizen (a set per ancestor unit cost ~5 times as much memory at 5 levels, for the same lookup).
- A scoped moderator (moderation/scope.py) gets a notice about a question outside its subtree as a `skip` with the
  notice's `mseq`. Moderators are few (a few hundred per town hall at most), so that set is computed per notice from
  the moderation room's members.

The fan-out encodes each variant once per wire format and writes it pre-framed to its group (fanout.py); a tick
without a targeted event takes the ordinary path, unchanged. Replays and snapshots (node.py) apply the same rule
per session, so a resume gives each citizen the same answer the live stream gave.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from jansamvad.regions import RegionTree

SKIP = "skip"  # the filler's message type: "this seq / mseq is not for you"; it carries only its number


class Targeted:
    """Who gets a targeted event in full: the members in `full` (a set), or when `full` is None those with `unit` on
    their path in `paths` (the node's UnitIndex, read at flush time); and staff members when `staff` is true.
    Everyone else in the room gets the `skip` filler with the same number."""

    __slots__ = ("full", "paths", "staff", "unit")

    def __init__(
        self,
        full: Collection[object] | None = None,
        *,
        staff: bool,
        unit: str = "",
        paths: Mapping[object, tuple[str, ...]] | None = None,
    ) -> None:
        self.full = full
        self.staff = staff
        self.unit = unit
        self.paths: Mapping[object, tuple[str, ...]] = paths if paths is not None else {}

    def hit(self, member: object) -> bool:
        """Whether the member is in the target group (staff aside)."""
        if self.full is not None:
            return member in self.full
        return self.unit in self.paths.get(member, ())

    def gets(self, member: object, is_staff: bool) -> bool:
        return (self.staff and is_staff) or self.hit(member)


def filler() -> dict[str, Any]:
    return {"t": SKIP}


def unit_path(tree: RegionTree | None, unit: str) -> tuple[str, ...]:
    """The unit's ancestors from the root down, itself last; just itself when the tree does not know it (or there is
    no tree), nothing for no unit."""
    if not unit:
        return ()
    if tree is not None and tree.get(unit) is not None:
        return tree.path(unit)
    return (unit,)


def in_scope(scope: str, path: Sequence[str]) -> bool:
    """Whether a question from the unit whose path this is lies in a moderator's scope ("" is the whole town hall).
    Questions with no unit (an empty path) belong to the root scope only."""
    return not scope or scope in path


def announcement_for(data: Mapping[str, Any], path: Sequence[str]) -> bool:
    """Whether a citizen with this unit path gets a public event in full: untargeted events, and announcements to a
    unit on the path."""
    to = data.get("to")
    return not to or to in path


class TreeSource(Protocol):
    @property
    def tree(self) -> RegionTree | None: ...


class UnitIndex:
    """This node's citizens with a unit -> their unit path (every ancestor, the unit last); and where the node's
    region tree is, for placing moderation notices in it."""

    def __init__(self, regions: TreeSource | None = None) -> None:
        self.paths: dict[object, tuple[str, ...]] = {}
        self.regions = regions

    @property
    def tree(self) -> RegionTree | None:
        """The tree the node holds now (no store call: the fan-out cannot wait)."""
        return self.regions.tree if self.regions is not None else None

    def add(self, member: object, path: tuple[str, ...]) -> None:
        if path:
            self.paths[member] = path

    def remove(self, member: object) -> None:
        self.paths.pop(member, None)

    def path(self, member: object) -> tuple[str, ...]:
        return self.paths.get(member, ())

    def under(self, unit: str) -> Targeted:
        """The target group of an announcement to `unit`: its subtree's citizens, and staff."""
        return Targeted(staff=True, unit=unit, paths=self.paths)
