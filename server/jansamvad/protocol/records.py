"""Typed records of protocol v1 messages: what a handler reads (client -> node) and what a session sends back.

Each record is a msgspec `Struct` tagged with its wire type in the field `t`, so a record encodes to exactly the map
docs/protocol.md describes (msgpack or JSON, defaults left out). Inbound records are built by `parse_client_message`
(messages.py) after validation, never decoded straight from the wire: the validation there gives the documented error
codes. Outbound records are encoded per session (answers) or turned into a map once for the broker (events), so the
fan-out still encodes each broadcast once per node and writes pre-framed bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from jansamvad.protocol.codec import Encoding, server_frame
from jansamvad.protocol.errors import ProtocolViolation

# Client -> node


class ClientMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="t"):
    """A validated client message. `id` is the client's request id, echoed as `re` in the answer."""

    type: ClassVar[str]  # the wire type, the tag (set for every record class below)
    id: int | None = None


class Hello(ClientMessage, tag="hello"):
    token: str
    th: str = ""  # empty: the town hall of the token
    last_seq: int | None = None
    last_mseq: int | None = None
    mode: str = "captions"  # the listening mode (jansamvad.feeds.Mode): captions, audio or light


class Ping(ClientMessage, tag="ping"):
    pass


class Leave(ClientMessage, tag="leave"):
    pass


class Ask(ClientMessage, tag="ask"):
    key: str
    text: str


class Upvote(ClientMessage, tag="upvote"):
    qid: str
    key: str = ""


class React(ClientMessage, tag="react"):
    kind: str


class Speech(ClientMessage, tag="speech"):
    text: str
    final: bool = True
    key: str = ""


class Audio(ClientMessage, tag="audio"):
    data: bytes
    init: bool = False
    mime: str = ""


class Announce(ClientMessage, tag="announce"):
    text: str
    key: str = ""
    to: str = ""  # a region unit: only its subtree hears it (targeting.py); "" everyone


class GoLive(ClientMessage, tag="go_live"):
    pass


class End(ClientMessage, tag="end"):
    pass


class Moderate(ClientMessage, tag="moderate"):
    qid: str
    action: str  # also `forward`: a scoped moderator's, up one level (moderation/scope.py)
    reason: str = ""


class PollVote(ClientMessage, tag="poll_vote"):
    pid: str
    option: int
    key: str = ""


class PollCreate(ClientMessage, tag="poll_create"):
    question: str
    options: list[str]


class PollOpen(ClientMessage, tag="poll_open"):
    pid: str


class PollClose(ClientMessage, tag="poll_close"):
    pid: str


class Claim(ClientMessage, tag="claim"):
    qid: str


class Release(ClientMessage, tag="release"):
    qid: str


class Restrict(ClientMessage, tag="restrict"):
    sub: str
    action: str
    seconds: int | None = None  # None: the action's default (600 s for a timeout, for ever for a ban)
    scope: str = "townhall"
    reason: str = ""


class SlowMode(ClientMessage, tag="slow_mode"):
    seconds: int


class SetMode(ClientMessage, tag="mode"):
    """Another listening mode for a joined session (the data ladder)."""

    mode: str


class Audience(ClientMessage, tag="audience"):
    """A booth screen's volunteer: how many people watch it."""

    people: int


CLIENT_RECORDS: tuple[type[ClientMessage], ...] = (
    Hello,
    Ping,
    Ask,
    Upvote,
    React,
    Speech,
    Audio,
    Announce,
    GoLive,
    End,
    Moderate,
    PollVote,
    PollCreate,
    PollOpen,
    PollClose,
    Claim,
    Release,
    Restrict,
    SlowMode,
    SetMode,
    Leave,
    Audience,
)


# Node -> client. Field order is the order on the wire; `None` fields are left out (omit_defaults), as the maps were.


class ServerMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="t"):
    type: ClassVar[str]


class Ack(ServerMessage, tag="ack"):
    """The answer to a request with an id; which of the optional fields it carries depends on the request."""

    re: int | None = None
    key: str | None = None
    qid: str | None = None
    votes: int | None = None
    pid: str | None = None
    option: int | None = None
    sub: str | None = None
    state: str | None = None
    seq: int | None = None
    until: int | None = None
    mode: str | None = None
    people: int | None = None
    dup: bool = False  # sent only when true: a retry of a request that was already done


class Error(ServerMessage, tag="error"):
    code: str
    msg: str
    re: int | None = None
    field: str | None = None
    retry_ms: int | None = None


class Pong(ServerMessage, tag="pong"):
    re: int | None = None


# Events for the town hall's stream and the moderators' channel: the node adds seq / mseq and ts when it publishes.


class SpeechEvent(ServerMessage, tag="speech"):
    text: str
    final: bool


class AnnounceEvent(ServerMessage, tag="announce"):
    text: str
    to: str = ""  # targeted (targeting.py): the unit's code and Hindi name; left out for everyone's
    to_name: str = ""


class StatusEvent(ServerMessage, tag="status"):
    status: str


class PollEvent(ServerMessage, tag="poll"):
    p: dict[str, Any]


