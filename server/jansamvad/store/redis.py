"""The Redis store: town halls, questions, decisions, votes, polls, claims, restrictions and the audit log.

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
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from jansamvad.models import (
    PUBLIC_STATES,
    Decision,
    Poll,
    PollState,
    QState,
    Question,
    Restriction,
    RestrictionKind,
    Status,
    Townhall,
    apply_decision,
    now_ms,
)
from jansamvad.programmes import Programme
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys, TownhallKeys, asked_field
from jansamvad.regions import RegionError, RegionTree, Unit, format_levels, parse_levels, unit as region_unit
from jansamvad.store import redis_lua as lua
from jansamvad.store.base import BadState, LimitReached, NotFound, OwnQuestion, Store, new_townhall_id

ANYWHERE = "*"  # a restriction's scope: every town hall
RECENT_TEXTS = 50  # question texts kept per author (the repeated-text rule reads a few)
_POLL_PREVIOUS = {PollState.OPEN: PollState.DRAFT, PollState.CLOSED: PollState.OPEN}  # draft -> open -> closed
_PUBLIC = "," + ",".join(sorted(s.value for s in PUBLIC_STATES)) + ","
REGION_BATCH = 1000  # units per HSET / HSCAN: no single command holds Redis for long with a lakh of booths


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


def _states(states: Iterable[Any]) -> str:
    return "," + ",".join(str(s) for s in states) + ","


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
        slow_mode_s=int(fields.get("slow_mode_s", b"0")),
    )


def _question(th: str, loaded: list[Any]) -> Question:
    fields = _pairs(loaded[0])
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
        decisions=[Decision(*json.loads(record)) for record in loaded[1]],
        group=_text(fields.get("group", b"")),
        flags=json.loads(fields.get("flags", b"[]")),
        lang=_text(fields.get("lang", b"")),
        unit=_text(fields.get("unit", b"")),
    )


def _poll(th: str, flat: list[bytes]) -> Poll:
    fields = _pairs(flat)
    n = int(fields["n"])
    return Poll(
        pid=_text(fields["pid"]),
        th=th,
        question=_text(fields["question"]),
        options=json.loads(fields["options"]),
        state=PollState(_text(fields["state"])),
        counts=[int(fields[f"c{i}"]) for i in range(n)],
        ts=int(fields["ts"]),
    )


def _restriction(raw: bytes | None) -> Restriction | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return Restriction(**{**data, "kind": RestrictionKind(data["kind"])})


def _check(reply: list[Any], what: str) -> list[Any]:
    """Turn a script's error tag into the interface's exceptions."""
    tag = reply[0]
    if tag == b"notfound":
        raise NotFound(f"no {what}")
    if tag == b"badstate":
        raise BadState(f"not allowed while it is {_text(reply[1])}")
    return reply


def _top(flat: list[bytes], limit: int) -> dict[str, int]:
    """The `limit` highest, ties broken by id (the memory store's order), from what TOP_VOTES returned."""
    scored = [(-int(float(flat[i + 1])), _text(flat[i])) for i in range(0, len(flat), 2)]
    return {member: -negative for negative, member in sorted(scored)[: max(limit, 0)]}


_EXPIRE_BATCH = 500  # keys per script call: short scripts, so the server never stalls on one


class RedisStore:
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
        entry = _json({"ts": ts, "what": action, "qid": qid, "by": by, "reason": reason, **({"to": to} if to else {})})
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

    async def erase_questions(self, th: str, author: str, by: str, reason: str) -> list[Question]:
        # Found in Python (no per-author index exists; an erasure is a rare admin action), deleted in one script
        # that checks each question's author again, so a question is erased whole or not at all.
        keys = self._th(th)
        erased = [q for q in await self.questions(th, QState) if q.author == author]
        states = list(QState)
        entry = _json({"ts": now_ms(), "what": "erase", "qids": [q.qid for q in erased], "by": by, "reason": reason})
        per_question: list[Any] = []
        for q in erased:
            heads_group = q.group == q.qid
            per_question += [q.qid, asked_field(author, q.key), _json([q.qid, q.text]) if heads_group else ""]
        reply = await self._conn.run(
            lua.ERASE_QUESTIONS,
            (
                keys.meta,
                keys.asked,
                keys.recent(author),
                keys.groups,
                keys.audit,
                keys.rank,
                keys.group_rank,
                keys.group_public,
                *(keys.state(state) for state in states),
            ),
            (keys.question_prefix, author, _PUBLIC, entry, len(states), *(s.value for s in states), *per_question),
        )
        _check(reply, f"town hall {th}")
        await self._conn.settle(keys.meta)
        return erased

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
        here, everywhere = await asyncio.gather(
            self._conn.execute("GET", self._th(th).restriction(sub)),
            self._conn.execute("GET", self._th(ANYWHERE).restriction(sub)),
        )
        now = now_ms()
        active = [r for r in (_restriction(here), _restriction(everywhere)) if r is not None and r.active(now)]
        active.sort(key=lambda r: (r.kind is not RestrictionKind.BAN, -r.until_ms))
        return active[0] if active else None

    async def audit(self, th: str) -> list[dict[str, object]]:
        keys = self._th(th)
        reply = await self._conn.run(lua.LIST_TAIL, (keys.meta, keys.audit), (-1,))
        return [json.loads(entry) for entry in _check(reply, f"town hall {th}")[1]]

    # Programmes

    async def put_programme(self, programme: Programme) -> None:
        keys = self._th(programme.th)
        reply = await self._conn.run(
            lua.PUT_PROGRAMME, (keys.meta, keys.programme), (programme.to_json(), Status.ENDED.value)
        )
        if reply[0] == b"badstate":
            raise BadState("the town hall has ended")
        _check(reply, f"town hall {programme.th}")
        await self._conn.settle(keys.meta)
        # The index lives in its own slot and is written second: it may name a programme that expired since, which
        # `programmes` cleans, never miss one that exists.
        await self._conn.execute("ZADD", self._keys.programmes, programme.starts_ms, programme.th)

    async def programme(self, th: str) -> Programme | None:
        raw = await self._conn.execute("GET", self._th(th).programme)
        return Programme.from_json(raw) if raw is not None else None

    async def programmes(self) -> list[Programme]:
        ids = [th.decode() for th in await self._conn.execute("ZRANGE", self._keys.programmes, 0, -1)]
        found = await asyncio.gather(*(self.programme(th) for th in ids))
        gone = [th for th, programme in zip(ids, found, strict=True) if programme is None]
        if gone:  # their town hall's retention ran out: the index forgets them too
            await self._conn.execute("ZREM", self._keys.programmes, *gone)
        return sorted((p for p in found if p is not None), key=lambda p: (p.starts_ms, p.th))

    # The region tree

    async def put_region_tree(self, tree: RegionTree) -> int:
        version = int(await self._conn.execute("INCR", self._keys.regions().next))
        keys = self._keys.regions(version)
        units = tree.ordered()
        for start in range(0, len(units), REGION_BATCH):
            args: list[str] = []
            for unit in units[start : start + REGION_BATCH]:
                args += [unit.code, _json([unit.parent, unit.level, unit.name_hi, unit.name_en])]
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


_: type[Store] = RedisStore
