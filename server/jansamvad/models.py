"""The domain records: town halls and questions, and how each is shown on the wire."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


def now_ms() -> int:
    return int(time.time() * 1000)


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class QState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ANSWERED = "answered"


PUBLIC_STATES = frozenset({QState.APPROVED, QState.ANSWERED})


@dataclass(slots=True)
class Townhall:
    id: str
    title: str
    lang: str = "hi"
    status: Status = Status.SCHEDULED
    created_ms: int = field(default_factory=now_ms)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": str(self.status), "lang": self.lang}

    def admin(self) -> dict[str, Any]:
        return {**self.public(), "created_ms": self.created_ms}


@dataclass(slots=True)
class Decision:
    action: str
    by: str
    reason: str
    ts: int


@dataclass(slots=True)
class Question:
    qid: str
    th: str
    author: str
    name: str
    region: str
    text: str
    key: str
    state: QState = QState.PENDING
    pinned: bool = False
    votes: int = 0
    ts: int = field(default_factory=now_ms)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def is_public(self) -> bool:
        return self.state in PUBLIC_STATES

    def public(self) -> dict[str, Any]:
        """What every citizen may see: no author id, no moderation notes."""
        return {
            "qid": self.qid,
            "text": self.text,
            "name": self.name,
            "region": self.region,
            "votes": self.votes,
            "state": str(self.state),
            "pinned": self.pinned,
            "ts": self.ts,
        }

    def for_moderators(self) -> dict[str, Any]:
        return {**self.public(), "sub": self.author, "flags": []}


# The moderation state machine (docs/protocol.md, section 4): action -> states it applies to.
TRANSITIONS: dict[str, frozenset[QState]] = {
    "approve": frozenset({QState.PENDING}),
    "reject": frozenset({QState.PENDING, QState.APPROVED}),
    "answer": frozenset({QState.APPROVED}),
    "pin": frozenset({QState.APPROVED, QState.ANSWERED}),
    "unpin": frozenset({QState.APPROVED, QState.ANSWERED}),
}


def apply_decision(q: Question, action: str, by: str, reason: str, ts: int) -> bool:
    """Apply a moderation action in place. False (and no change) when it does not apply to the current state."""
    if q.state not in TRANSITIONS[action]:
        return False
    if action == "approve":
        q.state = QState.APPROVED
    elif action == "reject":
        q.state = QState.REJECTED
        q.pinned = False
    elif action == "answer":
        q.state = QState.ANSWERED
    elif action == "pin":
        q.pinned = True
    elif action == "unpin":
        q.pinned = False
    q.decisions.append(Decision(action, by, reason, ts))
    return True
