"""How the Redis store's records read and write: JSON text, hash fields into model records, and the error tags its
Lua scripts answer with turned into the Store interface's exceptions.

Apart from store/redis.py so that its mixins (store/redis_programmes.py, redis_erasure.py, redis_regions.py) share
them without importing the store itself.
"""

from __future__ import annotations

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
)
from jansamvad.store.base import BadState, NotFound

# The public states as one argument: the Lua scripts test a state with string.find(arg, ',' .. state .. ',').
PUBLIC_ARG = "," + ",".join(sorted(s.value for s in PUBLIC_STATES)) + ","


@functools.cache
def transition_table(action: str) -> tuple[str, ...]:
    """Pairs 'state:pinned' -> 'state:pinned' for every situation in which `action` applies (apply_decision)."""
    table: list[str] = []
    for state in QState:
        for pinned in (False, True):
            q = Question("", "", "", "", "", "", "", state=state, pinned=pinned)
            if apply_decision(q, action, "", "", 0):
                table += [f"{state.value}:{int(pinned)}", f"{q.state.value}:{int(q.pinned)}"]
    return tuple(table)


def states_arg(states: Iterable[Any]) -> str:
    return "," + ",".join(str(s) for s in states) + ","


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text(value: bytes) -> str:
    return value.decode()


def pairs(flat: list[bytes]) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def townhall_record(fields: Mapping[str, bytes]) -> Townhall:
    return Townhall(
        id=text(fields["id"]),
        title=text(fields["title"]),
        lang=text(fields["lang"]),
        status=Status(text(fields["status"])),
        created_ms=int(fields["created_ms"]),
        slow_mode_s=int(fields.get("slow_mode_s", b"0")),
    )


def question_record(th: str, loaded: list[Any]) -> Question:
    fields = pairs(loaded[0])
    return Question(
        qid=text(fields["qid"]),
        th=th,
        author=text(fields["author"]),
        name=text(fields["name"]),
        region=text(fields["region"]),
        text=text(fields["text"]),
        key=text(fields["key"]),
        state=QState(text(fields["state"])),
        pinned=fields["pinned"] == b"1",
        votes=int(fields["votes"]),
        ts=int(fields["ts"]),
        decisions=[Decision(*json.loads(record)) for record in loaded[1]],
        group=text(fields.get("group", b"")),
        flags=json.loads(fields.get("flags", b"[]")),
        lang=text(fields.get("lang", b"")),
        unit=text(fields.get("unit", b"")),
    )


def poll_record(th: str, flat: list[bytes]) -> Poll:
    fields = pairs(flat)
    n = int(fields["n"])
    return Poll(
        pid=text(fields["pid"]),
        th=th,
        question=text(fields["question"]),
        options=json.loads(fields["options"]),
        state=PollState(text(fields["state"])),
        counts=[int(fields[f"c{i}"]) for i in range(n)],
        ts=int(fields["ts"]),
    )


def restriction_record(raw: bytes | None) -> Restriction | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return Restriction(**{**data, "kind": RestrictionKind(data["kind"])})


def check(reply: list[Any], what: str) -> list[Any]:
    """Turn a script's error tag into the interface's exceptions."""
    tag = reply[0]
    if tag == b"notfound":
        raise NotFound(f"no {what}")
    if tag == b"badstate":
        raise BadState(f"not allowed while it is {text(reply[1])}")
    return reply


def top_votes(flat: list[bytes], limit: int) -> dict[str, int]:
    """The `limit` highest, ties broken by id (the memory store's order), from what TOP_VOTES returned."""
    scored = [(-int(float(flat[i + 1])), text(flat[i])) for i in range(0, len(flat), 2)]
    return {member: -negative for negative, member in sorted(scored)[: max(limit, 0)]}
