"""One client session: hello, then role-checked messages, each answered with ack or error.

`ROUTES` (at the end) names every client message type with the roles that may send it, its handler and how it is
handled. The handlers (handlers.py) read typed records (protocol/records.py) and answer with typed records.

The session talks to its connection only through `send_frame`, `close`, `fail` and the pause / resume of live frames.
Messages that touch the store or broker are handled in order by a worker task that exists only while there is work.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from jansamvad.auth import ANY_TOWNHALL, Claims, InvalidToken, TokenService
from jansamvad.conn_state import ALIVE, ConnState
from jansamvad.deadline import within
from jansamvad.feeds import MODE_OF, Mode
from jansamvad.handlers import HandlerOwner, MessageHandlers
from jansamvad.join_reads import JoinReads
from jansamvad.models import RestrictionKind, Status, Townhall
from jansamvad.protocol.codec import decode, frame_message
from jansamvad.protocol.codes import CloseCode, ErrorCode
from jansamvad.protocol.errors import ConnectionRefused, ProtocolViolation
from jansamvad.protocol.messages import VERBS, parse_client_message
from jansamvad.protocol.records import (
    Ack,
    Announce,
    Ask,
    Audience,
    Audio,
    Claim,
    ClientMessage,
    End,
    GoLive,
    Hello,
    Leave,
    Moderate,
    Ping,
    PollClose,
    PollCreate,
    PollOpen,
    PollVote,
    Pong,
    React,
    Release,
    Restrict,
    ServerMessage,
    SetMode,
    SlowMode,
    Speech,
    Upvote,
    error_record,
    frame_record,
)
from jansamvad.protocol.roles import ANY_ROLE, STAFF, Role
from jansamvad.screens import ScreenAudiences
from jansamvad.store.base import BadState, NotFound
from jansamvad.token_bucket import TokenBucket

if TYPE_CHECKING:
    from jansamvad.connection import WsConnection

log = logging.getLogger("jansamvad.client")

# Inbound flow control: stop reading a connection whose queued messages pile up; resume when it has caught up.
_INBOX_PAUSE = 32
# Messages a client may send after its hello before the welcome comes (a client that pipelines): kept, and handled
# in order once the join is done. More than this before the welcome is a bad hello.
EARLY_MESSAGES_MAX = 32
_INBOX_RESUME = 8


class ClientOwner(HandlerOwner, Protocol):
    """What a session needs of its node (node.py's `Node`): what its handlers need, and the join; a test may pass a
    fake one with real stores."""

    tokens: TokenService
    join_reads: JoinReads  # the hello's reads, batched with the other joins of the moment (join_reads.py)
    staff_joined: int  # sessions joined through the staff lane (the gateway's count, capped)

    @property
    def clock(self) -> float:
        """Coarse loop time (the keepalive wheel's): cheap to read on every message."""
        ...

    async def join(self, client: Client, last_seq: int | None, townhall: Townhall, last_mseq: int | None) -> None: ...

    def abandon_join(self, client: Client) -> None: ...

    def leave(self, client: Client) -> None: ...

    async def set_mode(self, client: Client, mode: Mode) -> None: ...

    @property
    def screens(self) -> ScreenAudiences: ...


# Errors that say "not now" rather than "your message is wrong": a client that meets them has done nothing to stop
# talking to, so they never count towards max_errors (docs/protocol.md, section 6.1).
_NOT_THE_CLIENTS_FAULT = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.TIMED_OUT, ErrorCode.UNAVAILABLE})


