"""The embedded default store: dictionaries in this process."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jansamvad.models import QState, Question, Status, Townhall, apply_decision, now_ms
from jansamvad.store.base import BadState, NotFound, Store, new_townhall_id


class _Hall:
    __slots__ = ("next_qid", "questions", "reactions", "by_key", "townhall", "voters")

    def __init__(self, townhall: Townhall) -> None:
        self.townhall = townhall
        self.questions: dict[str, Question] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.voters: dict[str, set[str]] = {}
        self.reactions: dict[str, int] = {}
        self.next_qid = 1


class MemoryStore:
    def __init__(self) -> None:
        self._halls: dict[str, _Hall] = {}

    def _hall(self, th: str) -> _Hall:
        hall = self._halls.get(th)
        if hall is None:
            raise NotFound(f"no town hall {th}")
        return hall

    def _question(self, th: str, qid: str) -> Question:
        q = self._hall(th).questions.get(qid)
        if q is None:
            raise NotFound(f"no question {qid}")
        return q

    async def create_townhall(self, title: str, lang: str) -> Townhall:
        th = Townhall(new_townhall_id(), title, lang)
        self._halls[th.id] = _Hall(th)
        return th

    async def get_townhall(self, th: str) -> Townhall | None:
        hall = self._halls.get(th)
        return hall.townhall if hall else None

    async def list_townhalls(self) -> list[Townhall]:
        return [h.townhall for h in self._halls.values()]

    async def set_status(self, th: str, status: Status) -> Townhall:
        townhall = self._hall(th).townhall
        if townhall.status is Status.ENDED and status is not Status.ENDED:
            raise BadState("the town hall has ended")
        townhall.status = status
        return townhall

    async def add_question(
        self, th: str, *, author: str, key: str, text: str, name: str, region: str
    ) -> tuple[Question, bool]:
        hall = self._hall(th)
        existing = hall.by_key.get((author, key))
        if existing is not None:
            return hall.questions[existing], False
        qid = f"q{hall.next_qid}"
        hall.next_qid += 1
        q = Question(qid, th, author, name, region, text, key)
        hall.questions[qid] = q
        hall.by_key[(author, key)] = qid
        return q, True

    async def get_question(self, th: str, qid: str) -> Question | None:
        return self._hall(th).questions.get(qid)

    async def questions(self, th: str, states: Iterable[QState]) -> list[Question]:
        wanted = frozenset(states)
        return [q for q in self._hall(th).questions.values() if q.state in wanted]

    async def decide(self, th: str, qid: str, action: str, by: str, reason: str) -> Question:
        q = self._question(th, qid)
        if not apply_decision(q, action, by, reason, now_ms()):
            raise BadState(f"cannot {action} a question that is {q.state}")
        return q

    async def upvote(self, th: str, qid: str, user: str) -> tuple[int, bool]:
        q = self._question(th, qid)
        if not q.is_public:
            raise BadState("only public questions take votes")
        voters = self._hall(th).voters.setdefault(qid, set())
        if user in voters:
            return q.votes, False
        voters.add(user)
        q.votes += 1
        return q.votes, True

    async def add_reactions(self, th: str, counts: Mapping[str, int]) -> dict[str, int]:
        totals = self._hall(th).reactions
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
        return dict(totals)

    async def close(self) -> None:
        return None


_: type[Store] = MemoryStore
