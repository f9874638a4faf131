"""The Redis store's Lua scripts. Each runs atomically on the primary that owns one town hall's slot.

Conventions: a script answers a table whose first element is a tag, 'ok' (or 'new' / 'dup' / 'none'), 'notfound'
or 'badstate' (then the current state); store/redis.py turns the tags into NotFound and BadState. Key names come in
KEYS (redis_keys.py builds them); a few keys are derived inside a script from a declared prefix, which is safe in a
cluster because they carry the same hash tag. JSON records are assembled in Python (or from pieces Python already
encoded), so Lua never re-encodes user text. A set of states travels as one ARGV string like ",approved,answered,".
"""

from __future__ import annotations

from jansamvad.redis_conn import Script

# A question is its hash (flat) and its decisions (JSON, oldest first). `publicity` keeps the vote rankings (what
# top_votes reads) in step when a question becomes public or stops being public.
_QUESTIONS = """
local function load(key)
  local h = redis.call('HGETALL', key)
  if #h == 0 then return nil end
  return {h, redis.call('LRANGE', key .. ':log', 0, -1)}
end

local function among(set, state)
  return string.find(set, ',' .. state .. ',', 1, true) ~= nil
end

local function publicity(qkey, was, now, rank, group_rank, group_public)
  if was == now then return end
  local q = redis.call('HMGET', qkey, 'qid', 'group', 'votes')
  local votes = tonumber(q[3])
  if now then
    redis.call('ZADD', rank, votes, q[1])
    redis.call('ZINCRBY', group_rank, votes, q[2])
    redis.call('HINCRBY', group_public, q[2], 1)
  else
    redis.call('ZREM', rank, q[1])
    if redis.call('HINCRBY', group_public, q[2], -1) <= 0 then
      redis.call('HDEL', group_public, q[2])
      redis.call('ZREM', group_rank, q[2])
    else
      redis.call('ZINCRBY', group_rank, -votes, q[2])
    end
  end
end
"""

# KEYS: meta, asked, qseq, index of the new state, recent (author), groups, audit, rank, group_rank, group_public.
# ARGV: asked field, question prefix, state, author, name, region, text, key, ts, flags (JSON), group, lang,
# public states, rejection reason (JSON string; '' unless auto-rejected), text (JSON string), recent cap, unit.
ADD_QUESTION = Script(
    _QUESTIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local qid = redis.call('HGET', KEYS[2], ARGV[1])
if qid then return {'dup', load(ARGV[2] .. qid)} end
local n = redis.call('INCR', KEYS[3])
qid = string.format('q%d', n)
local qkey = ARGV[2] .. qid
local group = ARGV[11]
if group == '' then group = qid end
redis.call('HSET', qkey, 'qid', qid, 'state', ARGV[3], 'author', ARGV[4], 'name', ARGV[5], 'region', ARGV[6],
  'text', ARGV[7], 'key', ARGV[8], 'ts', ARGV[9], 'flags', ARGV[10], 'group', group, 'lang', ARGV[12],
  'pinned', '0', 'votes', '0', 'unit', ARGV[17])
redis.call('HSET', KEYS[2], ARGV[1], qid)
redis.call('ZADD', KEYS[4], n, qid)
if ARGV[14] ~= '' then
  redis.call('RPUSH', qkey .. ':log', '["reject","auto",' .. ARGV[14] .. ',' .. ARGV[9] .. ']')
  redis.call('RPUSH', KEYS[7],
    '{"ts":' .. ARGV[9] .. ',"what":"reject","qid":"' .. qid .. '","by":"auto","reason":' .. ARGV[14] .. '}')
end
if group == qid then
  redis.call('RPUSH', KEYS[6], '["' .. qid .. '",' .. ARGV[15] .. ']')
end
redis.call('RPUSH', KEYS[5], ARGV[7])
redis.call('LTRIM', KEYS[5], -tonumber(ARGV[16]), -1)
publicity(qkey, false, among(ARGV[13], ARGV[3]), KEYS[8], KEYS[9], KEYS[10])
return {'new', load(qkey)}
"""
)

# KEYS: meta, question. Returns {'ok', question}, {'none'}, or {'notfound'} (no such town hall).
GET_QUESTION = Script(
    _QUESTIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local q = load(KEYS[2])
if not q then return {'none'} end
return {'ok', q}
"""
)

# KEYS: meta, asked. ARGV: asked field, question prefix. Returns {'ok', question}, {'none'} or {'notfound'}.
QUESTION_FOR_KEY = Script(
    _QUESTIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local qid = redis.call('HGET', KEYS[2], ARGV[1])
if not qid then return {'none'} end
return {'ok', load(ARGV[2] .. qid)}
"""
)

# KEYS: meta, then the index of every wanted state. ARGV: question prefix. Oldest first (by question number).
QUESTIONS = Script(
    _QUESTIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local ids = {}
for i = 2, #KEYS do
  local z = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
  for j = 1, #z, 2 do ids[#ids + 1] = {tonumber(z[j + 1]), z[j]} end
end
table.sort(ids, function(a, b) return a[1] < b[1] end)
local out = {}
for _, id in ipairs(ids) do
  local q = load(ARGV[1] .. id[2])
  if q then out[#out + 1] = q end
end
return {'ok', out}
"""
)

