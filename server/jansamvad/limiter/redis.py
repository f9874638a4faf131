"""Token buckets in Redis: one small Lua script per hit, so a limit holds across every node and worker.

The bucket is a hash (tokens, ts) under `P:{rl:<key>}` (its own hash tag: buckets spread over the cluster). The
script reads the server's clock (TIME), so nodes with skewed clocks still agree, and lets an idle bucket expire
once it would be full again.

Buckets are spread over every slot, so a lost or stopped shard would otherwise refuse the questions and votes of
citizens whose buckets it holds, in town halls on healthy shards too. While a bucket's server cannot answer, the
limit is kept in this process instead (the memory limiter): per node rather than across nodes, for the few seconds
of a failover, which bounds abuse without stopping healthy town halls.
"""

from __future__ import annotations

from jansamvad.limiter.base import RateLimiter
from jansamvad.limiter.memory import MemoryRateLimiter
from jansamvad.redis_conn import RedisConn, RedisUnavailable, Script
from jansamvad.redis_keys import RedisKeys

_HIT = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
if tokens < 1 then
  return math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
if cost == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - cost), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return 0
"""
)


class RedisRateLimiter:
    def __init__(self, conn: RedisConn, keys: RedisKeys) -> None:
        self._conn = conn.retain()
        self._keys = keys
        self._fallback = MemoryRateLimiter()
        self.fallbacks = 0  # hits counted in process because the bucket's server could not answer

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> int:
        bucket = self._keys.rate_bucket(key)
        try:
            return int(await self._conn.run(_HIT, [bucket], [repr(float(rate)), int(burst), int(cost)]))
        except RedisUnavailable:
            self.fallbacks += 1
            return await self._fallback.hit(key, rate, burst, cost)

    async def close(self) -> None:
        await self._fallback.close()
        await self._conn.close()


_: type[RateLimiter] = RedisRateLimiter