class Client(MessageHandlers):
    __slots__ = (
        "claims",
        "conn",
        "errors",
        "early",
        "inbox",
        "limited_answers",
        "messages",
        "mode",
        "node",
        "reactions",
        "reading_paused",
        "th",
        "worker",
    )

    node: ClientOwner  # more than its handlers need of it (MessageHandlers)
    conn: WsConnection

    def __init__(self, node: ClientOwner, conn: WsConnection) -> None:
        self.node = node
        self.conn = conn
        self.claims: Claims | None = None
        self.th = ""
        self.mode = Mode.CAPTIONS  # the listening mode (feeds.py): hello.mode, then the `mode` message
        self.errors = 0
        self.inbox: deque[ClientMessage] | None = None  # None before the hello, and while joined and idle
        self.early: list[ClientMessage] | None = None  # sent after hello, before the join was done
        self.worker: asyncio.Task[None] | None = None
        self.reading_paused = False
        # Token buckets, made full by the first message that needs one (a full one made earlier would be as full by
        # then): an idle connection has none. Reactions have their own: tapping away leaves the questions' budget.
        self.messages: TokenBucket | None = None
        self.reactions: TokenBucket | None = None
        self.limited_answers = 0  # rate_limited answers since the keepalive wheel last turned (it resets this)

    @property
    def role(self) -> Role | None:
        return self.claims.role if self.claims else None

    # Sending

    def send(self, message: ServerMessage | Mapping[str, Any]) -> None:
        if isinstance(message, ServerMessage):
            self.node.metrics.messages_out[message.type] += 1
            self.conn.send_frame(frame_record(message, self.conn.encoding))
        else:  # the node's maps (welcome, snapshot, replays)
            self.node.metrics.messages_out[message["t"]] += 1
            self.conn.send_frame(frame_message(message, self.conn.encoding))

    def send_error(self, violation: ProtocolViolation) -> None:
        self.send(error_record(violation))
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
            if self.inbox is None and type(msg) is Hello:
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
        claims = self.claims
        assert claims is not None
        route = ROUTES[type(msg)]
        handling = route.handling
        if handling is Handling.JOIN:
            self.send_error(ProtocolViolation(ErrorCode.ALREADY_JOINED, "this session has already joined", re=msg.id))
            return
        if handling is Handling.CONFLATED and claims.role in route.roles:
            # Conflated into one total a second anyway: over its own rate it is dropped without a word.
            route.handler(self, msg)
            return
        retry_ms = self._rate_limit()
        if retry_ms:
            self._answer_rate_limited(msg, retry_ms)
            return
        if claims.role not in route.roles:
            what = VERBS.get(msg.type, f"send {msg.type}")
            self.send_error(ProtocolViolation(ErrorCode.FORBIDDEN, f"a {claims.role} may not {what}", re=msg.id))
            return
        if handling is Handling.INLINE:
            route.handler(self, msg)
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

    def _rate_limit(self) -> int:
        """The message bucket of this connection (its role's rate); 0 when the message may pass, else ms until it
        could."""
        now = self.node.clock_precise()
        bucket = self.messages
        if bucket is None:
            settings = self.node.settings
            if self.claims is not None and self.claims.role in STAFF:
                bucket = TokenBucket(settings.staff_msgs_per_s, settings.staff_msg_burst, now)
            else:
                bucket = TokenBucket(settings.citizen_msgs_per_s, settings.citizen_msg_burst, now)
            self.messages = bucket
        wait_s = bucket.take(now)
        return max(1, int(wait_s * 1000)) if wait_s else 0

    # Messages handled at once (the queued ones are in handlers.py)

    def _on_ping(self, msg: Ping) -> None:
        self.send(Pong(re=msg.id))

    def _on_leave(self, msg: Leave) -> None:
        self.conn.close(CloseCode.NORMAL, "left")

    def _on_react(self, msg: React) -> None:
        assert self.claims is not None
        bucket = self.reactions
        now = self.node.clock_precise()
        if bucket is None:
            settings = self.node.settings
            bucket = self.reactions = TokenBucket(settings.reactions_per_s, settings.reaction_burst, now)
        if bucket.take(now):
            self.node.metrics.rate_limited["reactions"] += 1
            return
        self.node.count_reaction(self.th, msg.kind)
        self.node.tally.count(self.th, "reactions", self.claims.unit)

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
            while inbox and self.conn.state in ALIVE:
                msg = inbox.popleft()
                await self._handle(msg)
                if self.reading_paused and len(inbox) <= _INBOX_RESUME and self.conn.transport is not None:
                    self.reading_paused = False
                    self.conn.transport.resume_reading()
        finally:
            self.worker = None
            if not inbox and self.claims is not None:
                self.inbox = None  # no deque (~0.6 KB) kept while idle: the next message makes one

    async def _handle(self, msg: ClientMessage) -> None:
        try:
            await ROUTES[type(msg)].handler(self, msg)
        except ProtocolViolation as violation:
            violation.re = msg.id
            self.send_error(violation)
        except ConnectionRefused as refused:
            self.conn.close(refused.code, refused.detail)
        except NotFound as exc:
            self.send_error(ProtocolViolation(ErrorCode.NOT_FOUND, str(exc), re=msg.id))
        except BadState as exc:
            self.send_error(ProtocolViolation(ErrorCode.BAD_STATE, str(exc), re=msg.id))
        except (ConnectionError, TimeoutError, OSError) as exc:
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
                self.send(error_record(ProtocolViolation(ErrorCode.INTERNAL, "an unexpected server error", re=msg.id)))

    # Handlers

    async def _hello(self, msg: Hello) -> None:
        """A join always ends, within join_timeout: in `welcome` (and the replay or snapshot), or in a close. A session
        that could not join (its store or broker unreachable or hung) is taken out of its rooms and closed with 1013
        (1011 for a surprise), never left joined-but-silent."""
        try:  # on the worker task that runs this (set): deadline.py is asyncio.timeout at a join's price
            await within(cast(asyncio.Task[None], self.worker), self.node.settings.join_timeout_s, self._join(msg))
            self.conn.joined()  # no longer a join in flight (Gateway.joining)
            early, self.early = self.early, None
            for queued in early or ():
                if self.claims is None or self.conn.state is not ConnState.OPEN:  # closed meanwhile
                    break
                self._dispatch(queued)
        except ConnectionRefused:
            raise
        except Exception as exc:
            self.node.abandon_join(self)
            if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
                log.warning("join failed: %s", type(exc).__name__)
                self.conn.close(CloseCode.TRY_AGAIN_LATER, "could not join now")
            else:
                log.exception("unexpected error while joining")
                self.conn.close(CloseCode.INTERNAL_ERROR)

    async def _join(self, msg: Hello) -> None:
        node = self.node
        try:
            claims = node.tokens.verify(msg.token)
        except InvalidToken as exc:
            raise ConnectionRefused(CloseCode.UNAUTHORIZED, str(exc)) from None
        th = msg.th or claims.th
        if th == ANY_TOWNHALL:
            raise ConnectionRefused(CloseCode.BAD_HELLO, "an admin token needs hello.th")
        if not claims.allows_townhall(th):
            raise ConnectionRefused(CloseCode.FORBIDDEN, "the token is for another town hall")
        if self.conn.staff_lane and claims.role not in STAFF:
            # The staff lane skips the citizens' handshake budget: a citizen may not use it to jump the queue.
            raise ConnectionRefused(CloseCode.FORBIDDEN, "the staff lane is for leaders, moderators and admins")
        reads = node.join_reads  # batched with the other joins of this moment
        townhall = await reads.townhall(th)
        if townhall is None:
            raise ConnectionRefused(CloseCode.TOWNHALL_NOT_FOUND)
        if townhall.status is Status.ENDED and claims.role is not Role.ADMIN:
            raise ConnectionRefused(CloseCode.TOWNHALL_ENDED)
        if claims.role is Role.CITIZEN:
            restriction = await reads.restriction(th, claims.sub)
            if restriction is not None and restriction.kind is RestrictionKind.BAN:
                raise ConnectionRefused(CloseCode.BANNED)
        if self.conn.state is not ConnState.OPEN:
            return  # closed while we looked things up
        if not self.conn.joining(claims.sub if claims.role is Role.CITIZEN else None):  # per-device cap (admission.py)
            raise ConnectionRefused(CloseCode.TRY_AGAIN_LATER, "too many sessions of this device")
        if self.conn.staff_lane:
            if node.staff_joined >= node.settings.max_staff_connections:
                raise ConnectionRefused(CloseCode.TRY_AGAIN_LATER, "the staff lane is full")
            node.staff_joined += 1  # undone in Gateway.connection_lost, which sees the claims set just below
        self.claims, self.th = claims, th
        self.mode = MODE_OF[msg.mode]  # validated against the modes (messages.py): Mode(msg.mode) without an enum call
        if claims.role not in STAFF:  # citizens and booth screens
            self.conn.set_max_message_bytes(node.settings.citizen_max_message_bytes)
        await node.join(self, msg.last_seq, townhall, msg.last_mseq)

    async def _on_mode(self, msg: SetMode) -> None:
        mode = Mode(msg.mode)
        await self.node.set_mode(self, mode)
        if msg.id is not None:
            self.send(Ack(re=msg.id, mode=str(mode)))

    async def _on_audience(self, msg: Audience) -> None:
        """A booth screen's volunteer says how many people watch it (jansamvad/screens.py)."""
        self.node.screens.set_people(self.conn, msg.people)
        self.send(Ack(re=msg.id, people=msg.people))

    def on_closed(self) -> None:
        if self.worker is not None and self.inbox is not None:
            self.inbox.clear()
        self.node.leave(self)