# KEYS: question, its log, audit, rank, group_rank, group_public, then the index of every state.
# ARGV: qid, decision record, audit record, public states, number of states, the states (in KEYS order), then
# transition pairs 'state:pinned' -> 'state:pinned' (from models.apply_decision).
# KEYS: meta, asked, recent (author), groups, audit, rank, group_rank, group_public, then the state indexes.
# ARGV: question prefix, author, public states, audit entry (JSON), number of states, the states, then per question
# its qid, its idempotency field and its entry in `groups` ('' when it does not head a group).
ERASE_QUESTIONS = Script(
    _QUESTIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local nstates = tonumber(ARGV[5])
local index = {}
for i = 1, nstates do index[ARGV[5 + i]] = KEYS[8 + i] end
local erased = 0
for i = 6 + nstates, #ARGV, 3 do
  local qkey = ARGV[1] .. ARGV[i]
  local q = redis.call('HMGET', qkey, 'author', 'state')
  if q[1] == ARGV[2] then
    publicity(qkey, among(ARGV[3], q[2]), false, KEYS[6], KEYS[7], KEYS[8])
    redis.call('ZREM', index[q[2]], ARGV[i])
    redis.call('DEL', qkey, qkey .. ':log', qkey .. ':voters', qkey .. ':claim')
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    if ARGV[i + 2] ~= '' then redis.call('LREM', KEYS[4], 0, ARGV[i + 2]) end
    erased = erased + 1
  end
end
redis.call('DEL', KEYS[3])
if erased > 0 then redis.call('RPUSH', KEYS[5], ARGV[4]) end
return {'ok', erased}
"""
)

# KEYS: meta, programme. ARGV: the programme (JSON), the ended status. Only while the town hall exists, not ended.
PUT_PROGRAMME = Script(
    """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'notfound'} end
if status == ARGV[2] then return {'badstate', status} end
redis.call('SET', KEYS[2], ARGV[1])
return {'ok'}
"""
)

DECIDE = Script(
    _QUESTIONS
    + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'pinned')
if not cur[1] then return {'notfound'} end
local nstates = tonumber(ARGV[5])
local from = cur[1] .. ':' .. cur[2]
local to = nil
for i = 6 + nstates, #ARGV, 2 do
  if ARGV[i] == from then to = ARGV[i + 1] break end
end
if not to then return {'badstate', cur[1]} end
local state, pinned = string.match(to, '^(.+):(%d)$')
redis.call('HSET', KEYS[1], 'state', state, 'pinned', pinned)
if state ~= cur[1] then
  local index = {}
  for i = 1, nstates do index[ARGV[5 + i]] = KEYS[6 + i] end
  local score = redis.call('ZSCORE', index[cur[1]], ARGV[1])
  redis.call('ZREM', index[cur[1]], ARGV[1])
  redis.call('ZADD', index[state], score, ARGV[1])
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
publicity(KEYS[1], among(ARGV[4], cur[1]), among(ARGV[4], state), KEYS[4], KEYS[5], KEYS[6])
return {'ok', load(KEYS[1])}
"""
)

# KEYS: question, voters, rank, group_rank. ARGV: user, public states. Returns {'ok', votes, counted}, or {'own'}
# when the user asked the question.
UPVOTE = Script(
    _QUESTIONS
    + """
local q = redis.call('HMGET', KEYS[1], 'state', 'qid', 'group', 'author')
if not q[1] then return {'notfound'} end
if not among(ARGV[2], q[1]) then return {'badstate', q[1]} end
if q[4] == ARGV[1] then return {'own'} end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  local votes = redis.call('HINCRBY', KEYS[1], 'votes', 1)
  redis.call('ZINCRBY', KEYS[3], 1, q[2])
  redis.call('ZINCRBY', KEYS[4], 1, q[3])
  return {'ok', votes, 1}
end
return {'ok', tonumber(redis.call('HGET', KEYS[1], 'votes')), 0}
"""
)

