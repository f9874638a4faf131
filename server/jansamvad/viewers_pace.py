"""When a room's `viewers` count goes out (issue 19): with every change in a small room, paced in a big one.

A `viewers` frame is one write per listener. In a room that grows by thousands a second the count changes every tick,
and sending each change cost a node tens of thousands of writes a minute for a number nobody reads to the last digit.
So above BIG_ROOM listeners a changed count goes out only when it moved by more than MOVE_FRACTION and BIG_ROOM_MIN_S
passed since the last one, or after BIG_ROOM_MAX_S whatever it moved; a count that rides along with an event of the
same tick (a speech, a question: the write happens anyway) always goes. Small rooms see every change within a tick.
docs/protocol.md (section 5, `viewers`) says the same.
"""

from __future__ import annotations

BIG_ROOM = 2_000  # listeners on this node in the room
BIG_ROOM_MIN_S = 5.0
BIG_ROOM_MAX_S = 10.0
MOVE_FRACTION = 0.01


def viewers_due(listeners: int, last_n: int | None, n: int, since_s: float, *, with_event: bool) -> bool:
    """Whether a room of `listeners` local members gets the count `n` now; `last_n` is the count it got last (None:
    never), `since_s` the seconds since then, `with_event` whether an event goes to the room in this tick."""
    if last_n is None or with_event or listeners <= BIG_ROOM or since_s >= BIG_ROOM_MAX_S:
        return True
    return since_s >= BIG_ROOM_MIN_S and abs(n - last_n) > MOVE_FRACTION * last_n
