"""When a room's `viewers` count goes out (issue 19): with every change in a small room, paced in a big one.

A `viewers` frame is one write per listener. In a room that grows by thousands a second the count changes every tick,
and sending each change cost a node tens of thousands of writes a minute for a number nobody reads to the last digit.
So above BIG_ROOM listeners a changed count goes out only when it moved by more than MOVE_FRACTION and BIG_ROOM_MIN_S
passed since the last one, or after BIG_ROOM_MAX_S whatever it moved; a count that rides along with an event of the
same tick (a speech, a question: the write happens anyway) always goes. A smaller room that grows (or empties) fast,
by more than GROWING_PER_S a second since its last count, is paced the same way: at the start of a town hall the room
fills at thousands a second and every listener would otherwise get a new count every tick while it is still under
BIG_ROOM. Small quiet rooms see every change within a tick. docs/protocol.md (section 5, `viewers`) says the same.
"""

from __future__ import annotations

BIG_ROOM = 2_000  # listeners on this node in the room
BIG_ROOM_MIN_S = 5.0
BIG_ROOM_MAX_S = 10.0
MOVE_FRACTION = 0.01
GROWING_PER_S = 20  # a count that moved faster than this (citizens a second, since the last one sent) is paced


def viewers_due(listeners: int, last_n: int | None, n: int, since_s: float, *, with_event: bool) -> bool:
    """Whether a room of `listeners` local members gets the count `n` now; `last_n` is the count it got last (None:
    never), `since_s` the seconds since then, `with_event` whether an event goes to the room in this tick."""
    if last_n is None or with_event or since_s >= BIG_ROOM_MAX_S:
        return True
    if listeners <= BIG_ROOM and abs(n - last_n) <= GROWING_PER_S * max(since_s, 1.0):
        return True  # a small room at a human pace: every change
    return since_s >= BIG_ROOM_MIN_S and abs(n - last_n) > MOVE_FRACTION * last_n