# KEYS: meta, rank, group_rank. ARGV: limit. Everything that scores at least the limit-th entry comes back, so
# Python can break ties by id exactly as the memory store does.
TOP_VOTES = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local limit = tonumber(ARGV[1])
local function top(key)
  if limit <= 0 then return {} end
  local r = redis.call('ZREVRANGE', key, 0, limit - 1, 'WITHSCORES')
  if #r == 2 * limit then
    r = redis.call('ZRANGEBYSCORE', key, r[#r], '+inf', 'WITHSCORES')
  end
  return r
end
return {'ok', top(KEYS[2]), top(KEYS[3])}
"""
)

# KEYS: meta. ARGV: new status, the ended status. An ended town hall stays ended.
SET_STATUS = Script(
    """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {'notfound'} end
if cur == ARGV[2] and ARGV[1] ~= ARGV[2] then return {'badstate', cur} end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: meta, audit. ARGV: seconds, audit record.
SET_SLOW_MODE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
redis.call('HSET', KEYS[1], 'slow_mode_s', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: meta, reactions. ARGV: kind, count, kind, count ... Returns the totals.
ADD_REACTIONS = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
return {'ok', redis.call('HGETALL', KEYS[2])}
"""
)

# KEYS: meta, a list. ARGV: n. The last n entries, oldest first (all of them when n < 0).
LIST_TAIL = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local n = tonumber(ARGV[1])
if n == 0 then return {'ok', {}} end
if n < 0 then return {'ok', redis.call('LRANGE', KEYS[2], 0, -1)} end
return {'ok', redis.call('LRANGE', KEYS[2], -n, -1)}
"""
)

# KEYS: meta, a list. ARGV: an entry. Appends only to a town hall that exists (restrictions audit every hall).
APPEND_IF_HALL = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return 1
"""
)

# Polls. A poll's hash has pid, question, options (JSON), state, ts, n (options) and the counts c0, c1 ...

# KEYS: meta, pseq, polls. ARGV: poll prefix, question, options (JSON), number of options, ts, draft state.
CREATE_POLL = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local n = redis.call('INCR', KEYS[2])
local pid = string.format('p%d', n)
local key = ARGV[1] .. pid
redis.call('HSET', key, 'pid', pid, 'question', ARGV[2], 'options', ARGV[3], 'n', ARGV[4], 'state', ARGV[6],
  'ts', ARGV[5])
for i = 0, tonumber(ARGV[4]) - 1 do redis.call('HSET', key, 'c' .. i, 0) end
redis.call('ZADD', KEYS[3], n, pid)
return {'ok', redis.call('HGETALL', key)}
"""
)

# KEYS: poll, audit, meta. ARGV: new state, the state it must come from ('' when none), audit record, the open state,
# the ended status: a poll never opens in an ended town hall (checked in the same step, so it cannot race `end`).
SET_POLL_STATE = Script(
    """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {'notfound'} end
if cur ~= ARGV[2] then return {'badstate', cur} end
if ARGV[1] == ARGV[4] and redis.call('HGET', KEYS[3], 'status') == ARGV[5] then return {'badstate', 'ended'} end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[3])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: poll, voters (hash user -> option). ARGV: user, option, the open state. Returns {'ok', the option that
# counts for the user, counted now}: the first vote counts.
VOTE_POLL = Script(
    """
local p = redis.call('HMGET', KEYS[1], 'state', 'n')
if not p[1] then return {'notfound'} end
if p[1] ~= ARGV[3] then return {'badstate', 'closed'} end
local option = tonumber(ARGV[2])
if option < 0 or option >= tonumber(p[2]) then return {'badstate', 'option'} end
if redis.call('TYPE', KEYS[2])['ok'] == 'set' then
  -- A poll opened before an upgrade keeps its voters as a set (user only): still one vote per user, though which
  -- option counted for an earlier voter is not known, so a repeat is acked with the option it asked for.
  if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {'ok', option, 0} end
  redis.call('HINCRBY', KEYS[1], 'c' .. option, 1)
  return {'ok', option, 1}
end
if redis.call('HSETNX', KEYS[2], ARGV[1], option) == 0 then
  return {'ok', tonumber(redis.call('HGET', KEYS[2], ARGV[1])), 0}
end
redis.call('HINCRBY', KEYS[1], 'c' .. option, 1)
return {'ok', option, 1}
"""
)

# KEYS: meta, polls. ARGV: poll prefix, wanted states. Oldest first.
POLLS = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local out = {}
for _, pid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local key = ARGV[1] .. pid
  local state = redis.call('HGET', key, 'state')
  if state and string.find(ARGV[2], ',' .. state .. ',', 1, true) then
    out[#out + 1] = redis.call('HGETALL', key)
  end
end
return {'ok', out}
"""
)

# Claims: a key per claimed question, expiring with the claim; times are the Redis server's.

# KEYS: question, claim. ARGV: moderator, ttl ms. Returns {'ok', holder, until_ms}.
CLAIM = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  return {'ok', holder, now + math.max(redis.call('PTTL', KEYS[2]), 0)}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'ok', ARGV[1], now + tonumber(ARGV[2])}
"""
)

# KEYS: meta, claim. ARGV: moderator. Returns {'ok', released}.
RELEASE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return {'ok', 1}
end
return {'ok', 0}
"""
)

# KEYS: meta, claim. Returns {'ok'} or {'ok', holder}.
CLAIM_HOLDER = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local holder = redis.call('GET', KEYS[2])
if holder then return {'ok', holder} end
return {'ok'}
"""
)

# KEYS: some keys of one town hall (one slot). ARGV: milliseconds. Every key expires then; returns how many exist.
EXPIRE_ALL = Script(
    """
local n = 0
for i = 1, #KEYS do
  n = n + redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return n
"""
)
