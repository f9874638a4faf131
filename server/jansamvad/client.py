"""One client session: hello, then role-checked messages, each answered with ack or error.

The session logic talks to its connection only through `send_frame`, `close`, `fail` and the pause / resume of
live frames, so it does not care how bytes reach the socket. Messages that touch the store or broker are handled
in order by a worker task that exists only while there is work: an idle connection has no task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from jansamvad.auth import ANY_TOWNHALL, Claims, InvalidToken
from jansamvad.feeds import Mode
from jansamvad.models import (
    PUBLIC_STATES,
    PollState,
    QState,
    Restriction,
    RestrictionKind,
    Status,
    Townhall,
    now_ms,
    script_lang,
)
from jansamvad.moderation.filters import check as moderate_text
from jansamvad.moderation.policy import Action
from jansamvad.protocol.codec import decode, frame_message
from jansamvad.protocol.codes import CloseCode, ErrorCode
from jansamvad.protocol.errors import ConnectionRefused, ProtocolViolation
from jansamvad.protocol.messages import ACTION_ROLES, CLIENT_MESSAGES, VERBS, ClientMessage, parse_client_message
from jansamvad.protocol.roles import STAFF, Role
from jansamvad.store.base import BadState, NotFound, OwnQuestion

if TYPE_CHECKING:
    from jansamvad.connection import WsConnection
    from jansamvad.node import Node

log = logging.getLogger("jansamvad.client")

# Inbound flow control: stop reading a connection whose queued messages pile up; resume when it has caught up.
_INBOX_PAUSE = 32
# Messages a client may send after its hello before the welcome comes (a client that pipelines): kept, and handled
# in order once the join is done. More than this before the welcome is a bad hello.
EARLY_MESSAGES_MAX = 32
_INBOX_RESUME = 8


class Unavailable(Exception):
    """The broker or store cannot take the action now; the client should retry with the same key."""


# Errors that say "not now" rather than "your message is wrong": a client that meets them has done nothing to stop
# talking to, so they never count towards max_errors (docs/protocol.md, section 6.1).
_NOT_THE_CLIENTS_FAULT = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.TIMED_OUT, ErrorCode.UNAVAILABLE})


class Client:
    __slots__ = (
        "allowance",
        "allowance_at",
        "claims",
        "conn",
        "errors",
        "early",
        "inbox",
        "limited_answers",
        "mode",
        "node",
        "reaction_allowance",
        "reaction_at",
        "reading_paused",
        "th",
        "worker",
    )

    def __init__(self, node: Node, conn: WsConnection) -> None:
        self.node = node
        self.conn = conn
        self.claims: Claims | None = None
        self.th = ""
        self.mode = Mode.CAPTIONS  # the listening mode (feeds.py): hello.mode, then the `mode` message
        self.errors = 0
        self.inbox: deque[ClientMessage] | None = None
        self.early: list[ClientMessage] | None = None  # sent after hello, before the join was done
        self.worker: asyncio.Task[None] | None = None
        self.reading_paused = False
        settings = node.settings
        self.allowance = float(settings.citizen_msg_burst)
        self.allowance_at = node.clock
        # Reactions have a bucket of their own: a citizen tapping away must not use up the budget of their questions.
        # Starts as the shared int (no float object per idle connection); the first reaction makes it a float.
        self.reaction_allowance: float = settings.reaction_burst
        self.reaction_at = node.clock
        self.limited_answers = 0  # rate_limited answers since the keepalive wheel last turned (it resets this)

    @property
    def role(self) -> Role | None:
        return self.claims.role if self.claims else None

    # Sending

    def send(self, message: dict[str, Any]) -> None:
        self.node.metrics.messages_out[message["t"]] += 1
        self.conn.send_frame(frame_message(message, self.conn.encoding))

    def send_error(self, violation: ProtocolViolation) -> None:
        self.send(violation.to_message())
        self.node.metrics.errors[str(violation.code)] += 1
        if violation.code in _NOT_THE_CLIENTS_FAULT:
            return
        self.errors += 1
        if self.errors > self.node.settings.max_errors:
            self.conn.close(CloseCode.TOO_MANY_ERRORS)

    # Receiving

    def on_message(self, data: bytes) -> None:
        conn = self.conn
        obj: dict[str, Any] = {}
        try:
            obj = decode(data, conn.encoding)
            msg = parse_client_message(obj, self.node.settings.limits, conn.encoding)
        except ProtocolViolation as violation:
            if self.claims is None:
                # A hello without a usable token (missing, not a string, too long) is refused as the token's fault
                # (4001: get a token); anything else wrong with the first message as a bad hello (4000).
                token_fault = obj.get("t") == "hello" and violation.field == "token"
                conn.close(CloseCode.UNAUTHORIZED if token_fault else CloseCode.BAD_HELLO, violation.msg)
            else:
                self.send_error(violation)
            return
        self.node.metrics.messages_in[msg.type] += 1
        if self.claims is None:
            if self.inbox is None and msg.type == "hello":
                self._queue(msg)
            elif self.inbox is None:
                conn.close(CloseCode.BAD_HELLO, "the first message must be hello")
            elif self.early is not None and len(self.early) >= EARLY_MESSAGES_MAX:
                conn.close(CloseCode.BAD_HELLO, f"more than {EARLY_MESSAGES_MAX} messages before the welcome")
            else:  # the hello is being handled: this one waits for the join, then goes the usual way (below)
                self.early = self.early or []
                self.early.append(msg)
            return
        self._dispatch(msg)

    def _dispatch(self, msg: ClientMessage) -> None:
        """A joined session's message: rate and role checks, then handled inline or queued for the worker."""
        assert self.claims is not None
        conn = self.conn
        if msg.type == "hello":
            self.send_error(ProtocolViolation(ErrorCode.ALREADY_JOINED, "this session has already joined", re=msg.id))
            return
        if msg.type == "react" and self.claims.role is Role.CITIZEN:
            # Reactions are conflated into one total a second anyway: over the rate they are dropped without a word.
            if self._reaction_allowed():
                self.node.count_reaction(self.th, msg.fields["kind"])
                self.node.tally.count(self.th, "reactions", self.claims.unit)
            else:
                self.node.metrics.rate_limited["reactions"] += 1
            return
        retry_ms = self._rate_limit()
        if retry_ms:
            self._answer_rate_limited(msg, retry_ms)
            return
        spec = CLIENT_MESSAGES[msg.type]
        if self.claims.role not in spec.roles:
            what = VERBS.get(msg.type, f"send {msg.type}")
            self.send_error(ProtocolViolation(ErrorCode.FORBIDDEN, f"a {self.claims.role} may not {what}", re=msg.id))
            return
        # Fire-and-forget messages that need no store round trip are handled right here.
        if msg.type == "ping":
            self.send({"t": "pong"} if msg.id is None else {"t": "pong", "re": msg.id})
        elif msg.type == "leave":
            conn.close(CloseCode.NORMAL, "left")
        else:
            self._queue(msg)

    def _answer_rate_limited(self, msg: ClientMessage, retry_ms: int) -> None:
        """Over the message rate: `rate_limited` with `retry_ms` (a leader's page resends its speech with the same
        key then), which never counts towards max_errors. A flood past the role's burst in answers within a second
        is dropped unanswered, so a hostile client cannot make the node write more than it reads."""
        self.node.metrics.rate_limited["messages"] += 1
        assert self.claims is not None
        staff = self.claims.role in STAFF
        settings = self.node.settings
        if self.limited_answers >= (settings.staff_msg_burst if staff else settings.citizen_msg_burst):
            self.node.metrics.rate_limited["unanswered"] += 1
            return
        # The k-th refused message of a burst is told to come back when k more messages are allowed, so a client that
        # resends each after its retry_ms (a pasted speech) is spread over the refill instead of refused again at once.
        rate = settings.staff_msgs_per_s if staff else settings.citizen_msgs_per_s
        retry_ms += int(self.limited_answers * 1000 / rate)
        self.limited_answers += 1
        self.send_error(ProtocolViolation(ErrorCode.RATE_LIMITED, "too many messages", re=msg.id, retry_ms=retry_ms))

    def _reaction_allowed(self) -> bool:
        settings = self.node.settings
        now = self.node.clock_precise()
        rate = settings.reactions_per_s
        self.reaction_allowance = min(
            settings.reaction_burst, self.reaction_allowance + (now - self.reaction_at) * rate
        )
        self.reaction_at = now
        if self.reaction_allowance >= 1:
            self.reaction_allowance -= 1
            return True
        return False

    def _rate_limit(self) -> int:
        """A token bucket per connection; returns 0 when the message may pass, else ms until it could."""
        settings = self.node.settings
        staff = self.claims is not None and self.claims.role in STAFF
        rate = settings.staff_msgs_per_s if staff else settings.citizen_msgs_per_s
        burst = settings.staff_msg_burst if staff else settings.citizen_msg_burst
        now = self.node.clock_precise()
        self.allowance = min(burst, self.allowance + (now - self.allowance_at) * rate)
        self.allowance_at = now
        if self.allowance >= 1:
            self.allowance -= 1
            return 0
        return max(1, int((1 - self.allowance) / rate * 1000))

    def _queue(self, msg: ClientMessage) -> None:
        if self.inbox is None:
            self.inbox = deque()
        self.inbox.append(msg)
        if len(self.inbox) >= _INBOX_PAUSE and not self.reading_paused and self.conn.transport is not None:
            self.reading_paused = True
            self.conn.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        inbox = self.inbox
        assert inbox is not None
        try:
            while inbox and self.conn.state <= 1:
                msg = inbox.popleft()
                await self._handle(msg)
                if self.reading_paused and len(inbox) <= _INBOX_RESUME and self.conn.transport is not None:
                    self.reading_paused = False
                    self.conn.transport.resume_reading()
        finally:
            self.worker = None

    async def _handle(self, msg: ClientMessage) -> None:
        try:
            if msg.type == "hello":
                await self._hello(msg)
            else:
                await getattr(self, "_on_" + msg.type)(msg)
        except ProtocolViolation as violation:
            violation.re = msg.id
            self.send_error(violation)
        except ConnectionRefused as refused:
            self.conn.close(refused.code, refused.detail)
        except NotFound as exc:
            self.send_error(ProtocolViolation(ErrorCode.NOT_FOUND, str(exc), re=msg.id))
        except BadState as exc:
            self.send_error(ProtocolViolation(ErrorCode.BAD_STATE, str(exc), re=msg.id))
        except (Unavailable, ConnectionError, TimeoutError, OSError) as exc:
            log.warning("unavailable while handling %s: %s", msg.type, type(exc).__name__)
            if self.claims is None:
                self.conn.close(CloseCode.TRY_AGAIN_LATER, "store unreachable")
                return
            self.send_error(
                ProtocolViolation(
                    ErrorCode.UNAVAILABLE, "cannot store this right now; send it again", re=msg.id, retry_ms=1000
                )
            )
        except Exception:
            log.exception("unexpected error while handling %s", msg.type)
            if self.claims is None:
                self.conn.close(CloseCode.INTERNAL_ERROR)
            else:
                self.send(ProtocolViolation(ErrorCode.INTERNAL, "an unexpected server error", re=msg.id).to_message())

    # Handlers

    async def _hello(self, msg: ClientMessage) -> None:
        """A join always ends, within join_timeout: in `welcome` (and the replay or snapshot), or in a close. A session
        that could not join (its store or broker unreachable or hung) is taken out of its rooms and closed with 1013
        (1011 for a surprise), never left joined-but-silent."""
        try:
            async with asyncio.timeout(self.node.settings.join_timeout_s):
                await self._join(msg)
            early, self.early = self.early, None
            for queued in early or ():
                if self.claims is None or self.conn.state != 1:  # closed meanwhile (1: ConnState.OPEN)
                    break
                self._dispatch(queued)
        except ConnectionRefused:
            raise
        except Exception as exc:
            self.node.abandon_join(self)
            if isinstance(exc, (Unavailable, ConnectionError, TimeoutError, OSError)):
                log.warning("join failed: %s", type(exc).__name__)
                self.conn.close(CloseCode.TRY_AGAIN_LATER, "could not join now")
            else:
                log.exception("unexpected error while joining")
                self.conn.close(CloseCode.INTERNAL_ERROR)

    async def _join(self, msg: ClientMessage) -> None:
        node = self.node
        try:
            claims = node.tokens.verify(msg.fields["token"])
        except InvalidToken as exc:
            raise ConnectionRefused(CloseCode.UNAUTHORIZED, str(exc)) from None
        th = msg.get("th") or claims.th
        if th == ANY_TOWNHALL:
            raise ConnectionRefused(CloseCode.BAD_HELLO, "an admin token needs hello.th")
        if not claims.allows_townhall(th):
            raise ConnectionRefused(CloseCode.FORBIDDEN, "the token is for another town hall")
        if self.conn.staff_lane and claims.role not in STAFF:
            # The staff lane skips the citizens' handshake budget: a citizen may not use it to jump the queue.
            raise ConnectionRefused(CloseCode.FORBIDDEN, "the staff lane is for leaders, moderators and admins")
        townhall = await node.store.get_townhall(th)
        if townhall is None:
            raise ConnectionRefused(CloseCode.TOWNHALL_NOT_FOUND)
        if townhall.status is Status.ENDED and claims.role is not Role.ADMIN:
            raise ConnectionRefused(CloseCode.TOWNHALL_ENDED)
        if claims.role is Role.CITIZEN:
            restriction = await node.store.restriction(th, claims.sub)
            if restriction is not None and restriction.kind is RestrictionKind.BAN:
                raise ConnectionRefused(CloseCode.BANNED)
        if self.conn.state != 1:
            return  # closed while we looked things up
        if self.conn.staff_lane:
            if node.staff_joined >= node.settings.max_staff_connections:
                raise ConnectionRefused(CloseCode.TRY_AGAIN_LATER, "the staff lane is full")
            node.staff_joined += 1  # undone in Node.connection_lost, which sees the claims set just below
        self.claims, self.th = claims, th
        self.mode = Mode(msg.get("mode", Mode.CAPTIONS))
        if claims.role not in STAFF:  # citizens and booth screens
            self.conn.set_max_message_bytes(node.settings.citizen_max_message_bytes)
        else:
            self.allowance = float(node.settings.staff_msg_burst)
        await node.join(self, msg.get("last_seq"), townhall, msg.get("last_mseq"))

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

    async def _on_ask(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        node, store, settings = self.node, self.node.store, self.node.settings
        sub, key, text = self.claims.sub, msg.fields["key"], msg.fields["text"]
        townhall = await self._townhall_not_ended()
        existing = await store.question_for_key(self.th, sub, key)
        if existing is not None:  # a retry: answered again, without spending limits or running the filters
            await node.publish_question_notice(self.th, existing)  # in case the first attempt could not publish it
            self.send(
                {"t": "ack", "re": msg.id, "key": key, "qid": existing.qid, "state": str(existing.state), "dup": True}
            )
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
        ack: dict[str, Any] = {"t": "ack", "re": msg.id, "key": key, "qid": q.qid, "state": str(q.state)}
        if not created:
            ack["dup"] = True
        self.send(ack)

    async def _on_upvote(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        qid = msg.fields["qid"]
        await self._check_allowed()
        per_minute = self.node.settings.votes_per_minute
        await self._limit(f"vote:{self.th}:{self.claims.sub}", per_minute, per_minute, "votes")
        try:
            votes, counted = await self.node.store.upvote(self.th, qid, self.claims.sub)
        except OwnQuestion as exc:
            raise ProtocolViolation(ErrorCode.OWN_QUESTION, str(exc)) from None
        ack: dict[str, Any] = {"t": "ack", "re": msg.id, "qid": qid, "votes": votes}
        if not counted:
            ack["dup"] = True
        self.send(ack)

    async def _on_poll_vote(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        pid, option = msg.fields["pid"], msg.fields["option"]
        await self._check_allowed()
        per_minute = self.node.settings.votes_per_minute
        await self._limit(f"vote:{self.th}:{self.claims.sub}", per_minute, per_minute, "votes")
        # The ack names the option that counts: the first vote's, when this is a second one.
        option, counted = await self.node.store.vote_poll(self.th, pid, self.claims.sub, option)
        if counted:  # per unit: all poll votes, and this poll's option (results by district in the export)
            self.node.tally.count(self.th, "votes", self.claims.unit)
            self.node.tally.count(self.th, f"poll:{pid}:{option}", self.claims.unit)
        ack: dict[str, Any] = {"t": "ack", "re": msg.id, "pid": pid, "option": option}
        if not counted:
            ack["dup"] = True
        self.send(ack)

    async def _on_poll_create(self, msg: ClientMessage) -> None:
        poll = await self.node.store.create_poll(self.th, msg.fields["question"], msg.fields["options"])
        self.send({"t": "ack", "re": msg.id, "pid": poll.pid})

    async def _set_poll_state(self, msg: ClientMessage, state: PollState) -> None:
        assert self.claims is not None
        poll = await self.node.store.set_poll_state(self.th, msg.fields["pid"], state, self.claims.sub)
        seq = await self.node.publish_event(self.th, {"t": "poll", "p": poll.public()})
        self.send({"t": "ack", "re": msg.id, "pid": poll.pid, "seq": seq})

    async def _on_poll_open(self, msg: ClientMessage) -> None:
        # `end` closes every open poll; an admin may still join an ended town hall, but not open a poll in it.
        await self._townhall_not_ended()
        await self._set_poll_state(msg, PollState.OPEN)

    async def _on_poll_close(self, msg: ClientMessage) -> None:
        await self._set_poll_state(msg, PollState.CLOSED)

    async def _on_claim(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        qid, me = msg.fields["qid"], self.claims.sub
        ttl_ms = int(self.node.settings.claim_ttl_s * 1000)
        holder, until = await self.node.store.claim(self.th, qid, me, ttl_ms)
        if holder != me:
            raise ProtocolViolation(ErrorCode.CLAIMED, f"{holder} is deciding this question")
        await self.node.publish_moderation(self.th, {"t": "claim_update", "qid": qid, "by": me, "until": until})
        self.send({"t": "ack", "re": msg.id, "qid": qid, "until": until})

    async def _on_release(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        qid = msg.fields["qid"]
        if await self.node.store.release(self.th, qid, self.claims.sub):
            await self.node.publish_moderation(self.th, {"t": "claim_update", "qid": qid, "by": None, "until": 0})
        self.send({"t": "ack", "re": msg.id, "qid": qid})

    async def _on_restrict(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        target, action = msg.fields["sub"], msg.fields["action"]
        scope = self.th
        if msg.get("scope") == "global":
            if self.claims.role is not Role.ADMIN:
                raise ProtocolViolation(ErrorCode.FORBIDDEN, "only an admin may restrict a citizen in every town hall")
            scope = ANY_TOWNHALL
        reason = msg.get("reason", "")
        store = self.node.store
        if action == "lift":
            await store.lift(scope, target, self.claims.sub, reason)
            self.send({"t": "ack", "re": msg.id, "sub": target, "until": 0})
            return
        kind = RestrictionKind(action)
        seconds = msg.get("seconds", 600 if kind is RestrictionKind.TIMEOUT else 0)
        until = now_ms() + seconds * 1000 if seconds else 0
        await store.restrict(Restriction(target, kind, until, scope, self.claims.sub, reason, now_ms()))
        if kind is RestrictionKind.BAN:
            await self.node.kick(target, scope)
        self.send({"t": "ack", "re": msg.id, "sub": target, "until": until})

    async def _on_slow_mode(self, msg: ClientMessage) -> None:
        seconds = msg.fields["seconds"]
        await self.node.store.set_slow_mode(self.th, seconds)
        seq = await self.node.publish_event(self.th, {"t": "settings", "slow_mode": seconds})
        self.send({"t": "ack", "re": msg.id, "seq": seq})

    async def _on_speech(self, msg: ClientMessage) -> None:
        await self._townhall_live()
        final = msg.get("final", True)
        await self._say(msg, {"t": "speech", "text": msg.fields["text"], "final": final})

    async def _on_announce(self, msg: ClientMessage) -> None:
        await self._townhall_live()
        await self._say(msg, {"t": "announce", "text": msg.fields["text"]})

    async def _say(self, msg: ClientMessage, event: dict[str, Any]) -> None:
        """Publish a leader's event; with an idempotency key, a resend is acked `dup` with the first seq. Keys are the
        sender's own (as question keys are the asker's): another leader or admin may pick the same one."""
        assert self.claims is not None
        key = msg.get("key", "")
        seq, dup = await self.node.publish_event_once(self.th, event, f"{self.claims.sub}:{key}" if key else "")
        ack: dict[str, Any] = {"t": "ack", "re": msg.id, "seq": seq}
        if dup:
            ack["dup"] = True
        self.send(ack)

    async def _on_audio(self, msg: ClientMessage) -> None:
        await self._townhall_live()
        await self.node.publish_audio(self.th, msg.fields["data"], msg.get("init", False), msg.get("mime", ""))

    async def _on_mode(self, msg: ClientMessage) -> None:
        mode = Mode(msg.fields["mode"])
        await self.node.set_mode(self, mode)
        if msg.id is not None:
            self.send({"t": "ack", "re": msg.id, "mode": str(mode)})

    async def _set_status(self, msg: ClientMessage, status: Status) -> None:
        await self.node.store.set_status(self.th, status)
        seq = await self.node.publish_event(self.th, {"t": "status", "status": str(status)})
        self.send({"t": "ack", "re": msg.id, "seq": seq})

    async def _on_go_live(self, msg: ClientMessage) -> None:
        await self._set_status(msg, Status.LIVE)

    async def _on_end(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        _, seq = await self.node.end_townhall(self.th, self.claims.sub)
        self.send({"t": "ack", "re": msg.id, "seq": seq})

    async def _on_moderate(self, msg: ClientMessage) -> None:
        assert self.claims is not None
        action = msg.fields["action"]
        if self.claims.role not in ACTION_ROLES[action]:
            raise ProtocolViolation(ErrorCode.FORBIDDEN, f"a {self.claims.role} may not {action} questions")
        reason = msg.get("reason", "")
        qid = msg.fields["qid"]
        if action in ("approve", "reject"):
            holder = await self.node.store.claim_holder(self.th, qid)
            if holder is not None and holder != self.claims.sub:
                raise ProtocolViolation(ErrorCode.CLAIMED, f"{holder} is deciding this question")
        q = await self.node.store.decide(self.th, qid, action, self.claims.sub, reason)
        if action == "approve":  # counted for the asker's unit, which the question carries
            self.node.tally.count(self.th, "approved", q.unit)
        if action in ("approve", "reject"):
            await self.node.store.release(self.th, qid, self.claims.sub)
        await self.node.publish_moderation(
            self.th,
            {
                "t": "queue_update",
                "qid": q.qid,
                "state": str(q.state),
                "pinned": q.pinned,
                "by": self.claims.sub,
                "reason": reason,
            },
        )
        # A question enters, changes in, or (rejected after approval) leaves the public list: an event for everyone.
        was_public = any(d.action == "approve" for d in q.decisions[:-1])
        if q.state in PUBLIC_STATES or (q.state is QState.REJECTED and was_public):
            await self.node.publish_event(self.th, {"t": "question", "q": q.public()})
        self.send({"t": "ack", "re": msg.id, "qid": q.qid, "state": str(q.state)})

    async def _on_audience(self, msg: ClientMessage) -> None:
        """A booth screen's volunteer says how many people watch it (jansamvad/screens.py)."""
        people = msg.fields["people"]
        self.node.screens.set_people(self.conn, people)
        self.send({"t": "ack", "re": msg.id, "people": people})

    def on_closed(self) -> None:
        if self.worker is not None and self.inbox is not None:
            self.inbox.clear()
