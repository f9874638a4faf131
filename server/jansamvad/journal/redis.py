"""The journal in Redis: one sorted set per town hall and kind, member = msgpack [seq, event], score = seq.

The keys carry the town hall's hash tag (one slot with its stream). An append is one script that adds the entry only
when no entry has that seq yet (a resent speech's event may differ in `ts`), and renews the key's expiry, so an
ended town hall's journal goes with the rest of its data after `--ended-retention-days`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from jansamvad.journal.base import Entry, Journal, Kind, journal_kind
from jansamvad.redis_conn import RedisConn, Script
from jansamvad.redis_keys import RedisKeys

# KEYS: the sorted set. ARGV: seq, member, keep ms (0: no expiry).
_APPEND = Script(
    """
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""
)


class RedisJournal:
    def __init__(self, conn: RedisConn, keys: RedisKeys, *, keep_s: float = 0.0) -> None:
        self._conn = conn.retain()
        self._keys = keys
        self._keep_ms = max(0, int(keep_s * 1000))

    async def append(self, th: str, seq: int, event: Mapping[str, Any]) -> None:
        kind = journal_kind(event)
        if kind is None:
            return
        member = msgpack.packb([seq, dict(event)], use_bin_type=True)
        await self._conn.run(_APPEND, (self._keys.townhall(th).journal(kind),), (seq, member, self._keep_ms))

    async def read(self, th: str, kind: Kind, limit: int = 0) -> list[Entry]:
        key = self._keys.townhall(th).journal(kind)
        raw = await self._conn.execute("ZRANGE", key, -limit if limit else 0, -1)
        entries = []
        for member in raw:
            seq, event = msgpack.unpackb(member, raw=False)
            entries.append(Entry(int(seq), event))
        return entries

    async def close(self) -> None:
        await self._conn.close()


_: type[Journal] = RedisJournal
