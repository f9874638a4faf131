"""The journal in process memory (the embedded default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jansamvad.journal.base import Entry, Journal, Kind, journal_kind


class MemoryJournal:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, Kind], dict[int, Entry]] = {}

    async def append(self, th: str, seq: int, event: Mapping[str, Any]) -> None:
        kind = journal_kind(event)
        if kind is None:
            return
        self._entries.setdefault((th, kind), {}).setdefault(seq, Entry(seq, dict(event)))

    async def read(self, th: str, kind: Kind, limit: int = 0) -> list[Entry]:
        entries = self._entries.get((th, kind), {})
        ordered = [entries[seq] for seq in sorted(entries)]
        return ordered[-limit:] if limit else ordered

    async def close(self) -> None:
        return None


_: type[Journal] = MemoryJournal
