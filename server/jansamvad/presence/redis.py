"""Presence in Redis: every node reports its audience per town hall; totals sum over the nodes that still report.

Per town hall: a hash node id -> citizens listening, a hash node id -> staff (leaders, moderators, admins) listening,
and a sorted set node id -> when that report expires. Expiry uses the
Redis server's clock (TIME inside the scripts), so nodes whose clocks disagree still agree on who is alive. A node
that stops reporting (it crashed, or lost Redis) drops out of the totals `ttl_s` after its last report; the next
read removes its entries. A node that closes cleanly withdraws its reports at once.

Keys are per town hall (redis_keys.py), so a total is one small script on one primary, whatever the number of
nodes, and the per-second load grows with nodes x town halls they serve, not with listeners.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from jansamvad.presence.base import Audience, PresenceManager
from jansamvad.redis_conn import RedisConn, Script
from jansamvad.redis_keys import RedisKeys

log = logging.getLogger("jansamvad.presence.redis")

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: citizens, expiry, staff. ARGV: node id, citizens, staff, ttl ms. No one at all withdraws the node's report.
_REPORT = Script(
    _NOW_MS
    + """
if tonumber(ARGV[2]) + tonumber(ARGV[3]) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4] * 10) end
return 1
"""
)

# Drops the expired reports (KEYS: citizens, expiry, staff): the start of every script that reads presence.
_PRUNE = (
    _NOW_MS
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  redis.call('HDEL', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
  redis.call('ZREM', KEYS[2], unpack(dead))
end
"""
)

# The sums of the live reports: {citizens, staff}.
_TOTAL = Script(
    _PRUNE
    + """
local function sum(key)
  local total = 0
  for _, n in ipairs(redis.call('HVALS', key)) do total = total + tonumber(n) end
  return total
end
return {sum(KEYS[1]), sum(KEYS[3])}
"""
)

# The live reports, node by node: {citizens by node, staff by node}.
_BY_NODE = Script(_PRUNE + "return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3])}\n")


def _per_node(flat: list[bytes | str | int]) -> dict[str, int]:
    pairs = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
    return {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}


class RedisPresence:
    def __init__(self, conn: RedisConn, keys: RedisKeys, *, ttl_s: float = 3.0) -> None:
        self._conn = conn.retain()
        self._keys = keys
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._reported: dict[str, set[str]] = {}  # node id -> town halls it has a live report in

    def _script_keys(self, th: str) -> tuple[str, str, str]:
        keys = self._keys.townhall(th)
        return keys.presence, keys.presence_expiry, keys.presence_staff

    async def _report_one(self, node_id: str, th: str, audience: Audience) -> None:
        args = (node_id, audience.citizens, audience.staff, self._ttl_ms)
        await self._conn.run(_REPORT, self._script_keys(th), args)

    async def report(self, node_id: str, counts: Mapping[str, Audience]) -> None:
        previous = self._reported.get(node_id, set())
        live = {th for th, audience in counts.items() if audience.total > 0}
        # Town halls this node no longer serves are withdrawn, so the report replaces the previous one.
        await asyncio.gather(
            *(self._report_one(node_id, th, counts[th]) for th in live),
            *(self._report_one(node_id, th, Audience()) for th in previous - live),
        )
        self._reported[node_id] = live

    async def totals(self, townhalls: Iterable[str]) -> dict[str, Audience]:
        wanted = list(dict.fromkeys(townhalls))

        async def total(th: str) -> Audience:
            citizens, staff = await self._conn.run(_TOTAL, self._script_keys(th), ())
            return Audience(int(citizens), int(staff))

        return dict(zip(wanted, await asyncio.gather(*(total(th) for th in wanted)), strict=True))

    async def by_node(self, th: str) -> dict[str, Audience]:
        citizens_flat, staff_flat = await self._conn.run(_BY_NODE, self._script_keys(th), ())
        citizens, staff = _per_node(citizens_flat), _per_node(staff_flat)
        nodes = {node: Audience(citizens.get(node, 0), staff.get(node, 0)) for node in citizens.keys() | staff.keys()}
        return {node: audience for node, audience in nodes.items() if audience.total > 0}

    async def close(self) -> None:
        reported, self._reported = self._reported, {}
        try:
            await asyncio.gather(
                *(self._report_one(node, th, Audience()) for node, ths in reported.items() for th in ths)
            )
        except Exception as exc:  # best effort: otherwise the reports expire after ttl_s
            log.info("could not withdraw presence reports: %s", exc or type(exc).__name__)
        finally:
            await self._conn.close()


_: type[PresenceManager] = RedisPresence
