"""The Redis store: town halls, questions, decisions, votes and reactions, shared by every node.

Each method is one command or one Lua script, and returns only after Redis has applied it. Everything that must not
be half done (an idempotent ask, a moderation transition with its audit record, a vote counted once per user) is
one script over keys that share the town hall's hash tag, so it runs atomically on one primary, also in a cluster.

The moderation rules are not written again in Lua: for each action, `_transition_table` runs models.apply_decision
on every (state, pinned) pair and hands the script the resulting table, so this store follows TRANSITIONS and
apply_decision exactly, like the memory store.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from jansamvad.models import PUBLIC_STATES, Decision, QState, Question, Status, Townhall, apply_decision, now_ms
from jansamvad.redis_conn import RedisConn, Script
from jansamvad.redis_keys import RedisKeys, TownhallKeys, asked_field
from jansamvad.store.base import BadState, NotFound, Store, new_townhall_id

# Shared by the scripts that return questions: a question is its hash (flat) and its decisions (JSON, oldest first).
_LOAD = """
local function load(key)
  local h = redis.call('HGETALL', key)
  if #h == 0 then return nil end
  return {h, redis.call('LRANGE', key .. ':log', 0, -1)}
end
"""

# KEYS: meta, asked, qseq, pending index. ARGV: asked field, question key prefix, pending, author, name, region,
# text, key, ts. Returns {'new'|'dup', question} or {'notfound'}.
_ADD_QUESTION = Script(
    _LOAD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local qid = redis.call('HGET', KEYS[2], ARGV[1])
if qid then return {'dup', load(ARGV[2] .. qid)} end
local n = redis.call('INCR', KEYS[3])
qid = string.format('q%d', n)
redis.call('HSET', ARGV[2] .. qid, 'qid', qid, 'state', ARGV[3], 'author', ARGV[4], 'name', ARGV[5],
  'region', ARGV[6], 'text', ARGV[7], 'key', ARGV[8], 'ts', ARGV[9], 'pinned', '0', 'votes', '0')
redis.call('HSET', KEYS[2], ARGV[1], qid)
redis.call('ZADD', KEYS[4], n, qid)
return {'new', load(ARGV[2] .. qid)}
"""
)

# KEYS: meta, question. Returns {'ok', question} / {'none'} / {'notfound'} (no such town hall).
_GET_QUESTION = Script(
    _LOAD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local q = load(KEYS[2])
if not q then return {'none'} end
return {'ok', q}
"""
)

# KEYS: meta, then one state index per wanted state. ARGV: question key prefix. Oldest first (by question number).
_QUESTIONS = Script(
    _LOAD
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

# KEYS: question, its log, then the state index of every state. ARGV: qid, decision record, number of states,
# the states (in KEYS order), then transition pairs 'state:pinned' -> 'state:pinned'.
_DECIDE = Script(
    _LOAD
    + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'pinned')
if not cur[1] then return {'notfound'} end
local nstates = tonumber(ARGV[3])
local from = cur[1] .. ':' .. cur[2]
local to = nil
for i = 4 + nstates, #ARGV, 2 do
  if ARGV[i] == from then to = ARGV[i + 1] break end
end
if not to then return {'badstate', cur[1]} end
local state, pinned = string.match(to, '^(.+):(%d)$')
redis.call('HSET', KEYS[1], 'state', state, 'pinned', pinned)
if state ~= cur[1] then
  local index = {}
  for i = 1, nstates do index[ARGV[3 + i]] = KEYS[2 + i] end
  local score = redis.call('ZSCORE', index[cur[1]], ARGV[1])
  redis.call('ZREM', index[cur[1]], ARGV[1])
  redis.call('ZADD', index[state], score, ARGV[1])
end
redis.call('RPUSH', KEYS[2], ARGV[2])
return {'ok', load(KEYS[1])}
"""
)

# KEYS: question, voters. ARGV: user, then the public states. Returns {'ok', votes, counted} or an error tag.
_UPVOTE = Script(
    """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'notfound'} end
local public = false
for i = 2, #ARGV do
  if ARGV[i] == state then public = true end
end
if not public then return {'badstate', state} end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  return {'ok', redis.call('HINCRBY', KEYS[1], 'votes', 1), 1}
end
return {'ok', tonumber(redis.call('HGET', KEYS[1], 'votes')), 0}
"""
)

# KEYS: meta. ARGV: new status, the ended status. An ended town hall stays ended.
_SET_STATUS = Script(
    """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {'notfound'} end
if cur == ARGV[2] and ARGV[1] ~= ARGV[2] then return {'badstate', cur} end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: meta, reactions. ARGV: kind, count, kind, count ... Returns the totals.
_ADD_REACTIONS = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
return {'ok', redis.call('HGETALL', KEYS[2])}
"""
)


@functools.cache
def _transition_table(action: str) -> tuple[str, ...]:
    """Pairs 'state:pinned' -> 'state:pinned' for every situation in which `action` applies (apply_decision)."""
    table: list[str] = []
    for state in QState:
        for pinned in (False, True):
            q = Question("", "", "", "", "", "", "", state=state, pinned=pinned)
            if apply_decision(q, action, "", "", 0):
                table += [f"{state.value}:{int(pinned)}", f"{q.state.value}:{int(q.pinned)}"]
    return tuple(table)


def _text(value: bytes) -> str:
    return value.decode()


def _pairs(flat: list[bytes]) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def _townhall(fields: Mapping[str, bytes]) -> Townhall:
    return Townhall(
        id=_text(fields["id"]),
        title=_text(fields["title"]),
        lang=_text(fields["lang"]),
        status=Status(_text(fields["status"])),
        created_ms=int(fields["created_ms"]),
    )


