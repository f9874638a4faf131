"""The Store interface: everything a town hall must remember, whichever node a client lands on.

Every method that changes state returns only after the change is durable in the implementation's terms (in memory
for the embedded default; in Redis for the Redis store), so the node may acknowledge the client right after.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from typing import Protocol

from jansamvad.models import QState, Question, Status, Townhall


class NotFound(Exception):
    """The town hall or question does not exist."""


class BadState(Exception):
    """The action does not apply to the current state."""


def new_townhall_id() -> str:
    return base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()


class Store(Protocol):
    async def create_townhall(self, title: str, lang: str) -> Townhall: ...

    async def get_townhall(self, th: str) -> Townhall | None: ...

    async def list_townhalls(self) -> list[Townhall]: ...

    async def set_status(self, th: str, status: Status) -> Townhall:
        """Raises NotFound, or BadState when the town hall has ended (an ended town hall stays ended)."""
        ...

    async def add_question(
        self, th: str, *, author: str, key: str, text: str, name: str, region: str
    ) -> tuple[Question, bool]:
        """Store a new pending question; idempotent on (th, author, key). Returns (question, created)."""
        ...

    async def get_question(self, th: str, qid: str) -> Question | None: ...

    async def questions(self, th: str, states: Iterable[QState]) -> list[Question]:
        """Questions in any of `states`, oldest first."""
        ...

    async def decide(self, th: str, qid: str, action: str, by: str, reason: str) -> Question:
        """Apply a moderation action (models.TRANSITIONS). Raises NotFound or BadState."""
        ...

    async def upvote(self, th: str, qid: str, user: str) -> tuple[int, bool]:
        """One vote per user per public question. Returns (votes, counted). Raises NotFound or BadState."""
        ...

    async def add_reactions(self, th: str, counts: Mapping[str, int]) -> dict[str, int]:
        """Add reaction counts; return the town hall's totals."""
        ...

    async def close(self) -> None: ...
