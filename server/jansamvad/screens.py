"""Booth screens: the LED screen or TV at a booth or a gathering (client_web/screen.html).

A screen joins with a `screen` token of its region unit (the admin API issues it) and may only listen: every message
a citizen may send is `forbidden` to it. Its volunteer says how many people are watching it (`audience`, a number
the page sends after every welcome and whenever it changes); the node keeps that number per session here and adds it
to the roll-up's gauges of the screen's unit (`screens`, `audience`), so it counts while the screen is connected to a
live node, and leaves with it, like a viewer.

A screen is not a citizen viewer: it is not in the roll-up's `viewers`, so "people reached" (viewers + audience)
counts everyone once. (The public `viewers.n` counts every listening connection that is not staff, screens too.)
"""

from __future__ import annotations

from collections.abc import Hashable

from jansamvad.rollup.tally import UnitTally


class ScreenAudiences:
    """The screens joined on this node: session -> (town hall, unit, people watching)."""

    def __init__(self, tally: UnitTally) -> None:
        self._tally = tally
        self._screens: dict[Hashable, tuple[str, str, int]] = {}

    def __len__(self) -> int:
        return len(self._screens)

    def joined(self, session: Hashable, th: str, unit: str) -> None:
        if session in self._screens:
            return
        self._screens[session] = (th, unit, 0)
        self._tally.gauge(th, "screens", unit, 1)

    def set_people(self, session: Hashable, people: int) -> None:
        """The volunteer's number (0..SCREEN_AUDIENCE_MAX, checked by the protocol): replaces the screen's last."""
        entry = self._screens.get(session)
        if entry is None:
            return
        th, unit, before = entry
        self._screens[session] = (th, unit, people)
        self._tally.gauge(th, "audience", unit, people - before)

    def left(self, session: Hashable) -> None:
        entry = self._screens.pop(session, None)
        if entry is None:
            return
        th, unit, people = entry
        self._tally.gauge(th, "screens", unit, -1)
        self._tally.gauge(th, "audience", unit, -people)
