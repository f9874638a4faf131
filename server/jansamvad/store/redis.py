"""The Redis store: town halls, questions, decisions, votes, polls, claims, restrictions and the audit log.
Programmes, erasure on request and the region tree are its mixins (store/redis_programmes.py, redis_erasure.py,
redis_regions.py); how records read and write is in store/redis_records.py.

Each method is one command or one Lua script (store/redis_lua.py) and returns only after Redis has applied it, and
with --ack-durability also after a replica or the AOF has it (`RedisConn.settle`: every write an `ack` reports on,
including a retry that found its write already done).
Everything that must not be half done (an idempotent ask, a moderation transition with its audit records, a vote
counted once per user, a poll vote) is one script over keys that share the town hall's hash tag, so it runs
atomically on one primary, also in a cluster.

The moderation rules are not written again in Lua: for each action, `_transition_table` runs models.apply_decision
on every (state, pinned) pair and hands the script the resulting table, so this store follows TRANSITIONS and
apply_decision exactly, like the memory store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jansamvad.models import (
    Poll,
    PollState,
    QState,
    Question,
    Restriction,
    RestrictionKind,
    Status,
    Townhall,
    now_ms,
)
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys, TownhallKeys, asked_field
from jansamvad.store import redis_lua as lua
from jansamvad.store.base import BadState, LimitReached, OwnQuestion, Store, new_townhall_id
from jansamvad.store.redis_erasure import RedisErasure
from jansamvad.store.redis_programmes import RedisProgrammes
from jansamvad.store.redis_records import (  # under the names the methods below have always used
    PUBLIC_ARG as _PUBLIC,
    check as _check,
    json_text as _json,
    pairs as _pairs,
    poll_record as _poll,
    question_record as _question,
    restriction_record as _restriction,
    states_arg as _states,
    text as _text,
    top_votes as _top,
    townhall_record as _townhall,
    transition_table as _transition_table,
)
from jansamvad.store.redis_regions import RedisRegions

ANYWHERE = "*"  # a restriction's scope: every town hall
RECENT_TEXTS = 50  # question texts kept per author (the repeated-text rule reads a few)
_POLL_PREVIOUS = {PollState.OPEN: PollState.DRAFT, PollState.CLOSED: PollState.OPEN}  # draft -> open -> closed


_EXPIRE_BATCH = 500  # keys per script call: short scripts, so the server never stalls on one


class RedisStore(RedisErasure, RedisProgrammes, RedisRegions):
    def __init__(self, conn: RedisConn, keys: RedisKeys, *, ended_retention_s: float = 0.0) -> None:
        self._conn = conn.retain()
        self._keys = keys
        self._retention_s = ended_retention_s  # 0: ended town halls are kept until deleted by hand

    def _th(self, th: str) -> TownhallKeys:
        return self._keys.townhall(th)

    async def close(self) -> None:
        await self._conn.close()

    # Town halls

    async def create_townhall(self, title: str, lang: str, *, max_open: int = 0) -> Townhall:
        # A soft cap: the count and the add are separate commands (the index and a town hall live in different
        # cluster slots), so creates racing on several nodes can each pass it; they are few (creates are rate-limited
        # per IP and need the admin key), and the cap bounds abuse, it is not a quota.
        if max_open > 0 and await self._conn.execute("ZCARD", self._keys.open_townhalls) >= max_open:
            # The index can only over-count (a crash between ending a town hall and removing it): recount from the
            # town halls themselves before refusing. Rare (only at the cap) and bounded by the cap.
            ids = [th.decode() for th in await self._conn.execute("ZRANGE", self._keys.open_townhalls, 0, -1)]
            found = await asyncio.gather(*(self.get_townhall(th) for th in ids))
            gone = [th for th, hall in zip(ids, found, strict=True) if hall is None or hall.status is Status.ENDED]
            if gone:
                await self._conn.execute("ZREM", self._keys.open_townhalls, *gone)
            if len(ids) - len(gone) >= max_open:
                raise LimitReached(f"{len(ids) - len(gone)} town halls are open; the limit is {max_open}")
        townhall = Townhall(new_townhall_id(), title, lang)
        mapping = {
            "id": townhall.id,
            "title": title,
            "lang": lang,
            "status": townhall.status.value,
            "created_ms": townhall.created_ms,
            "slow_mode_s": townhall.slow_mode_s,
        }
        args: list[Any] = [x for item in mapping.items() for x in item]
        await self._conn.execute("HSET", self._th(townhall.id).meta, *args)
        # The index lives in its own slot, so it is written second: it never names a town hall that does not exist.
        await self._conn.execute("ZADD", self._keys.townhalls, townhall.created_ms, townhall.id)
        await self._conn.execute("ZADD", self._keys.open_townhalls, townhall.created_ms, townhall.id)
        return townhall

    async def get_townhall(self, th: str) -> Townhall | None:
        fields = await self._conn.execute("HGETALL", self._th(th).meta)
        return _townhall({k.decode(): v for k, v in fields.items()}) if fields else None

    async def list_townhalls(self) -> list[Townhall]:
        ids = await self._townhall_ids()
        found = await asyncio.gather(*(self.get_townhall(th) for th in ids))
        expired = [th for th, townhall in zip(ids, found, strict=True) if townhall is None]
        if expired:  # their retention ran out: the index forgets them too
            await self._conn.execute("ZREM", self._keys.townhalls, *expired)
        return [townhall for townhall in found if townhall is not None]

    async def _townhall_ids(self) -> list[str]:
        return [th.decode() for th in await self._conn.execute("ZRANGE", self._keys.townhalls, 0, -1)]

    async def set_status(self, th: str, status: Status) -> Townhall:
        reply = await self._conn.run(lua.SET_STATUS, (self._th(th).meta,), (status.value, Status.ENDED.value))
        if reply[0] == b"badstate":
            raise BadState("the town hall has ended")
        townhall = _townhall(_pairs(_check(reply, f"town hall {th}")[1]))
        await self._conn.settle(self._th(th).meta)
        if townhall.status is Status.ENDED:
            await self._conn.execute("ZREM", self._keys.open_townhalls, th)
            if self._retention_s > 0:
                # Every key of the town hall (store and event stream) expires after the retention. Ending again
                # (a retry after an error here) sets the same expiry again, so a partial pass is completed.
                await self._expire_townhall(th, int(self._retention_s * 1000))
        return townhall

    async def _expire_townhall(self, th: str, ms: int) -> None:
        names = await self._conn.keys_with_prefix(self._th(th).base + ":")
        for start in range(0, len(names), _EXPIRE_BATCH):
            await self._conn.run(lua.EXPIRE_ALL, names[start : start + _EXPIRE_BATCH], (ms,))

    async def set_slow_mode(self, th: str, seconds: int) -> Townhall:
        keys = self._th(th)
        entry = _json({"ts": now_ms(), "what": "slow_mode", "seconds": seconds})
        reply = await self._conn.run(lua.SET_SLOW_MODE, (keys.meta, keys.audit), (seconds, entry))
        townhall = _townhall(_pairs(_check(reply, f"town hall {th}")[1]))
        await self._conn.settle(keys.meta)
        return townhall

    # Questions

    async def add_question(
        self,
        th: str,
        *,
        author: str,
        key: str,
        text: str,
        name: str,
        region: str,
        state: QState = QState.PENDING,
        flags: Iterable[str] = (),
        group: str = "",
        lang: str = "",
        unit: str = "",
    ) -> tuple[Question, bool]:
        keys = self._th(th)
        flags = list(flags)
        reason = _json(",".join(flags)) if state is QState.REJECTED else ""
        reply = await self._conn.run(
            lua.ADD_QUESTION,
            (
                keys.meta,
                keys.asked,
                keys.qseq,
                keys.state(state),
                keys.recent(author),
                keys.groups,
                keys.audit,
                keys.rank,
                keys.group_rank,
                keys.group_public,
            ),
            (
                asked_field(author, key),
                keys.question_prefix,
                state.value,
                author,
                name,
                region,
                text,
                key,
                now_ms(),
                _json(flags),
                group,
                lang,
                _PUBLIC,
                reason,
                _json(text),
                RECENT_TEXTS,
                unit,
            ),
        )
        _check(reply, f"town hall {th}")
        await self._conn.settle(keys.meta)
        return _question(th, reply[1]), reply[0] == b"new"

    async def question_for_key(self, th: str, author: str, key: str) -> Question | None:
        keys = self._th(th)
        reply = await self._conn.run(
            lua.QUESTION_FOR_KEY, (keys.meta, keys.asked), (asked_field(author, key), keys.question_prefix)
        )
        if _check(reply, f"town hall {th}")[0] == b"none":
            return None
        await self._conn.settle(keys.meta)  # the caller acks it `dup`: the first attempt may not have settled
        return _question(th, reply[1])

    async def recent_texts(self, th: str, author: str, limit: int) -> list[str]:
        keys = self._th(th)
        reply = await self._conn.run(lua.LIST_TAIL, (keys.meta, keys.recent(author)), (max(limit, 0),))
        return [_text(t) for t in _check(reply, f"town hall {th}")[1]]

    async def groups(self, th: str, limit: int) -> list[tuple[str, str]]:
        keys = self._th(th)
        reply = await self._conn.run(lua.LIST_TAIL, (keys.meta, keys.groups), (max(limit, 0),))
        return [(str(gid), str(text)) for gid, text in map(json.loads, _check(reply, f"town hall {th}")[1])]

    async def get_question(self, th: str, qid: str) -> Question | None:
        keys = self._th(th)
        reply = await self._conn.run(lua.GET_QUESTION, (keys.meta, keys.question(qid).hash), ())
        if _check(reply, f"town hall {th}")[0] == b"none":
            return None
        return _question(th, reply[1])

    async def questions(self, th: str, states: Iterable[QState]) -> list[Question]:
        keys = self._th(th)
        indexes = [keys.state(state) for state in dict.fromkeys(states)]
        reply = await self._conn.run(lua.QUESTIONS, (keys.meta, *indexes), (keys.question_prefix,))
        return [_question(th, loaded) for loaded in _check(reply, f"town hall {th}")[1]]

    async def counts(self, th: str) -> dict[QState, int]:
        keys = self._th(th)
        sizes = await asyncio.gather(*(self._conn.execute("ZCARD", keys.state(state)) for state in QState))
        return {state: int(n) for state, n in zip(QState, sizes, strict=True)}

    async def decide(self, th: str, qid: str, action: str, by: str, reason: str, to: str = "") -> Question:
        keys = self._th(th)
        question = keys.question(qid)
        states = list(QState)
        ts = now_ms()
        record = _json([action, by, reason, ts, to] if to else [action, by, reason, ts])
        audit: dict[str, object] = {"ts": ts, "what": action, "qid": qid, "by": by, "reason": reason}
        if to:  # a forward's target (moderation/scope.py)
            audit["to"] = to
        entry = _json(audit)
        reply = await self._conn.run(
            lua.DECIDE,
            (
                question.hash,
                question.log,
                keys.audit,
                keys.rank,
                keys.group_rank,
                keys.group_public,
                *(keys.state(state) for state in states),
            ),
            (
                qid,
                record,
                entry,
                _PUBLIC,
                len(states),
                *(state.value for state in states),
                *_transition_table(action),
            ),
        )
        if reply[0] == b"badstate":
            raise BadState(f"cannot {action} a question that is {_text(reply[1])}")
        decided = _question(th, _check(reply, f"question {qid}")[1])
        await self._conn.settle(keys.meta)
        return decided

    async def upvote(self, th: str, qid: str, user: str) -> tuple[int, bool]:
        keys = self._th(th)
        question = keys.question(qid)
        reply = await self._conn.run(
            lua.UPVOTE, (question.hash, question.voters, keys.rank, keys.group_rank), (user, _PUBLIC)
        )
        if reply[0] == b"badstate":
            raise BadState("only public questions take votes")
        if reply[0] == b"own":
            raise OwnQuestion("you cannot vote for your own question")
        _check(reply, f"question {qid}")
        await self._conn.settle(keys.meta)
        return int(reply[1]), bool(reply[2])

    async def top_votes(self, th: str, limit: int) -> tuple[dict[str, int], dict[str, int]]:
        keys = self._th(th)
        reply = await self._conn.run(lua.TOP_VOTES, (keys.meta, keys.rank, keys.group_rank), (limit,))
        _check(reply, f"town hall {th}")
        return _top(reply[1], limit), _top(reply[2], limit)

    async def add_reactions(self, th: str, counts: Mapping[str, int]) -> dict[str, int]:
        keys = self._th(th)
        args: list[Any] = [x for kind, n in counts.items() for x in (kind, n)]
        reply = await self._conn.run(lua.ADD_REACTIONS, (keys.meta, keys.reactions), args)
        return {kind: int(n) for kind, n in _pairs(_check(reply, f"town hall {th}")[1]).items()}

    # Polls

    async def create_poll(self, th: str, question: str, options: list[str]) -> Poll:
        keys = self._th(th)
        reply = await self._conn.run(
            lua.CREATE_POLL,
            (keys.meta, keys.pseq, keys.polls),
            (keys.poll_prefix, question, _json(list(options)), len(options), now_ms(), PollState.DRAFT.value),
        )
        poll = _poll(th, _check(reply, f"town hall {th}")[1])
        await self._conn.settle(keys.meta)
        return poll

    async def set_poll_state(self, th: str, pid: str, state: PollState, by: str) -> Poll:
        keys = self._th(th)
        previous = _POLL_PREVIOUS.get(state)
        entry = _json({"ts": now_ms(), "what": f"poll_{state}", "pid": pid, "by": by})
        reply = await self._conn.run(
            lua.SET_POLL_STATE,
            (keys.poll(pid).hash, keys.audit, keys.meta),
            (state.value, previous.value if previous else "", entry, PollState.OPEN.value, Status.ENDED.value),
        )
        if reply == [b"badstate", b"ended"]:
            raise BadState("the town hall has ended")
        if reply[0] == b"badstate":
            raise BadState(f"a {_text(reply[1])} poll cannot become {state}")
        poll = _poll(th, _check(reply, f"poll {pid}")[1])
        await self._conn.settle(keys.meta)
        return poll

    async def vote_poll(self, th: str, pid: str, user: str, option: int) -> tuple[int, bool]:
        poll = self._th(th).poll(pid)
        reply = await self._conn.run(lua.VOTE_POLL, (poll.hash, poll.voters), (user, option, PollState.OPEN.value))
        if reply[0] == b"badstate":
            raise BadState("no such option" if reply[1] == b"option" else "the poll is not open")
        _check(reply, f"poll {pid}")
        await self._conn.settle(poll.hash)
        return int(reply[1]), bool(reply[2])

    async def polls(self, th: str, states: Iterable[PollState]) -> list[Poll]:
        keys = self._th(th)
        reply = await self._conn.run(lua.POLLS, (keys.meta, keys.polls), (keys.poll_prefix, _states(states)))
        return [_poll(th, flat) for flat in _check(reply, f"town hall {th}")[1]]

    # Claims (times are the Redis server's, so every node agrees when a claim runs out)

    async def claim(self, th: str, qid: str, moderator: str, ttl_ms: int) -> tuple[str, int]:
        question = self._th(th).question(qid)
        reply = await self._conn.run(lua.CLAIM, (question.hash, question.claim), (moderator, max(ttl_ms, 1)))
        _check(reply, f"question {qid}")
        return _text(reply[1]), int(reply[2])

    async def release(self, th: str, qid: str, moderator: str) -> bool:
        keys = self._th(th)
        reply = await self._conn.run(lua.RELEASE, (keys.meta, keys.question(qid).claim), (moderator,))
        return bool(_check(reply, f"town hall {th}")[1])

    async def claim_holder(self, th: str, qid: str) -> str | None:
        keys = self._th(th)
        reply = await self._conn.run(lua.CLAIM_HOLDER, (keys.meta, keys.question(qid).claim), ())
        _check(reply, f"town hall {th}")
        return _text(reply[1]) if len(reply) > 1 else None

    # Restrictions: a key per (scope, sub); the scope `*` has a tag of its own.

    async def restrict(self, restriction: Restriction) -> None:
        record = {
            "sub": restriction.sub,
            "kind": str(restriction.kind),
            "until_ms": restriction.until_ms,
            "scope": restriction.scope,
            "by": restriction.by,
            "reason": restriction.reason,
            "ts": restriction.ts,
        }
        key = self._th(restriction.scope).restriction(restriction.sub)
        await self._conn.execute("SET", key, _json(record))
        await self._conn.settle(key)
        entry = {
            "ts": restriction.ts,
            "what": str(restriction.kind),
            "sub": restriction.sub,
            "by": restriction.by,
            "reason": restriction.reason,
            "until": restriction.until_ms,
            "scope": restriction.scope,
        }
        await self._audit_scope(restriction.scope, entry)

    async def lift(self, scope: str, sub: str, by: str, reason: str) -> None:
        await self._conn.execute("DEL", self._th(scope).restriction(sub))
        await self._conn.settle(self._th(scope).restriction(sub))
        await self._audit_scope(
            scope, {"ts": now_ms(), "what": "lift", "sub": sub, "by": by, "reason": reason, "scope": scope}
        )

    async def _audit_scope(self, scope: str, entry: dict[str, object]) -> None:
        """Append to the audit of the town hall in scope, or of every town hall for `*` (one slot each)."""
        halls = await self._townhall_ids() if scope == ANYWHERE else [scope]
        record = _json(entry)
        await asyncio.gather(
            *(self._conn.run(lua.APPEND_IF_HALL, (self._th(th).meta, self._th(th).audit), (record,)) for th in halls)
        )

    async def restriction(self, th: str, sub: str) -> Restriction | None:
        return (await self.restrictions(th, (sub,)))[sub]

    async def restrictions(self, th: str, subs: Sequence[str]) -> dict[str, Restriction | None]:
        # Two MGETs whatever the number of users: each town hall's keys (and the everywhere ones) share one slot. One
        # round trip on a standalone server (execute_together), two concurrent ones in a cluster.
        here_keys, everywhere_keys = self._th(th), self._th(ANYWHERE)
        here, everywhere = await self._conn.execute_together(
            ("MGET", *(here_keys.restriction(sub) for sub in subs)),
            ("MGET", *(everywhere_keys.restriction(sub) for sub in subs)),
        )
        now = now_ms()
        found: dict[str, Restriction | None] = {}
        for sub, raw_here, raw_everywhere in zip(subs, here, everywhere, strict=True):
            active = [r for r in (_restriction(raw_here), _restriction(raw_everywhere)) if r and r.active(now)]
            active.sort(key=lambda r: (r.kind is not RestrictionKind.BAN, -r.until_ms))
            found[sub] = active[0] if active else None
        return found

    async def audit(self, th: str) -> list[dict[str, object]]:
        keys = self._th(th)
        reply = await self._conn.run(lua.LIST_TAIL, (keys.meta, keys.audit), (-1,))
        return [json.loads(entry) for entry in _check(reply, f"town hall {th}")[1]]


_: type[Store] = RedisStore
