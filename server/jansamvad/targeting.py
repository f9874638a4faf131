"""Events for part of a room: announcements to a region subtree, moderation notices for scoped moderators.

The stream stays one stream: a targeted event has its `seq` (or `mseq`) like any other, in the same order for
everyone. Who may see it is decided per *group*, never per connection on the ordinary path:

- The node keeps, per town hall, a local index of its citizens by every ancestor unit of their `ru` (`UnitIndex`:
  built once at join, removed at leave). An announcement `to` a unit goes in full to that unit's set (and to staff),
  and as a `skip` filler with the same seq to everyone else, so nobody sees a hole and nobody sees it twice.
- A scoped moderator (moderation/scope.py) gets a notice about a question outside its subtree as a `skip` with the
  notice's `mseq`. Moderators are few (a few hundred per town hall at most), so that set is computed per notice from
  the moderation room's members.

The fan-out encodes each variant once per wire format and writes it pre-framed to its group (fanout.py); a tick
without a targeted event takes the ordinary path, unchanged. Replays and snapshots (node.py) apply the same rule
per session, so a resume gives each citizen the same answer the live stream gave.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jansamvad.regions import RegionTree

SKIP = "skip"  # the filler's message type: "this seq / mseq is not for you"; it carries only its number


class Targeted:
    """Who gets a targeted event in full: the members in `full`, and staff members when `staff` is true. Everyone
    else in the room gets the `skip` filler with the same number."""

    __slots__ = ("full", "staff")

    def __init__(self, full: Collection[object], *, staff: bool) -> None:
        self.full = full  # may be a live set of the index: read at flush time, which is when membership counts
        self.staff = staff

    def gets(self, member: object, is_staff: bool) -> bool:
        return (self.staff and is_staff) or member in self.full


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


class UnitIndex:
    """Per channel: unit code -> this node's members whose unit lies in that unit's subtree (every ancestor)."""

    def __init__(self) -> None:
        self._by_unit: dict[str, dict[str, set[object]]] = {}
        self._joined: dict[object, tuple[str, tuple[str, ...]]] = {}  # member -> (channel, its unit path)

    def add(self, channel: str, member: object, path: tuple[str, ...]) -> None:
        if not path or member in self._joined:
            return
        self._joined[member] = (channel, path)
        units = self._by_unit.setdefault(channel, {})
        for code in path:
            units.setdefault(code, set()).add(member)

    def remove(self, member: object) -> None:
        joined = self._joined.pop(member, None)
        if joined is None:
            return
        channel, path = joined
        units = self._by_unit.get(channel)
        if units is None:
            return
        for code in path:
            members = units.get(code)
            if members is not None:
                members.discard(member)
                if not members:
                    del units[code]
        if not units:
            del self._by_unit[channel]

    def path(self, member: object) -> tuple[str, ...]:
        joined = self._joined.get(member)
        return joined[1] if joined is not None else ()

    def members(self, channel: str, unit: str) -> set[object]:
        """The live set of members under `unit` (an empty set when none): not to be changed by the caller."""
        return self._by_unit.get(channel, {}).get(unit) or set()