def _question(th: str, loaded: list[Any]) -> Question:
    fields = _pairs(loaded[0])
    decisions = [Decision(*json.loads(record)) for record in loaded[1]]
    return Question(
        qid=_text(fields["qid"]),
        th=th,
        author=_text(fields["author"]),
        name=_text(fields["name"]),
        region=_text(fields["region"]),
        text=_text(fields["text"]),
        key=_text(fields["key"]),
        state=QState(_text(fields["state"])),
        pinned=fields["pinned"] == b"1",
        votes=int(fields["votes"]),
        ts=int(fields["ts"]),
        decisions=decisions,
    )


def _check(reply: list[Any], what: str) -> list[Any]:
    """Turn a script's error tag into the interface's exceptions."""
    tag = reply[0]
    if tag == b"notfound":
        raise NotFound(f"no {what}")
    if tag == b"badstate":
        raise BadState(f"not allowed while it is {_text(reply[1])}")
    return reply


class RedisStore:
    def __init__(self, conn: RedisConn, keys: RedisKeys) -> None:
        self._conn = conn.retain()
        self._keys = keys

    def _th(self, th: str) -> TownhallKeys:
        return self._keys.townhall(th)

    async def close(self) -> None:
        await self._conn.close()

    # Town halls

    async def create_townhall(self, title: str, lang: str) -> Townhall:
        townhall = Townhall(new_townhall_id(), title, lang)
        mapping = {
            "id": townhall.id,
            "title": title,
            "lang": lang,
            "status": townhall.status.value,
            "created_ms": townhall.created_ms,
        }
        args: list[Any] = [x for item in mapping.items() for x in item]
        await self._conn.execute("HSET", self._th(townhall.id).meta, *args)
        # The index lives in its own slot, so it is written second: it never names a town hall that does not exist.
        await self._conn.execute("ZADD", self._keys.townhalls, townhall.created_ms, townhall.id)
        return townhall

    async def get_townhall(self, th: str) -> Townhall | None:
        fields = await self._conn.execute("HGETALL", self._th(th).meta)
        return _townhall({k.decode(): v for k, v in fields.items()}) if fields else None

    async def list_townhalls(self) -> list[Townhall]:
        ids = await self._conn.execute("ZRANGE", self._keys.townhalls, 0, -1)
        found = await asyncio.gather(*(self.get_townhall(th.decode()) for th in ids))
        return [townhall for townhall in found if townhall is not None]

    async def set_status(self, th: str, status: Status) -> Townhall:
        reply = await self._conn.run(_SET_STATUS, (self._th(th).meta,), (status.value, Status.ENDED.value))
        if reply[0] == b"badstate":
            raise BadState("the town hall has ended")
        return _townhall(_pairs(_check(reply, f"town hall {th}")[1]))

    # Questions

    async def add_question(
        self, th: str, *, author: str, key: str, text: str, name: str, region: str
    ) -> tuple[Question, bool]:
        keys = self._th(th)
        reply = await self._conn.run(
            _ADD_QUESTION,
            (keys.meta, keys.asked, keys.qseq, keys.state(QState.PENDING)),
            (
                asked_field(author, key),
                keys.question_prefix,
                QState.PENDING.value,
                author,
                name,
                region,
                text,
                key,
                now_ms(),
            ),
        )
        _check(reply, f"town hall {th}")
        return _question(th, reply[1]), reply[0] == b"new"

    async def get_question(self, th: str, qid: str) -> Question | None:
        keys = self._th(th)
        reply = await self._conn.run(_GET_QUESTION, (keys.meta, keys.question(qid).hash), ())
        if _check(reply, f"town hall {th}")[0] == b"none":
            return None
        return _question(th, reply[1])

    async def questions(self, th: str, states: Iterable[QState]) -> list[Question]:
        keys = self._th(th)
        indexes = [keys.state(state) for state in dict.fromkeys(states)]
        reply = await self._conn.run(_QUESTIONS, (keys.meta, *indexes), (keys.question_prefix,))
        return [_question(th, loaded) for loaded in _check(reply, f"town hall {th}")[1]]

    async def decide(self, th: str, qid: str, action: str, by: str, reason: str) -> Question:
        keys = self._th(th)
        question = keys.question(qid)
        states = list(QState)
        record = json.dumps([action, by, reason, now_ms()], ensure_ascii=False)
        reply = await self._conn.run(
            _DECIDE,
            (question.hash, question.log, *(keys.state(state) for state in states)),
            (qid, record, len(states), *(state.value for state in states), *_transition_table(action)),
        )
        if reply[0] == b"badstate":
            raise BadState(f"cannot {action} a question that is {_text(reply[1])}")
        return _question(th, _check(reply, f"question {qid}")[1])

    async def upvote(self, th: str, qid: str, user: str) -> tuple[int, bool]:
        question = self._th(th).question(qid)
        reply = await self._conn.run(
            _UPVOTE, (question.hash, question.voters), (user, *(state.value for state in PUBLIC_STATES))
        )
        if reply[0] == b"badstate":
            raise BadState("only public questions take votes")
        _check(reply, f"question {qid}")
        return int(reply[1]), bool(reply[2])

    async def add_reactions(self, th: str, counts: Mapping[str, int]) -> dict[str, int]:
        keys = self._th(th)
        args: list[Any] = [x for kind, n in counts.items() for x in (kind, n)]
        reply = await self._conn.run(_ADD_REACTIONS, (keys.meta, keys.reactions), args)
        return {kind: int(n) for kind, n in _pairs(_check(reply, f"town hall {th}")[1]).items()}


_: type[Store] = RedisStore