class Handling(enum.Enum):
    """How a session handles a message type."""

    JOIN = "join"  # hello: the first message, handled by the worker; once joined, answered `already_joined`
    INLINE = "inline"  # answered at once, no store round trip (ping, leave)
    CONFLATED = "conflated"  # counted at once within a bucket of its own; over it, dropped without a word (react)
    QUEUED = "queued"  # handled in order by the worker task (store and broker round trips)


@dataclass(frozen=True, slots=True)
class Route:
    roles: frozenset[Role]  # who may send it: docs/protocol.md section 4 (CLIENT_MESSAGES, tested to agree)
    handler: Callable[[Client, Any], Any]  # takes the record; a coroutine function unless INLINE or CONFLATED
    handling: Handling = Handling.QUEUED


_CITIZEN = frozenset({Role.CITIZEN})
_LEADER = frozenset({Role.LEADER, Role.ADMIN})
_MODERATOR = frozenset({Role.MODERATOR, Role.ADMIN})
_DECIDER = frozenset({Role.MODERATOR, Role.LEADER, Role.ADMIN})  # moderate (each action has its own roles too)

# Every client message type: who may send it, its handler, how it is handled. Role checks happen in `_dispatch`,
# before a handler runs; a role not listed gets `forbidden`.
ROUTES: dict[type[ClientMessage], Route] = {
    Hello: Route(ANY_ROLE, Client._hello, Handling.JOIN),
    Ping: Route(ANY_ROLE, Client._on_ping, Handling.INLINE),
    Leave: Route(ANY_ROLE, Client._on_leave, Handling.INLINE),
    React: Route(_CITIZEN, Client._on_react, Handling.CONFLATED),
    Ask: Route(_CITIZEN, Client._on_ask),
    Upvote: Route(_CITIZEN, Client._on_upvote),
    PollVote: Route(_CITIZEN, Client._on_poll_vote),
    Speech: Route(_LEADER, Client._on_speech),
    Audio: Route(_LEADER, Client._on_audio),
    Announce: Route(_LEADER, Client._on_announce),
    GoLive: Route(_LEADER, Client._on_go_live),
    End: Route(_LEADER, Client._on_end),
    PollCreate: Route(_LEADER, Client._on_poll_create),
    PollOpen: Route(_LEADER, Client._on_poll_open),
    PollClose: Route(_LEADER, Client._on_poll_close),
    Moderate: Route(_DECIDER, Client._on_moderate),
    SlowMode: Route(_DECIDER, Client._on_slow_mode),
    Claim: Route(_MODERATOR, Client._on_claim),
    Release: Route(_MODERATOR, Client._on_release),
    Restrict: Route(_MODERATOR, Client._on_restrict),
    SetMode: Route(ANY_ROLE, Client._on_mode),
    Audience: Route(frozenset({Role.SCREEN}), Client._on_audience),
}
