"""The Hub: the node's truth about which local connections listen to which channel.

The node subscribes to a channel on the broker when its room gets its first member and unsubscribes when the last one
leaves, so the broker carries each publication once per interested node, never once per connection. After a broker
reconnect, `channels()` is what must be subscribed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from jansamvad.feeds import FEED_COUNT
from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.codes import CloseCode

if TYPE_CHECKING:
    from jansamvad.targeting import Targeted

# A stream event queued for a room this tick: (seq, message, droppable, for whom when targeted; None: everyone).
Event = tuple[int, dict[str, Any], bool, "Targeted | None"]


class Listener(Protocol):
    """What the fan-out needs of a connection."""

    encoding: Encoding
    feed: int  # the blob this member gets: its wire format and listening mode (feeds.py); changed via Hub.set_feed
    # Not None while the session replays history; live frames wait here as (stream, number, frame), where stream is
    # the room's seq_field ("seq" or "mseq") and number 0 means "not numbered".
    paused: list[tuple[str, int, bytes]] | None
    # The fan-out's fast path: a send on the member's socket (returns the bytes it took; raises OSError on EAGAIN)
    # while the member is open, not paused and its transport holds nothing (so write_broadcast's checks would all
    # pass); None otherwise, and the fan-out calls write_broadcast. Less than the whole blob: write_rest.
    fast_write: Callable[[bytes], int] | None

    def write_broadcast(self, blob: bytes, must_deliver: bool) -> None: ...

    def write_rest(self, blob: bytes, sent: int) -> None:
        """A fast write took only `sent` bytes of `blob`: queue the rest behind nothing, ahead of every later frame."""
        ...

    def resume(self, after: Mapping[str, int]) -> None:
        """Stop pausing: write the waiting frames, except numbered ones at or below after[their stream]."""
        ...


class Session(Listener, Protocol):
    """A room member as the node sees it (a connection with a joined session): a listener it can also close."""

    def close(self, code: CloseCode, detail: str = "") -> None:
        """Start the closing handshake with this close code."""
        ...

    def send_frame(self, frame: bytes) -> None:
        """A frame for this member alone."""
        ...


class Room:
    """One channel's local members and what is queued for them in the current tick."""

    __slots__ = (
        "audio",
        "channel",
        "conflated",
        "dirty",
        "events",
        "feeds",
        "json_members",
        "lazy",
        "light_due",
        "light_pending",
        "light_timer",
        "members",
        "sent",
        "seq_field",
        "staff",
        "subscribing",
        "viewers_sent_at",
    )

    def __init__(self, channel: str, seq_field: str = "seq") -> None:
        self.channel = channel
        # The field that carries a publication's number to clients: "seq" (the public stream) or "mseq" (moderation).
        self.seq_field = seq_field
        # The broker subscription of this room, shared by every join that waits for it; a failed one is retried by
        # the next join (the room may outlive the join that created it).
        self.subscribing: asyncio.Task[None] | None = None
        self.members: dict[Session, bool] = {}  # an insertion-ordered set; the value: is the member staff?
        self.json_members = 0
        self.feeds = [0] * FEED_COUNT  # members per feed (feeds.py): which blobs a tick must build
        self.audio: list[dict[str, Any]] = []  # audio chunks queued this tick (for members in audio mode only)
        self.lazy = False  # a coalescing timer is running for this room (fanout.py)
        # Text-light members get aggregates at most every LIGHT_AGGREGATES_S: the latest values wait here till then.
        self.light_pending: dict[str, dict[str, Any]] = {}
        self.light_due = 0.0
        self.light_timer = False
        self.staff = 0  # members that are leaders, moderators or admins (viewers.n counts citizens only)
        self.events: list[Event] = []  # queued this tick
        self.conflated: dict[str, dict[str, Any]] = {}  # conflation key -> latest value this tick
        self.dirty = False
        self.viewers_sent_at = 0.0  # loop time the room last got a `viewers` count (viewers_pace.py)
        self.sent: dict[str, object] = {}  # aggregate key -> the last value conflated into this room


class Hub:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.users: dict[str, set[Session]] = {}  # subject -> its local sessions (to kick a banned user)

    def add_user(self, sub: str, member: Session) -> None:
        self.users.setdefault(sub, set()).add(member)

    def remove_user(self, sub: str, member: Session) -> None:
        sessions = self.users.get(sub)
        if sessions is not None:
            sessions.discard(member)
            if not sessions:
                del self.users[sub]

    def add(self, channel: str, member: Session, seq_field: str = "seq", *, staff: bool = False) -> bool:
        """Add a member (`staff`: a leader, moderator or admin); True when the room is new (the node must subscribe)."""
        room = self.rooms.get(channel)
        created = room is None
        if room is None:
            room = self.rooms[channel] = Room(channel, seq_field)
        if member not in room.members:
            room.members[member] = staff
            room.staff += staff
            room.feeds[member.feed] += 1
            if member.encoding is Encoding.JSON:
                room.json_members += 1
        return created

    def remove(self, channel: str, member: Session) -> bool:
        """Remove a member; True when the room became empty (the node must unsubscribe)."""
        room = self.rooms.get(channel)
        if room is None or member not in room.members:
            return False
        room.staff -= room.members.pop(member)
        room.feeds[member.feed] -= 1
        if member.encoding is Encoding.JSON:
            room.json_members -= 1
        if not room.members:
            del self.rooms[channel]
            return True
        return False

    def set_feed(self, member: Listener, feed: int, channels: list[str]) -> None:
        """Move a member to another feed (a new listening mode) in each of its rooms."""
        old = member.feed
        for channel in channels:
            room = self.rooms.get(channel)
            if room is not None and member in room.members:
                room.feeds[old] -= 1
                room.feeds[feed] += 1
        member.feed = feed

    def room(self, channel: str) -> Room | None:
        return self.rooms.get(channel)

    def channels(self) -> list[str]:
        return list(self.rooms)

    def count(self, channel: str) -> int:
        room = self.rooms.get(channel)
        return len(room.members) if room else 0
