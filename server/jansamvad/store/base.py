"""The Store interface: everything a town hall must remember, whichever node a client lands on.

Every method that changes state returns only after the change is durable in the implementation's terms (in memory
for the embedded default; in Redis for the Redis store), so the node may acknowledge the client right after.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from jansamvad.models import Poll, PollState, QState, Question, Restriction, Status, Townhall
from jansamvad.programmes import Programme
from jansamvad.regions import RegionTree, Unit


class NotFound(Exception):
    """The town hall or question does not exist."""


class BadState(Exception):
    """The action does not apply to the current state."""


class OwnQuestion(Exception):
    """A citizen tried to vote for their own question."""


class LimitReached(Exception):
    """A configured cap would be exceeded (e.g. too many town halls open at once)."""


def new_townhall_id() -> str:
    return base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()


class Store(Protocol):
    async def create_townhall(self, title: str, lang: str, *, max_open: int = 0) -> Townhall:
        """A new scheduled town hall. With `max_open` > 0, raises LimitReached when that many are already open
        (scheduled or live): whoever holds the admin key cannot exhaust the store and the dashboard with millions."""
        ...

    async def get_townhall(self, th: str) -> Townhall | None: ...

    async def list_townhalls(self) -> list[Townhall]: ...

    async def set_status(self, th: str, status: Status) -> Townhall:
        """Raises NotFound, or BadState when the town hall has ended (an ended town hall stays ended)."""
        ...

    async def set_slow_mode(self, th: str, seconds: int) -> Townhall: ...

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
        """Store a new question, pending or (auto-moderation) rejected with `flags` as the audit reason.

        Idempotent on (th, author, key): a retry returns the stored question and created=False.
        """
        ...

    async def question_for_key(self, th: str, author: str, key: str) -> Question | None:
        """The question this author stored with this idempotency key, if any."""
        ...

    async def recent_texts(self, th: str, author: str, limit: int) -> list[str]:
        """The author's latest question texts in this town hall, oldest first (for the repeated-text rule)."""
        ...

    async def groups(self, th: str, limit: int) -> list[tuple[str, str]]:
        """(group id, representative text) of the newest `limit` groups, oldest first (to rebuild a grouper)."""
        ...

    async def get_question(self, th: str, qid: str) -> Question | None: ...

    async def questions(self, th: str, states: Iterable[QState]) -> list[Question]:
        """Questions in any of `states`, oldest first."""
        ...

    async def counts(self, th: str) -> dict[QState, int]:
        """How many questions are in each state (cheap: for dashboards and metrics)."""
        ...

    async def decide(self, th: str, qid: str, action: str, by: str, reason: str, to: str = "") -> Question:
        """Apply a moderation action (models.TRANSITIONS). Raises NotFound or BadState. `to`: where a `forward`
        sent the question (kept with the decision and in the audit log)."""
        ...

    async def upvote(self, th: str, qid: str, user: str) -> tuple[int, bool]:
        """One vote per user per public question, never the asker's own. Returns (votes, counted).
        Raises NotFound, BadState, or OwnQuestion when `user` asked it."""
        ...

    async def top_votes(self, th: str, limit: int) -> tuple[dict[str, int], dict[str, int]]:
        """The `limit` public questions with most votes (qid -> votes) and groups (group -> summed votes)."""
        ...

    async def add_reactions(self, th: str, counts: Mapping[str, int]) -> dict[str, int]:
        """Add reaction counts (possibly none); return the town hall's totals."""
        ...

    async def create_poll(self, th: str, question: str, options: list[str]) -> Poll: ...

    async def set_poll_state(self, th: str, pid: str, state: PollState, by: str) -> Poll:
        """draft -> open -> closed only; raises NotFound or BadState. The returned poll carries exact counts."""
        ...

    async def vote_poll(self, th: str, pid: str, user: str, option: int) -> tuple[int, bool]:
        """One vote per user per open poll, the first one counts. Returns (the option that counts for this user,
        counted now). Raises NotFound or BadState."""
        ...

    async def polls(self, th: str, states: Iterable[PollState]) -> list[Poll]:
        """Polls in `states` with their current counts, oldest first."""
        ...

    async def claim(self, th: str, qid: str, moderator: str, ttl_ms: int) -> tuple[str, int]:
        """Claim a question for `ttl_ms` unless another moderator holds it. Returns (holder, until_ms)."""
        ...

    async def release(self, th: str, qid: str, moderator: str) -> bool: ...

    async def claim_holder(self, th: str, qid: str) -> str | None: ...

    async def restrict(self, restriction: Restriction) -> None: ...

    async def lift(self, scope: str, sub: str, by: str, reason: str) -> None: ...

    async def restriction(self, th: str, sub: str) -> Restriction | None:
        """The active ban or timeout on `sub` in this town hall or everywhere (a ban wins over a timeout)."""
        ...

    async def restrictions(self, th: str, subs: Sequence[str]) -> dict[str, Restriction | None]:
        """`restriction` for many users of one town hall in one read (the joins of one moment, join_reads.py)."""
        ...

    async def audit(self, th: str) -> list[dict[str, object]]:
        """Every moderation decision, restriction, poll and setting change in this town hall, oldest first."""
        ...

    async def erase_questions(self, th: str, author: str, by: str, reason: str) -> list[Question]:
        """Delete every question `author` asked in this town hall, on the citizen's request (docs/privacy.md): the
        question, its decisions, voters and claim, its place in the queue and the rankings, its idempotency key and
        the author's recent texts. Returns the questions as they were; the audit log gets one `erase` entry (the
        qids, who, why; no text). Raises NotFound for an unknown town hall."""
        ...

    # Programmes (programmes.py): the schedule of a town hall, kept and expired with it.

    async def put_programme(self, programme: Programme) -> None:
        """Store (create or replace) the programme of town hall `programme.th`. Raises NotFound, or BadState when
        the town hall has ended (a past programme is history)."""
        ...

    async def programme(self, th: str) -> Programme | None: ...

    async def programmes(self) -> list[Programme]:
        """Every programme whose town hall is still kept, earliest start first."""
        ...

    # The region tree (regions.py): one per deployment, replaced whole (`jansamvad regions import`).

    async def put_region_tree(self, tree: RegionTree) -> int:
        """Replace the region tree; returns its new version (> 0). A reader sees the old tree or the new one, whole."""
        ...

    async def region_tree(self) -> RegionTree | None:
        """The current tree, or None when none was ever put."""
        ...

    async def region_tree_version(self) -> int:
        """The current tree's version, 0 for none: one cheap read, for nodes checking whether their copy is current."""
        ...

    async def region_unit(self, code: str) -> Unit | None:
        """One unit of the current tree (without loading the tree)."""
        ...

    async def close(self) -> None: ...
