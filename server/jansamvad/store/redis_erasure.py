"""The Redis store's erasure on request (issue 18, privacy.py): every question of one author in a town hall,
removed from every index in one script.

A mixin of RedisStore (store/redis.py), apart so that the store's town hall, question and moderation methods stay
in one file of a readable length; it uses the store's connection, key names and question reader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from jansamvad.models import QState, Question, now_ms
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys, asked_field
from jansamvad.store import redis_lua as lua
from jansamvad.store.redis_records import PUBLIC_ARG, check, json_text


class RedisErasure:
    _conn: RedisConn
    _keys: RedisKeys
    questions: Callable[[str, Iterable[QState]], Awaitable[list[Question]]]  # RedisStore.questions

    async def erase_questions(self, th: str, author: str, by: str, reason: str) -> list[Question]:
        # Found in Python (no per-author index exists; an erasure is a rare admin action), deleted in one script
        # that checks each question's author again, so a question is erased whole or not at all.
        keys = self._keys.townhall(th)
        erased = [q for q in await self.questions(th, QState) if q.author == author]
        states = list(QState)
        entry = json_text(
            {"ts": now_ms(), "what": "erase", "qids": [q.qid for q in erased], "by": by, "reason": reason}
        )
        per_question: list[Any] = []
        for q in erased:
            heads_group = q.group == q.qid
            per_question += [q.qid, asked_field(author, q.key), json_text([q.qid, q.text]) if heads_group else ""]
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
            (keys.question_prefix, author, PUBLIC_ARG, entry, len(states), *(s.value for s in states), *per_question),
        )
        check(reply, f"town hall {th}")
        await self._conn.settle(keys.meta)
        return erased
