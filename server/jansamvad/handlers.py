"""The handlers of a joined session's messages, one method per client message type, reading typed records.

`MessageHandlers` is the half of a session (client.py's `Client`) that acts on messages: the store, the limiter and
the broker are reached through the node (`HandlerOwner`), answers go out through `send`. Which handler serves which
message type, for which roles, is the table `client.ROUTES`; the role check happens there, before a handler runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from jansamvad.auth import ANY_TOWNHALL, Claims
from jansamvad.limiter.base import RateLimiter
from jansamvad.metrics import NodeMetrics
from jansamvad.models import (
    PUBLIC_STATES,
    PollState,
    QState,
    Question,
    Restriction,
    RestrictionKind,
    Status,
    Townhall,
    now_ms,
    script_lang,
)
from jansamvad.moderation import scope as moderation_scope
from jansamvad.moderation.filters import check as moderate_text
from jansamvad.moderation.grouping import QuestionGrouper
from jansamvad.moderation.policy import Action, Policy
from jansamvad.protocol.codes import CloseCode, ErrorCode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.protocol.messages import ACTION_ROLES
from jansamvad.protocol.records import (
    Ack,
    Announce,
    AnnounceEvent,
    Ask,
    Audio,
    Claim,
    ClaimUpdate,
    End,
    GoLive,
    Moderate,
    PollClose,
    PollCreate,
    PollEvent,
    PollOpen,
    PollVote,
    QuestionEvent,
    QueueUpdate,
    Release,
    Restrict,
    ServerMessage,
    SettingsEvent,
    SlowMode,
    Speech,
    SpeechEvent,
    StatusEvent,
    Upvote,
    to_map,
)
from jansamvad.protocol.roles import Role
from jansamvad.regions_http import RegionDirectory
from jansamvad.rollup.tally import UnitTally
from jansamvad.settings import Settings
from jansamvad.store.base import BadState, OwnQuestion, Store


class HandlerOwner(Protocol):
    """What the handlers need of the node (node.py's `Node`)."""

    settings: Settings
    metrics: NodeMetrics
    store: Store
    limiter: RateLimiter
    policy: Policy
    tally: UnitTally
    regions: RegionDirectory  # the region tree: announcement targets, local moderators' scopes

    def clock_precise(self) -> float: ...

    def count_reaction(self, th: str, kind: str) -> None: ...

    async def grouper(self, th: str) -> QuestionGrouper: ...

    async def publish_event(self, th: str, message: Mapping[str, Any]) -> int: ...

    async def publish_event_once(self, th: str, message: Mapping[str, Any], key: str) -> tuple[int, bool]: ...

    async def publish_moderation(self, th: str, message: Mapping[str, Any], key: str = "") -> int: ...

    async def publish_question_notice(self, th: str, q: Question) -> None: ...

    async def publish_audio(self, th: str, data: bytes, init: bool, mime: str) -> None: ...

    async def end_townhall(self, th: str, by: str) -> tuple[Townhall, int]: ...

    async def kick(self, sub: str, th: str) -> None: ...


class HandlerConnection(Protocol):
    """What the handlers need of the session's connection (connection.py's `WsConnection`)."""

    ip: str  # the client's address, for per-network limits

    def close(self, code: CloseCode, reason: str = "") -> None: ...


class MessageHandlers:
    """The message handlers of a session; `Client` has them and sets the attributes declared here."""

    __slots__ = ()

    node: HandlerOwner
    conn: HandlerConnection
    claims: Claims | None  # set by the join: every handler here runs for a joined session
    th: str

    def send(self, message: ServerMessage | Mapping[str, Any]) -> None:
        raise NotImplementedError  # Client.send

    async def _townhall_live(self) -> None:
        townhall = await self.node.store.get_townhall(self.th)
        if townhall is None or townhall.status is not Status.LIVE:
            raise ProtocolViolation(ErrorCode.BAD_STATE, "the town hall is not live")

    async def _townhall_not_ended(self) -> Townhall:
        townhall = await self.node.store.get_townhall(self.th)
        if townhall is None or townhall.status is Status.ENDED:
            raise ProtocolViolation(ErrorCode.BAD_STATE, "the town hall has ended")
        return townhall

    async def _check_allowed(self) -> None:
        """A banned or timed-out citizen may listen but not act."""
        assert self.claims is not None
        restriction = await self.node.store.restriction(self.th, self.claims.sub)
        if restriction is None:
            return
        if restriction.kind is RestrictionKind.BAN:
            raise ProtocolViolation(ErrorCode.BANNED, "you are banned from this town hall")
        retry_ms = max(1, restriction.until_ms - now_ms())
        seconds = retry_ms // 1000 + 1
        raise ProtocolViolation(
            ErrorCode.TIMED_OUT, f"a moderator has timed you out for {seconds} more seconds", retry_ms=retry_ms
        )

    async def _limit(self, key: str, per_minute: float, burst: int, what: str) -> None:
        retry_ms = await self.node.limiter.hit(key, per_minute / 60.0, burst)
        if retry_ms:
            self.node.metrics.rate_limited[what] += 1
            raise ProtocolViolation(ErrorCode.RATE_LIMITED, f"too many {what}", retry_ms=retry_ms)

    async def _on_ask(self, msg: Ask) -> None:
        assert self.claims is not None
        node, store, settings = self.node, self.node.store, self.node.settings
        sub, key, text = self.claims.sub, msg.key, msg.text
        townhall = await self._townhall_not_ended()
        existing = await store.question_for_key(self.th, sub, key)
        if existing is not None:  # a retry: answered again, without spending limits or running the filters
            await node.publish_question_notice(self.th, existing)  # in case the first attempt could not publish it
            self.send(Ack(re=msg.id, key=key, qid=existing.qid, state=str(existing.state), dup=True))
            return
        await self._check_allowed()
        await self._limit(f"ask:{self.th}:{sub}", settings.ask_per_minute, settings.ask_per_minute, "questions")
        per_ip = settings.ask_per_minute_per_ip
        await self._limit(f"ask-ip:{self.conn.ip}", per_ip, per_ip, "questions from this network")
        if townhall.slow_mode_s:
            await self._limit(f"slow:{self.th}:{sub}", 60.0 / townhall.slow_mode_s, 1, "questions in slow mode")
        verdict = moderate_text(node.policy, text, await store.recent_texts(self.th, sub, node.policy.repeat_window))
        rejected = verdict.action is Action.REJECT
        grouper = await node.grouper(self.th)
        group = "" if rejected else (grouper.match(text) or "")
        q, created = await store.add_question(
            self.th,
            author=sub,
            key=key,
            text=text,
            name=self.claims.name,
            region=self.claims.region,
            state=QState.REJECTED if rejected else QState.PENDING,
            flags=verdict.reasons,
            group=group,
            lang=script_lang(text),
            unit=self.claims.unit,
        )
        if created:
            node.tally.count(self.th, "asked", self.claims.unit)
        if created and not rejected and not group:
            grouper.add(q.qid, text)
        await node.publish_question_notice(self.th, q)  # also when not created: a concurrent retry stored it
        self.send(Ack(re=msg.id, key=key, qid=q.qid, state=str(q.state), dup=not created))

    async def _on_upvote(self, msg: Upvote) -> None:
        assert self.claims is not None
        qid = msg.qid
        await self._check_allowed()
        per_minute = self.node.settings.votes_per_minute
        await self._limit(f"vote:{self.th}:{self.claims.sub}", per_minute, per_minute, "votes")
        try:
            votes, counted = await self.node.store.upvote(self.th, qid, self.claims.sub)
        except OwnQuestion as exc:
            raise ProtocolViolation(ErrorCode.OWN_QUESTION, str(exc)) from None
        self.send(Ack(re=msg.id, qid=qid, votes=votes, dup=not counted))

    async def _on_poll_vote(self, msg: PollVote) -> None:
        assert self.claims is not None
        pid, option = msg.pid, msg.option
        await self._check_allowed()
        per_minute = self.node.settings.votes_per_minute
        await self._limit(f"vote:{self.th}:{self.claims.sub}", per_minute, per_minute, "votes")
        # The ack names the option that counts: the first vote's, when this is a second one.
        option, counted = await self.node.store.vote_poll(self.th, pid, self.claims.sub, option)
        if counted:  # per unit: all poll votes, and this poll's option (results by district in the export)
            self.node.tally.count(self.th, "votes", self.claims.unit)
            self.node.tally.count(self.th, f"poll:{pid}:{option}", self.claims.unit)
        self.send(Ack(re=msg.id, pid=pid, option=option, dup=not counted))

    async def _on_poll_create(self, msg: PollCreate) -> None:
        poll = await self.node.store.create_poll(self.th, msg.question, msg.options)
        self.send(Ack(re=msg.id, pid=poll.pid))

    async def _set_poll_state(self, msg: PollOpen | PollClose, state: PollState) -> None:
        assert self.claims is not None
        poll = await self.node.store.set_poll_state(self.th, msg.pid, state, self.claims.sub)
        seq = await self.node.publish_event(self.th, to_map(PollEvent(p=poll.public())))
        self.send(Ack(re=msg.id, pid=poll.pid, seq=seq))

    async def _on_poll_open(self, msg: PollOpen) -> None:
        # `end` closes every open poll; an admin may still join an ended town hall, but not open a poll in it.
        await self._townhall_not_ended()
        await self._set_poll_state(msg, PollState.OPEN)

    async def _on_poll_close(self, msg: PollClose) -> None:
        await self._set_poll_state(msg, PollState.CLOSED)

    async def _on_claim(self, msg: Claim) -> None:
        assert self.claims is not None
        qid, me = msg.qid, self.claims.sub
        q = await self._question_in_scope(qid)
        ttl_ms = int(self.node.settings.claim_ttl_s * 1000)
        holder, until = await self.node.store.claim(self.th, qid, me, ttl_ms)
        if holder != me:
            raise ProtocolViolation(ErrorCode.CLAIMED, f"{holder} is deciding this question")
        notice = ClaimUpdate(qid=qid, by=me, until=until, unit=q.unit if q else "")
        await self.node.publish_moderation(self.th, to_map(notice))
        self.send(Ack(re=msg.id, qid=qid, until=until))

    async def _on_release(self, msg: Release) -> None:
        assert self.claims is not None
        qid = msg.qid
        q = await self._question_in_scope(qid)
        if await self.node.store.release(self.th, qid, self.claims.sub):
            notice = ClaimUpdate(qid=qid, by=None, until=0, unit=q.unit if q else "")
            await self.node.publish_moderation(self.th, to_map(notice))
        self.send(Ack(re=msg.id, qid=qid))

    async def _on_restrict(self, msg: Restrict) -> None:
        assert self.claims is not None
        target, action = msg.sub, msg.action
        scope = self.th
        if msg.scope == "global":
            if self.claims.role is not Role.ADMIN:
                raise ProtocolViolation(ErrorCode.FORBIDDEN, "only an admin may restrict a citizen in every town hall")
            scope = ANY_TOWNHALL
        reason = msg.reason
        store = self.node.store
        tree = await self.node.regions.current_tree() if self.claims.scope else None
        await moderation_scope.check_citizen(store, self.th, self.claims, target, tree)
        if action == "lift":
            await store.lift(scope, target, self.claims.sub, reason)
            self.send(Ack(re=msg.id, sub=target, until=0))
            return
        kind = RestrictionKind(action)
        seconds = msg.seconds
        if seconds is None:
            seconds = 600 if kind is RestrictionKind.TIMEOUT else 0
        until = now_ms() + seconds * 1000 if seconds else 0
        await store.restrict(Restriction(target, kind, until, scope, self.claims.sub, reason, now_ms()))
        if kind is RestrictionKind.BAN:
            await self.node.kick(target, scope)
        self.send(Ack(re=msg.id, sub=target, until=until))

    async def _on_slow_mode(self, msg: SlowMode) -> None:
        assert self.claims is not None
        moderation_scope.check_town_hall_wide(self.claims, "set slow mode")
        seconds = msg.seconds
        await self.node.store.set_slow_mode(self.th, seconds)
        seq = await self.node.publish_event(self.th, to_map(SettingsEvent(slow_mode=seconds)))
        self.send(Ack(re=msg.id, seq=seq))

    async def _on_speech(self, msg: Speech) -> None:
        await self._townhall_live()
        await self._say(msg, SpeechEvent(text=msg.text, final=msg.final))

    async def _on_announce(self, msg: Announce) -> None:
        await self._townhall_live()
        event = AnnounceEvent(text=msg.text)
        if msg.to:  # to a region subtree only (targeting.py): the unit must be in the tree
            unit = await self.node.regions.unit(msg.to)
            if unit is None:
                raise ProtocolViolation(ErrorCode.INVALID_FIELD, "to: no such region unit", field="to")
            event = AnnounceEvent(text=msg.text, to=unit.code, to_name=unit.name_hi)
        await self._say(msg, event)

    async def _say(self, msg: Speech | Announce, event: SpeechEvent | AnnounceEvent) -> None:
        """Publish a leader's event; with an idempotency key, a resend is acked `dup` with the first seq. Keys are the
        sender's own (as question keys are the asker's): another leader or admin may pick the same one."""
        assert self.claims is not None
        key = msg.key
        once = f"{self.claims.sub}:{key}" if key else ""
        seq, dup = await self.node.publish_event_once(self.th, to_map(event), once)
        self.send(Ack(re=msg.id, seq=seq, dup=dup))

    async def _on_audio(self, msg: Audio) -> None:
        await self._townhall_live()
        await self.node.publish_audio(self.th, msg.data, msg.init, msg.mime)

    async def _set_status(self, msg: GoLive, status: Status) -> None:
        await self.node.store.set_status(self.th, status)
        seq = await self.node.publish_event(self.th, to_map(StatusEvent(status=str(status))))
        self.send(Ack(re=msg.id, seq=seq))

    async def _on_go_live(self, msg: GoLive) -> None:
        await self._set_status(msg, Status.LIVE)

    async def _on_end(self, msg: End) -> None:
        assert self.claims is not None
        _, seq = await self.node.end_townhall(self.th, self.claims.sub)
        self.send(Ack(re=msg.id, seq=seq))

    async def _on_moderate(self, msg: Moderate) -> None:
        assert self.claims is not None
        action = msg.action
        if self.claims.role not in ACTION_ROLES[action]:
            raise ProtocolViolation(ErrorCode.FORBIDDEN, f"a {self.claims.role} may not {action} questions")
        reason = msg.reason
        qid = msg.qid
        to = ""
        if self.claims.scope or action == "forward":  # a local moderator's (moderation/scope.py)
            tree = await self.node.regions.current_tree()
            found = await moderation_scope.question_in_scope(self.node.store, self.th, self.claims, qid, tree)
            if action == "forward" and found is not None:
                to = moderation_scope.forward_target(tree, self.claims, found)
        if action in ("approve", "reject", "forward"):
            holder = await self.node.store.claim_holder(self.th, qid)
            if holder is not None and holder != self.claims.sub:
                raise ProtocolViolation(ErrorCode.CLAIMED, f"{holder} is deciding this question")
        try:
            q = await self.node.store.decide(self.th, qid, action, self.claims.sub, reason, to)
            dup = False
        except BadState:
            # The same decision again from the same moderator: a resend after `unavailable`, when the decision was
            # stored but its notices may not have gone out. Acknowledged `dup`; the notices below are keyed by the
            # decision, so they go out now only if the first attempt could not publish them.
            repeated = await self.node.store.get_question(self.th, qid)
            last = repeated.decisions[-1] if repeated is not None and repeated.decisions else None
            if repeated is None or last is None or (last.action, last.by, last.to) != (action, self.claims.sub, to):
                raise
            q, dup, reason = repeated, True, last.reason
        if action == "approve" and not dup:  # counted for the asker's unit, which the question carries
            self.node.tally.count(self.th, "approved", q.unit)
        if action in ("approve", "reject", "forward"):
            await self.node.store.release(self.th, qid, self.claims.sub)
        update = QueueUpdate(
            qid=q.qid,
            state=str(q.state),
            pinned=q.pinned,
            by=self.claims.sub,
            reason=reason,
            unit=q.unit,
            fwd=q.forwarded_to,
        )
        once = f"decision/{q.qid}/{len(q.decisions)}"  # this decision's notices, at most once each (node.py)
        await self.node.publish_moderation(self.th, to_map(update), key=once)
        # A question enters, changes in, or (rejected after approval) leaves the public list: an event for everyone.
        # A forward changes nothing the public sees.
        was_public = any(d.action == "approve" for d in q.decisions[:-1])
        changes_public = q.state in PUBLIC_STATES or (q.state is QState.REJECTED and was_public)
        if action != "forward" and changes_public:
            await self.node.publish_event_once(self.th, to_map(QuestionEvent(q=q.public())), once)
        self.send(Ack(re=msg.id, qid=q.qid, state=str(q.state), dup=dup))

    async def _question_in_scope(self, qid: str) -> Question | None:
        """The question (None: no such qid), after checking a local moderator's scope (moderation/scope.py)."""
        assert self.claims is not None
        tree = await self.node.regions.current_tree() if self.claims.scope else self.node.regions.tree
        return await moderation_scope.question_in_scope(self.node.store, self.th, self.claims, qid, tree)