class SettingsEvent(ServerMessage, tag="settings"):
    slow_mode: int


class QuestionEvent(ServerMessage, tag="question"):
    q: dict[str, Any]


class ClaimUpdate(ServerMessage, tag="claim_update"):
    qid: str
    by: str | None  # None (null on the wire): released
    until: int
    unit: str = ""  # the question's unit: scoped moderators outside it get `skip` (moderation/scope.py)


class QueueUpdate(ServerMessage, tag="queue_update"):
    qid: str
    state: str
    pinned: bool
    by: str  # a moderator's sub, or "auto" (auto-moderation rejected it)
    reason: str
    unit: str = ""  # the question's unit: scoped moderators outside it get `skip` (moderation/scope.py)
    fwd: str = ""  # forwarded up to this unit ("*": the town-hall-wide queue)


class QueueAdd(ServerMessage, tag="queue_add"):
    q: dict[str, Any]  # the question as moderators see it (Question.for_moderators)
    unit: str = ""  # the question's unit: scoped moderators outside it get `skip` (moderation/scope.py)


# The join's answers (joining.py): welcome, then a snapshot unless the session resumed.


class Welcome(ServerMessage, tag="welcome"):
    role: str
    sub: str
    name: str
    th: str
    title: str
    status: str
    seq: int  # the public stream's head
    recovered: bool  # True: the replay after last_seq follows, no snapshot
    mseq: int | None = None  # the moderation stream's head, for moderators and admins


class Snapshot(ServerMessage, tag="snapshot"):
    seq: int
    status: str
    polls: list[dict[str, Any]]
    slow_mode: int
    reactions: dict[str, int]
    speech: list[dict[str, Any]]  # the last speech and announce events, each with its seq
    questions: list[dict[str, Any]]
    viewers: int
    staff: int
    queue: list[dict[str, Any]] | None = None  # moderators and admins: the pending questions
    mseq: int | None = None  # moderators and admins: the moderation stream's head


# Aggregates, conflated once per tick per room, and what a node says before it goes.


class Viewers(ServerMessage, tag="viewers"):
    n: int  # citizens
    staff: int


class Votes(ServerMessage, tag="votes"):
    v: dict[str, int]  # qid -> votes, the top public questions
    g: dict[str, int]  # group -> its questions' summed votes


class Reactions(ServerMessage, tag="reactions"):
    c: dict[str, int]  # kind -> total


class PollCounts(ServerMessage, tag="poll_counts"):
    pid: str
    c: list[int]  # votes per option


class Reconnect(ServerMessage, tag="reconnect"):
    after_ms: int


SERVER_RECORDS: tuple[type[ServerMessage], ...] = (
    Ack,
    Error,
    Pong,
    SpeechEvent,
    AnnounceEvent,
    StatusEvent,
    PollEvent,
    SettingsEvent,
    QuestionEvent,
    ClaimUpdate,
    QueueUpdate,
    QueueAdd,
    Welcome,
    Snapshot,
    Viewers,
    Votes,
    Reactions,
    PollCounts,
    Reconnect,
)

for _client_record in CLIENT_RECORDS:
    _client_record.type = str(_client_record.__struct_config__.tag)
for _server_record in SERVER_RECORDS:
    _server_record.type = str(_server_record.__struct_config__.tag)

# The wire type of every client message -> its record class.
CLIENT_RECORD_BY_TYPE: dict[str, type[ClientMessage]] = {record.type: record for record in CLIENT_RECORDS}

_ENCODERS: dict[Encoding, Callable[[Any], bytes]] = {
    Encoding.MSGPACK: msgspec.msgpack.Encoder().encode,
    # JSON has no bytes: msgspec writes bytes fields as base64 strings, as the JSON subprotocol carries them.
    Encoding.JSON: msgspec.json.Encoder().encode,
}


def encode_record(record: ClientMessage | ServerMessage, encoding: Encoding) -> bytes:
    """A record to the payload of one frame, the same bytes as its map through `codec.encode`."""
    return _ENCODERS[encoding](record)


def encoded_part(value: Any, encoding: Encoding) -> msgspec.Raw:
    """A field's value encoded once, for records that many sessions send with it (the snapshot's shared lists): a
    record holding the Raw encodes to the same bytes as one holding the value, without encoding it again."""
    return msgspec.Raw(_ENCODERS[encoding](value))


def frame_record(record: ServerMessage, encoding: Encoding) -> bytes:
    """Encode and frame one answer: the bytes to write to a transport."""
    return server_frame(_ENCODERS[encoding](record), encoding.opcode)


def to_map(record: ServerMessage) -> dict[str, Any]:
    """A record as the map the broker and the fan-out carry (`t` first, defaults left out, bytes kept as bytes)."""
    out: dict[str, Any] = msgspec.to_builtins(record, builtin_types=(bytes, bytearray, memoryview))
    return out


def error_record(violation: ProtocolViolation) -> Error:
    """The `error` answer to a violation (docs/protocol.md, section 6)."""
    return Error(
        code=str(violation.code), msg=violation.msg, re=violation.re, field=violation.field, retry_ms=violation.retry_ms
    )
