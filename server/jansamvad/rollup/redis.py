"""The roll-up in Redis: per town hall, each node's own two hashes (its gauges per unit: viewers, booth screens and
their audience; its activity per unit; both absolute and already summed up the tree by the node), a sorted set of
when each node's report expires, and the retired activity of nodes that are gone.

A write is one script per town hall per tick: two HSETs of the units that changed and a renewal of the report, no
arithmetic in Redis, so a repeated write changes nothing. A node that stops writing (it died, or lost Redis) is
removed by the next write or read `ttl_s` later: its viewers are deleted and its activity added to the retired
counts, so dead nodes' viewers never stick and what their citizens did stays. A read is one script that sums only the
units asked for (HMGET) over the live nodes and the retired counts: its cost is the view's size times the number of
nodes, never the size of the tree. All keys share the town hall's hash tag (one slot in a cluster).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from jansamvad.redis_conn import RedisConn, Script
from jansamvad.redis_keys import RedisKeys
from jansamvad.rollup.base import COUNTERS, GAUGES, Rollup, UnitCounts, gauge_field

log = logging.getLogger("jansamvad.rollup.redis")

WITHDRAW_S = 1.0  # how long a closing node tries to withdraw its reports (they expire after ttl_s anyway)
READ_UNITS_PER_CALL = 500  # a big read (an export per booth) goes in slices, so Redis serves others in between

# Needs KEYS[1] (expiry), KEYS[2] (retired) and `prefix`. Removes the nodes whose report expired. HDEL, HSET and
# HMGET go in slices: Lua's unpack has a limit.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function sliced(command, key, list, step)
  for i = 1, #list, step do redis.call(command, key, unpack(list, i, math.min(i + step - 1, #list))) end
end
local function retire(node)
  local a = prefix .. node .. ':a'
  local flat = redis.call('HGETALL', a)
  for i = 1, #flat, 2 do redis.call('HINCRBY', KEYS[2], flat[i], flat[i + 1]) end
  redis.call('DEL', a, prefix .. node .. ':v')
  redis.call('ZREM', KEYS[1], node)
end
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do retire(node) end
"""

# KEYS: expiry, retired, this node's gauges, its activity. ARGV: node id, ttl ms, keep ms (0: no expiry), full (1/0),
# node key prefix, number of gauge pairs, then gauge field, number pairs, then `counter|unit`, total pairs.
# Returns 1, or 0 (writing nothing) when the node's report had been removed and this write is not full.
_WRITE = Script(
    "local prefix = ARGV[5]\n"
    + _COMMON
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and ARGV[4] ~= '1' then return 0 end
if ARGV[4] == '1' then redis.call('DEL', KEYS[3], KEYS[4]) end
local n = tonumber(ARGV[6])
local set, gone, totals = {}, {}, {}
for i = 7, 6 + 2 * n, 2 do
  if tonumber(ARGV[i + 1]) > 0 then
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  else
    gone[#gone + 1] = ARGV[i]
  end
end
for i = 7 + 2 * n, #ARGV do totals[#totals + 1] = ARGV[i] end
sliced('HSET', KEYS[3], set, 2000)
sliced('HDEL', KEYS[3], gone, 1000)
sliced('HSET', KEYS[4], totals, 2000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if tonumber(ARGV[3]) > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 1
"""
)

# KEYS: expiry, retired. ARGV: node key prefix, number of gauge fields, the gauge fields, then activity fields.
# Returns {each gauge field summed over the live nodes, each activity field summed over the live nodes and the
# retired}.
_READ = Script(
    "local prefix = ARGV[1]\n"
    + _COMMON
    + """
local function summed(keys, first, last)
  local out = {}
  for i = first, last do out[i - first + 1] = 0 end
  for _, key in ipairs(keys) do
    for i = first, last, 1000 do
      local values = redis.call('HMGET', key, unpack(ARGV, i, math.min(i + 999, last)))
      for j, v in ipairs(values) do
        if v then out[i - first + j] = out[i - first + j] + tonumber(v) end
      end
    end
  end
  return out
end
local vkeys, akeys = {}, {KEYS[2]}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  vkeys[#vkeys + 1] = prefix .. node .. ':v'
  akeys[#akeys + 1] = prefix .. node .. ':a'
end
local n = tonumber(ARGV[2])
return {summed(vkeys, 3, 2 + n), summed(akeys, 3 + n, #ARGV)}
"""
)

# KEYS: expiry, retired. ARGV: node key prefix, node id. A node leaving cleanly.
_WITHDRAW = Script("local prefix = ARGV[1]\n" + _COMMON + "retire(ARGV[2])\nreturn 1\n")


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
        gauges: Mapping[str, int],
        activity: Mapping[str, Mapping[str, int]],
        *,
        full: bool,
    ) -> bool:
        keys = self._keys.townhall(th)
        mine = keys.rollup_node_prefix + node_id
        args: list[str | int] = [node_id, self._ttl_ms, self._keep_ms, int(full), keys.rollup_node_prefix]
        args.append(len(gauges))
        for name, n in gauges.items():
            args += [name, n]
        for counter, totals in activity.items():
            for unit, n in totals.items():
                args += [f"{counter}|{unit}", n]
        self._written.add((node_id, th))
        script_keys = (keys.rollup_nodes, keys.rollup_retired, mine + ":v", mine + ":a")
        return bool(await self._conn.run(_WRITE, script_keys, args))

    async def read(self, th: str, codes: Iterable[str], counters: Iterable[str] = COUNTERS) -> UnitCounts:
        units, named = list(dict.fromkeys(codes)), tuple(counters)
        out: UnitCounts = {}
        for first in range(0, len(units), READ_UNITS_PER_CALL):
            await self._read_slice(th, units[first : first + READ_UNITS_PER_CALL], named, out)
        return out

    async def _read_slice(self, th: str, units: list[str], counters: tuple[str, ...], out: UnitCounts) -> None:
        keys = self._keys.townhall(th)
        gauges = [(counter, unit) for counter in counters if counter in GAUGES for unit in units]
        fields = [(counter, unit) for counter in counters if counter not in GAUGES for unit in units]
        args: list[str | int] = [keys.rollup_node_prefix, len(gauges), *(gauge_field(g, u) for g, u in gauges)]
        args += [f"{c}|{u}" for c, u in fields]
        now, activity = await self._conn.run(_READ, (keys.rollup_nodes, keys.rollup_retired), args)
        for (counter, unit), value in zip([*gauges, *fields], [*now, *activity], strict=True):
            if int(value):
                out.setdefault(unit, {})[counter] = int(value)

    async def _withdraw(self, node_id: str, th: str) -> None:
        keys = self._keys.townhall(th)
        await self._conn.run(_WITHDRAW, (keys.rollup_nodes, keys.rollup_retired), (keys.rollup_node_prefix, node_id))

    async def close(self) -> None:
        written, self._written = self._written, set()
        try:  # bounded: a shutdown must not wait on a sick Redis (or a connection that never completes)
            await asyncio.wait_for(asyncio.gather(*(self._withdraw(n, th) for n, th in written)), WITHDRAW_S)
        except Exception as exc:  # best effort: otherwise the reports expire after ttl_s
            log.info("could not withdraw roll-up reports: %s", exc or type(exc).__name__)
        finally:
            await self._conn.close()


_: type[Rollup] = RedisRollup
