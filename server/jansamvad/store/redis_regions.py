"""The Redis store's region tree (issue 16): every unit of an imported tree, versioned so that a reader never sees
half an import, and read back in batches.

A mixin of RedisStore (store/redis.py), apart so that the store's town hall, question and moderation methods stay
in one file of a readable length; it uses the store's connection and key names.
"""

from __future__ import annotations

import json

from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.regions import RegionError, RegionTree, Unit, format_levels, parse_levels, unit as region_unit
from jansamvad.store.redis_records import json_text

REGION_BATCH = 1000  # units per HSET / HSCAN: no single command holds Redis for long with a lakh of booths


class RedisRegions:
    _conn: RedisConn
    _keys: RedisKeys

    async def put_region_tree(self, tree: RegionTree) -> int:
        version = int(await self._conn.execute("INCR", self._keys.regions().next))
        keys = self._keys.regions(version)
        units = tree.ordered()
        for start in range(0, len(units), REGION_BATCH):
            args: list[str] = []
            for unit in units[start : start + REGION_BATCH]:
                args += [unit.code, json_text([unit.parent, unit.level, unit.name_hi, unit.name_en])]
            await self._conn.execute("HSET", keys.units, *args)
        await self._conn.execute("SET", keys.levels, format_levels(tree.levels))
        # Only now do readers see it; a reader still loading the previous version finds it for one more import.
        await self._conn.execute("SET", keys.current, version)
        older = self._keys.regions(version - 2)
        await self._conn.execute("UNLINK", older.units, older.levels)
        return version

    async def region_tree_version(self) -> int:
        raw = await self._conn.execute("GET", self._keys.regions().current)
        return int(raw) if raw else 0

    async def region_tree(self) -> RegionTree | None:
        for _attempt in range(3):  # an import that lands while we read: read the newer version
            version = await self.region_tree_version()
            if not version:
                return None
            keys = self._keys.regions(version)
            levels_raw = await self._conn.execute("GET", keys.levels)
            units: list[Unit] = []
            cursor = 0
            while True:
                cursor, fields = await self._conn.execute("HSCAN", keys.units, cursor, "COUNT", REGION_BATCH)
                for code, raw in fields.items():
                    parent, level, name_hi, name_en = json.loads(raw)
                    units.append(region_unit(code.decode(), parent, level, name_hi, name_en))
                if int(cursor) == 0:
                    break
            if levels_raw is not None and await self.region_tree_version() == version:
                try:
                    return RegionTree(parse_levels(levels_raw.decode()), units)
                except RegionError:
                    pass  # deleted under us while we read (two imports since): read again
        raise RuntimeError("the region tree changed on every try")

    async def region_unit(self, code: str) -> Unit | None:
        version = await self.region_tree_version()
        if not version:
            return None
        raw = await self._conn.execute("HGET", self._keys.regions(version).units, code)
        if raw is None:
            return None
        parent, level, name_hi, name_en = json.loads(raw)
        return Unit(code, parent, level, name_hi, name_en)
