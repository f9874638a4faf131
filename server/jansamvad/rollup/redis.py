"""The roll-up in Redis: per town hall, one hash of viewers per unit summed over the nodes, one hash per node with its
own share, a sorted set of when each node's report expires, and one hash of activity counters.

A write is one script per town hall per tick, with only the units that changed (each with its ancestors: the node
sums up the tree before it writes): it turns the node's absolute counts
into increments of the summed hash (so a repeated write changes nothing), adds the activity increments and renews the
node's report. A node that stops writing (it died, or lost Redis) is removed by the next write or read `ttl_s` later:
its share is subtracted from the sum and its hash deleted, so a dead node's viewers never stick. A read is one script
that fetches only the units asked for (HMGET), whatever the number of nodes and units. All keys share the town
hall's hash tag (one slot in a cluster).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from jansamvad.redis_conn import RedisConn, Script
from jansamvad.redis_keys import RedisKeys
from jansamvad.rollup.base import COUNTERS, Rollup, UnitCounts

log = logging.getLogger("jansamvad.rollup.redis")

# Removes the nodes whose report expired. Needs KEYS[1] (summed viewers), KEYS[2] (expiry) and `prefix`.
_REAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(hash)
  local flat = redis.call('HGETALL', hash)
  for i = 1, #flat, 2 do
    if redis.call('HINCRBY', KEYS[1], flat[i], -tonumber(flat[i + 1])) <= 0 then
      redis.call('HDEL', KEYS[1], flat[i])
    end
  end
  redis.call('DEL', hash)
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, node in ipairs(dead) do drop(prefix .. node) end
if #dead > 0 then redis.call('ZREM', KEYS[2], unpack(dead)) end
"""

# KEYS: summed viewers, expiry, activity, this node's hash. ARGV: node id, ttl ms, keep ms (0: no expiry), full (1/0),
# node hash prefix, number of viewer pairs, then unit, count pairs, then `counter|unit`, increment pairs.
# Returns 1, or 0 when the node's earlier report had been removed (and this one was not full).
_WRITE = Script(
    "local prefix = ARGV[5]\n"
    + _REAP
    + """
local known = redis.call('ZSCORE', KEYS[2], ARGV[1])
local full = ARGV[4] == '1'
if full then drop(KEYS[4]) end
local n = tonumber(ARGV[6])
for i = 7, 6 + 2 * n, 2 do
  local unit, count = ARGV[i], tonumber(ARGV[i + 1])
  local old = tonumber(redis.call('HGET', KEYS[4], unit) or '0')
  if count ~= old then
    if redis.call('HINCRBY', KEYS[1], unit, count - old) <= 0 then redis.call('HDEL', KEYS[1], unit) end
    if count > 0 then redis.call('HSET', KEYS[4], unit, count) else redis.call('HDEL', KEYS[4], unit) end
  end
end
for i = 7 + 2 * n, #ARGV, 2 do redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
if tonumber(ARGV[3]) > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
if known or full then return 1 end
return 0
"""
)

# KEYS: summed viewers, expiry, activity. ARGV: node hash prefix, number of units, the units, then activity fields.
# Returns {viewers of the units, values of the fields} (HMGET in slices: Lua's unpack has a limit).
_READ = Script(
    "local prefix = ARGV[1]\n"
    + _REAP
    + """
local function hmget(key, first, last)
  local out = {}
  for i = first, last, 1000 do
    local values = redis.call('HMGET', key, unpack(ARGV, i, math.min(i + 999, last)))
    for _, v in ipairs(values) do out[#out + 1] = v end
  end
  return out
end
local n = tonumber(ARGV[2])
return {hmget(KEYS[1], 3, 2 + n), hmget(KEYS[3], 3 + n, #ARGV)}
"""
)

# KEYS: summed viewers, expiry, this node's hash. ARGV: node hash prefix, node id. A node leaving cleanly.
_WITHDRAW = Script(
    "local prefix = ARGV[1]\n" + _REAP + "drop(KEYS[3])\nredis.call('ZREM', KEYS[2], ARGV[2])\nreturn 1\n"
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRollup:
    def __init__(self, conn: RedisConn, keys: RedisKeys, *, ttl_s: float = 3.0, keep_s: float = 0.0) -> None:
        self._conn = conn.retain()
        self._keys = keys
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._keep_ms = max(0, int(keep_s * 1000))
        self._written: set[tuple[str, str]] = set()  # (node id, town hall) with a report to withdraw on close

    async def write(
        self,
        node_id: str,
        th: str,
        viewers: Mapping[str, int],
        activity: Mapping[str, Mapping[str, int]],
        *,
        full: bool,
    ) -> bool:
        keys = self._keys.townhall(th)
        args: list[str | int] = [node_id, self._ttl_ms, self._keep_ms, int(full), keys.rollup_node_prefix]
        args.append(len(viewers))
        for unit, n in viewers.items():
            args += [unit, n]
        for counter, increments in activity.items():
            for unit, n in increments.items():
                args += [f"{counter}|{unit}", n]
        script_keys = (keys.rollup_viewers, keys.rollup_nodes, keys.rollup_activity, keys.rollup_node_prefix + node_id)
        self._written.add((node_id, th))
        return bool(await self._conn.run(_WRITE, script_keys, args))

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        keys = self._keys.townhall(th)
        units, named = list(dict.fromkeys(codes)), tuple(counters)
        activity = [(counter, unit) for counter in named if counter != "viewers" for unit in units]
        viewers = "viewers" in named
        args: list[str | int] = [keys.rollup_node_prefix, len(units), *units, *(f"{c}|{u}" for c, u in activity)]
        seen, done = await self._conn.run(_READ, (keys.rollup_viewers, keys.rollup_nodes, keys.rollup_activity), args)
        out: UnitCounts = {}
        for (counter, unit), value in zip(activity, done, strict=True):
            if value is not None and int(value):
                out.setdefault(unit, {})[counter] = int(value)
        if viewers:
            for unit, value in zip(units, seen, strict=True):
                if value is not None and int(value):
                    out.setdefault(unit, {})["viewers"] = int(value)
        return out

    async def _withdraw(self, node_id: str, th: str) -> None:
        keys = self._keys.townhall(th)
        script_keys = (keys.rollup_viewers, keys.rollup_nodes, keys.rollup_node_prefix + node_id)
        await self._conn.run(_WITHDRAW, script_keys, (keys.rollup_node_prefix, node_id))

    async def close(self) -> None:
        written, self._written = self._written, set()
        try:
            await asyncio.gather(*(self._withdraw(node, th) for node, th in written))
        except Exception as exc:  # best effort: otherwise the reports expire after ttl_s
            log.info("could not withdraw roll-up reports: %s", exc or type(exc).__name__)
        finally:
            await self._conn.close()


_: type[Rollup] = RedisRollup
