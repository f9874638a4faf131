"""The Redis store's programmes (issue 18): a town hall's schedule, kept next to the town hall (one slot, so it
expires with it), and an index of every programme in a slot of its own.

A mixin of RedisStore (store/redis.py), apart so that the store's town hall, question and moderation methods stay
in one file of a readable length; it uses the store's connection and key names.
"""

from __future__ import annotations

import asyncio

from jansamvad.models import Status
from jansamvad.programmes import Programme
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.store import redis_lua as lua
from jansamvad.store.base import BadState
from jansamvad.store.redis_records import check


class RedisProgrammes:
    _conn: RedisConn
    _keys: RedisKeys

    async def put_programme(self, programme: Programme) -> None:
        keys = self._keys.townhall(programme.th)
        reply = await self._conn.run(
            lua.PUT_PROGRAMME, (keys.meta, keys.programme), (programme.to_json(), Status.ENDED.value)
        )
        if reply[0] == b"badstate":
            raise BadState("the town hall has ended")
        check(reply, f"town hall {programme.th}")
        await self._conn.settle(keys.meta)
        # The index lives in its own slot and is written second: it may name a programme that expired since, which
        # `programmes` cleans, never miss one that exists.
        await self._conn.execute("ZADD", self._keys.programmes, programme.starts_ms, programme.th)

    async def programme(self, th: str) -> Programme | None:
        raw = await self._conn.execute("GET", self._keys.townhall(th).programme)
        return Programme.from_json(raw) if raw is not None else None

    async def programmes(self) -> list[Programme]:
        ids = [th.decode() for th in await self._conn.execute("ZRANGE", self._keys.programmes, 0, -1)]
        found = await asyncio.gather(*(self.programme(th) for th in ids))
        gone = [th for th, programme in zip(ids, found, strict=True) if programme is None]
        if gone:  # their town hall's retention ran out: the index forgets them too
            await self._conn.execute("ZREM", self._keys.programmes, *gone)
        return sorted((p for p in found if p is not None), key=lambda p: (p.starts_ms, p.th))
