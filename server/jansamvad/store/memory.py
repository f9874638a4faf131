"""The embedded default store: dictionaries in this process."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from jansamvad.models import (
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
from jansamvad.store.base import BadState, LimitReached, NotFound, OwnQuestion, Store, new_townhall_id

ANYWHERE = "*"
_POLL_NEXT = {PollState.DRAFT: PollState.OPEN, PollState.OPEN: PollState.CLOSED}

if TYPE_CHECKING:  # the region tree's types, used in annotations only
    from jansamvad.regions import RegionTree, Unit


class _Hall:
    __slots__ = (
        "audit",
        "by_key",
        "claims",
        "ended_at",
        "groups",
        "next_pid",
        "next_qid",
        "poll_voters",
        "polls",
        "programme",
        "questions",
        "reactions",
        "recent",
        "townhall",
        "voters",
    )

    def __init__(self, townhall: Townhall) -> None:
        self.townhall = townhall
        self.questions: dict[str, Question] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.voters: dict[str, set[str]] = {}
        self.reactions: dict[str, int] = {}
        self.recent: dict[str, list[str]] = {}
        self.groups: dict[str, str] = {}  # group id -> representative text, in creation order
        self.polls: dict[str, Poll] = {}
        self.poll_voters: dict[str, dict[str, int]] = {}  # pid -> voter -> the option that counts
        self.claims: dict[str, tuple[str, int]] = {}
        self.audit: list[dict[str, object]] = []
        self.next_qid = 1
        self.next_pid = 1
        self.ended_at: float | None = None  # time.monotonic() when it ended (for the retention)
        self.programme: Programme | None = None


class MemoryStore:
    def __init__(self, *, ended_retention_s: float = 0.0) -> None:
        self._halls: dict[str, _Hall] = {}
        self._restrictions: dict[tuple[str, str], Restriction] = {}  # (scope, sub) -> active restriction
        self._retention_s = ended_retention_s  # 0: ended town halls are kept for the process's life
        self._regions: RegionTree | None = None
        self._regions_version = 0

    def _expired(self, hall: _Hall) -> bool:
        return (
            self._retention_s > 0
            and hall.ended_at is not None
            and time.monotonic() - hall.ended_at >= self._retention_s
        )

    def _live_hall(self, th: str) -> _Hall | None:
        """The town hall, unless its retention ran out (then it is forgotten here and now)."""
        hall = self._halls.get(th)
        if hall is not None and self._expired(hall):
            del self._halls[th]
            return None
        return hall

    def _hall(self, th: str) -> _Hall:
        hall = self._live_hall(th)
        if hall is None:
            raise NotFound(f"no town hall {th}")
        return hall

    def _question(self, th: str, qid: str) -> Question:
        q = self._hall(th).questions.get(qid)
        if q is None:
            raise NotFound(f"no question {qid}")
        return q

    def _poll(self, th: str, pid: str) -> Poll:
        poll = self._hall(th).polls.get(pid)
        if poll is None:
            raise NotFound(f"no poll {pid}")
        return poll

    # Town halls

    async def create_townhall(self, title: str, lang: str, *, max_open: int = 0) -> Townhall:
        if max_open > 0:
            open_now = sum(1 for hall in self._halls.values() if hall.townhall.status is not Status.ENDED)
            if open_now >= max_open:
                raise LimitReached(f"{open_now} town halls are open; the limit is {max_open}")
        th = Townhall(new_townhall_id(), title, lang)
        self._halls[th.id] = _Hall(th)
        return th

    async def get_townhall(self, th: str) -> Townhall | None:
        hall = self._live_hall(th)
        return hall.townhall if hall else None

    async def list_townhalls(self) -> list[Townhall]:
        return [hall.townhall for th in list(self._halls) if (hall := self._live_hall(th)) is not None]

    async def set_status(self, th: str, status: Status) -> Townhall:
        townhall = self._hall(th).townhall
        if townhall.status is Status.ENDED and status is not Status.ENDED:
            raise BadState("the town hall has ended")
        if status is Status.ENDED and townhall.status is not Status.ENDED:
            self._halls[th].ended_at = time.monotonic()
        townhall.status = status
        return townhall

    async def set_slow_mode(self, th: str, seconds: int) -> Townhall:
        hall = self._hall(th)
        hall.townhall.slow_mode_s = seconds
        hall.audit.append({"ts": now_ms(), "what": "slow_mode", "seconds": seconds})
        return hall.townhall

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
        hall = self._hall(th)
        existing = hall.by_key.get((author, key))
        if existing is not None:
            return hall.questions[existing], False
        qid = f"q{hall.next_qid}"
        hall.next_qid += 1
        flags = list(flags)
        q = Question(qid, th, author, name, region, text, key, state=state, group=group or qid, flags=flags, lang=lang)
        q.unit = unit
        if state is QState.REJECTED:
            q.decisions.append(Decision("reject", "auto", ",".join(flags), q.ts))
            hall.audit.append({"ts": q.ts, "what": "reject", "qid": qid, "by": "auto", "reason": ",".join(flags)})
        hall.questions[qid] = q
        hall.by_key[(author, key)] = qid
        if q.group == qid:
            hall.groups[qid] = text
        recent = hall.recent.setdefault(author, [])
        recent.append(text)
        del recent[:-50]
        return q, True

    async def question_for_key(self, th: str, author: str, key: str) -> Question | None:
        hall = self._hall(th)
        qid = hall.by_key.get((author, key))
        return hall.questions[qid] if qid is not None else None

    async def recent_texts(self, th: str, author: str, limit: int) -> list[str]:
        return self._hall(th).recent.get(author, [])[-limit:] if limit else []

    async def groups(self, th: str, limit: int) -> list[tuple[str, str]]:
        return list(self._hall(th).groups.items())[-limit:] if limit else []

    async def get_question(self, th: str, qid: str) -> Question | None:
        return self._hall(th).questions.get(qid)

    async def questions(self, th: str, states: Iterable[QState]) -> list[Question]:
        wanted = frozenset(states)
        return [q for q in self._hall(th).questions.values() if q.state in wanted]

    async def counts(self, th: str) -> dict[QState, int]:
        counts = dict.fromkeys(QState, 0)
        for q in self._hall(th).questions.values():
            counts[q.state] += 1
        return counts

    async def decide(self, th: str, qid: str, action: str, by: str, reason: str, to: str = "") -> Question:
        q = self._question(th, qid)
        if not apply_decision(q, action, by, reason, now_ms(), to):
            raise BadState(f"cannot {action} a question that is {q.state}")
        entry: dict[str, object] = {"ts": q.decisions[-1].ts, "what": action, "qid": qid, "by": by, "reason": reason}
        if to:
            entry["to"] = to
        self._hall(th).audit.append(entry)
        return q

    async def erase_questions(self, th: str, author: str, by: str, reason: str) -> list[Question]:
        hall = self._hall(th)
        erased = [q for q in hall.questions.values() if q.author == author]
        for q in erased:
            del hall.questions[q.qid]
            hall.by_key.pop((author, q.key), None)
            hall.voters.pop(q.qid, None)
            hall.claims.pop(q.qid, None)
            hall.groups.pop(q.qid, None)
        hall.recent.pop(author, None)
        if erased:
            qids = [q.qid for q in erased]
            hall.audit.append({"ts": now_ms(), "what": "erase", "qids": qids, "by": by, "reason": reason})
        return erased

    async def upvote(self, th: str, qid: str, user: str) -> tuple[int, bool]:
        q = self._question(th, qid)
        if not q.is_public:
            raise BadState("only public questions take votes")
        if q.author == user:
            raise OwnQuestion("you cannot vote for your own question")
        voters = self._hall(th).voters.setdefault(qid, set())
        if user in voters:
            return q.votes, False
        voters.add(user)
        q.votes += 1
        return q.votes, True

    async def top_votes(self, th: str, limit: int) -> tuple[dict[str, int], dict[str, int]]:
        public = [q for q in self._hall(th).questions.values() if q.is_public]
        top = sorted(public, key=lambda q: (-q.votes, q.qid))[:limit]
        groups: dict[str, int] = {}
        for q in public:
            groups[q.group] = groups.get(q.group, 0) + q.votes
        top_groups = sorted(groups.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return {q.qid: q.votes for q in top}, dict(top_groups)

    async def add_reactions(self, th: str, counts: Mapping[str, int]) -> dict[str, int]:
        totals = self._hall(th).reactions
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
        return dict(totals)

    # Polls

    async def create_poll(self, th: str, question: str, options: list[str]) -> Poll:
        hall = self._hall(th)
        pid = f"p{hall.next_pid}"
        hall.next_pid += 1
        poll = Poll(pid, th, question, list(options), counts=[0] * len(options))
        hall.polls[pid] = poll
        hall.poll_voters[pid] = {}
        return poll

    async def set_poll_state(self, th: str, pid: str, state: PollState, by: str) -> Poll:
        poll = self._poll(th, pid)
        if _POLL_NEXT.get(poll.state) is not state:
            raise BadState(f"a {poll.state} poll cannot become {state}")
        if state is PollState.OPEN and self._hall(th).townhall.status is Status.ENDED:
            raise BadState("the town hall has ended")
        poll.state = state
        self._hall(th).audit.append({"ts": now_ms(), "what": f"poll_{state}", "pid": pid, "by": by})
        return poll

    async def vote_poll(self, th: str, pid: str, user: str, option: int) -> tuple[int, bool]:
        poll = self._poll(th, pid)
        if poll.state is not PollState.OPEN:
            raise BadState("the poll is not open")
        if not 0 <= option < len(poll.options):
            raise BadState("no such option")
        voters = self._hall(th).poll_voters[pid]
        if user in voters:
            return voters[user], False
        voters[user] = option
        poll.counts[option] += 1
        return option, True

    async def polls(self, th: str, states: Iterable[PollState]) -> list[Poll]:
        wanted = frozenset(states)
        return [p for p in self._hall(th).polls.values() if p.state in wanted]

    # Claims

    async def claim(self, th: str, qid: str, moderator: str, ttl_ms: int) -> tuple[str, int]:
        self._question(th, qid)
        claims = self._hall(th).claims
        now = now_ms()
        holder = claims.get(qid)
        if holder is not None and holder[0] != moderator and holder[1] > now:
            return holder
        claims[qid] = (moderator, now + ttl_ms)
        return claims[qid]

    async def release(self, th: str, qid: str, moderator: str) -> bool:
        claims = self._hall(th).claims
        holder = claims.get(qid)
        if holder is None or holder[0] != moderator:
            return False
        del claims[qid]
        return True

    async def claim_holder(self, th: str, qid: str) -> str | None:
        holder = self._hall(th).claims.get(qid)
        return holder[0] if holder is not None and holder[1] > now_ms() else None

    # Restrictions

    async def restrict(self, restriction: Restriction) -> None:
        self._restrictions[(restriction.scope, restriction.sub)] = restriction
        entry = {
            "ts": restriction.ts,
            "what": str(restriction.kind),
            "sub": restriction.sub,
            "by": restriction.by,
            "reason": restriction.reason,
            "until": restriction.until_ms,
            "scope": restriction.scope,
        }
        for hall in self._audited(restriction.scope):
            hall.audit.append(entry)

    async def lift(self, scope: str, sub: str, by: str, reason: str) -> None:
        self._restrictions.pop((scope, sub), None)
        entry = {"ts": now_ms(), "what": "lift", "sub": sub, "by": by, "reason": reason, "scope": scope}
        for hall in self._audited(scope):
            hall.audit.append(entry)

    def _audited(self, scope: str) -> list[_Hall]:
        if scope == ANYWHERE:
            return list(self._halls.values())
        hall = self._halls.get(scope)
        return [hall] if hall else []

    async def restriction(self, th: str, sub: str) -> Restriction | None:
        now = now_ms()
        found = [r for r in (self._restrictions.get((th, sub)), self._restrictions.get((ANYWHERE, sub))) if r]
        active = [r for r in found if r.active(now)]
        active.sort(key=lambda r: (r.kind is not RestrictionKind.BAN, -r.until_ms))
        return active[0] if active else None

    async def restrictions(self, th: str, subs: Sequence[str]) -> dict[str, Restriction | None]:
        return {sub: await self.restriction(th, sub) for sub in subs}

    async def audit(self, th: str) -> list[dict[str, object]]:
        return list(self._hall(th).audit)

    # Programmes

    async def put_programme(self, programme: Programme) -> None:
        hall = self._hall(programme.th)
        if hall.townhall.status is Status.ENDED:
            raise BadState("the town hall has ended")
        hall.programme = Programme.from_json(programme.to_json())  # a copy: the caller's object stays its own

    async def programme(self, th: str) -> Programme | None:
        hall = self._live_hall(th)
        return Programme.from_json(hall.programme.to_json()) if hall and hall.programme else None

    async def programmes(self) -> list[Programme]:
        found = [hall.programme for th in list(self._halls) if (hall := self._live_hall(th)) and hall.programme]
        return sorted((Programme.from_json(p.to_json()) for p in found), key=lambda p: (p.starts_ms, p.th))

    # The region tree

    async def put_region_tree(self, tree: RegionTree) -> int:
        self._regions = tree  # trees are never changed in place: sharing the object is safe
        self._regions_version += 1
        return self._regions_version

    async def region_tree(self) -> RegionTree | None:
        return self._regions

    async def region_tree_version(self) -> int:
        return self._regions_version if self._regions is not None else 0

    async def region_unit(self, code: str) -> Unit | None:
        return self._regions.get(code) if self._regions is not None else None

    async def close(self) -> None:
        return None


_: type[Store] = MemoryStore
