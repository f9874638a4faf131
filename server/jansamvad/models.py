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
    slow_mode_s: int = 0

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
    to: str = ""  # `forward` only: the scope the question went up to (a unit code, or ROOT_SCOPE)


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
    group: str = ""  # the qid of the first question of its near-duplicate group ("" = its own)
    flags: list[str] = field(default_factory=list)  # auto-moderation reasons
    lang: str = ""  # "hi" or "en", guessed from the script
    unit: str = ""  # the asker's region unit (the token's `ru`), "" when none: what counts and exports per unit use

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
            "group": self.group or self.qid,
            "ts": self.ts,
        }

    @property
    def forwarded_to(self) -> str:
        """The scope the question was last forwarded up to ("" when no local moderator forwarded it)."""
        for decision in reversed(self.decisions):
            if decision.action == "forward":
                return decision.to
        return ""

    def for_moderators(self) -> dict[str, Any]:
        return {
            **self.public(),
            "sub": self.author,
            "flags": list(self.flags),
            "lang": self.lang,
            "unit": self.unit,
            "fwd": self.forwarded_to,
        }

    def for_export(self) -> dict[str, Any]:
        decisions = [{"action": d.action, "by": d.by, "reason": d.reason, "ts": d.ts} for d in self.decisions]
        for record, decision in zip(decisions, self.decisions, strict=True):
            if decision.to:
                record["to"] = decision.to
        return {**self.for_moderators(), "decisions": decisions}


class PollState(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(slots=True)
class Poll:
    pid: str
    th: str
    question: str
    options: list[str]
    state: PollState = PollState.DRAFT
    counts: list[int] = field(default_factory=list)
    ts: int = field(default_factory=now_ms)

    def public(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "question": self.question,
            "options": list(self.options),
            "state": str(self.state),
            "counts": list(self.counts) or [0] * len(self.options),
        }


class RestrictionKind(enum.StrEnum):
    TIMEOUT = "timeout"
    BAN = "ban"


@dataclass(frozen=True, slots=True)
class Restriction:
    sub: str
    kind: RestrictionKind
    until_ms: int  # 0: a ban without end
    scope: str  # a town hall id, or "*" for everywhere
    by: str
    reason: str
    ts: int

    def active(self, at_ms: int) -> bool:
        return self.until_ms == 0 or at_ms < self.until_ms


def script_lang(text: str) -> str:
    """'hi' when the text is mostly Devanagari, else 'en' (a queue filter, not a language detector)."""
    devanagari = sum(1 for ch in text if "\u0900" <= ch <= "\u097f")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "hi" if devanagari >= latin else "en"


# The moderation state machine (docs/protocol.md, section 4): action -> states it applies to.
TRANSITIONS: dict[str, frozenset[QState]] = {
    "approve": frozenset({QState.PENDING}),
    "reject": frozenset({QState.PENDING, QState.APPROVED}),
    "answer": frozenset({QState.APPROVED}),
    "pin": frozenset({QState.APPROVED, QState.ANSWERED}),
    "unpin": frozenset({QState.APPROVED, QState.ANSWERED}),
    # A local moderator sends a question up to the parent level's queue (moderation/scope.py); its state stays.
    "forward": frozenset({QState.PENDING, QState.APPROVED}),
}


def apply_decision(q: Question, action: str, by: str, reason: str, ts: int, to: str = "") -> bool:
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
    q.decisions.append(Decision(action, by, reason, ts, to))
    return True
