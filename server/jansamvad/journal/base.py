"""The Journal interface: every final `speech`, `announce` and `status` event of a town hall, by seq, for as long as
the town hall's data is kept.

The broker's history holds only the newest `history_size` events (for resuming); a two-hour speech is more than that.
The node appends each such event after publishing it. Appends are idempotent per seq, so a resent keyed speech (its
publish answered `dup`) can append again without doubling a line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["speech", "notice"]  # speech: final speech; notice: announcements and status changes

# Events the journal keeps, and the part of the journal each goes to.
JOURNALED: dict[str, Kind] = {"speech": "speech", "announce": "notice", "status": "notice"}


def journal_kind(event: Mapping[str, Any]) -> Kind | None:
    """Where an event goes in the journal, or None when it is not kept (a partial speech, a question, a poll)."""
    kind = JOURNALED.get(str(event.get("t")))
    if kind == "speech" and event.get("final") is False:
        return None
    return kind


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    event: Mapping[str, Any]  # the published message (with its `ts`), without seq


class Journal(Protocol):
    async def append(self, th: str, seq: int, event: Mapping[str, Any]) -> None:
        """Keep one event (journal_kind is not None); a second append with the same seq changes nothing."""
        ...

    async def read(self, th: str, kind: Kind, limit: int = 0) -> list[Entry]:
        """The newest `limit` entries of one kind (0: all), oldest first."""
        ...

    async def close(self) -> None: ...
