"""Every message type of protocol v1, its fields and the roles that may send it, and their validation.

`CLIENT_MESSAGES` and `SERVER_MESSAGES` are the tables of docs/protocol.md sections 4 and 5 as code; a test walks the
docs against them. `parse_client_message` turns a decoded map into its typed record (records.py) or raises
`ProtocolViolation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from jansamvad.protocol.codec import Encoding, decode_bytes_field
from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.protocol.records import CLIENT_RECORD_BY_TYPE, ClientMessage
from jansamvad.protocol.roles import ANY_ROLE, Role
from jansamvad.protocol.text import clean_text

KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
QID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
UNIT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # a region unit's code (regions.CODE_RE)
REACTIONS = frozenset({"clap", "heart", "thumbs_up", "laugh", "sad"})
MODERATION_ACTIONS = frozenset({"approve", "reject", "answer", "pin", "unpin", "forward"})
RESTRICT_ACTIONS = frozenset({"timeout", "ban", "lift"})
SCREEN_AUDIENCE_MAX = 50_000  # people one booth screen may say watch it (a rally ground's LED wall): `audience.people`
LISTENING_MODES = frozenset({"captions", "audio", "light"})  # jansamvad.feeds.Mode (the sans-I/O package stands alone)
MAX_REQUEST_ID = 2**53 - 1  # the largest integer a JavaScript client can hold exactly
_MIME = re.compile(r"[a-z]+/[A-Za-z0-9.+-]+(;[ A-Za-z0-9=.,\"-]{0,80})?")


# What a field with a pattern must look like, in words for the `invalid_field` error's msg.
_PATTERN_HINTS = {
    KEY_PATTERN: "expected 8 to 64 characters of A-Z a-z 0-9 _ -",
    QID_PATTERN: "expected 1 to 64 characters of A-Z a-z 0-9 _ -",
    UNIT_PATTERN: "expected a region unit's code",
    _MIME: "expected a MIME type such as audio/webm",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of user-supplied fields, in characters (text) or bytes (bytes). Configurable per deployment."""

    question_chars: int = 300
    speech_chars: int = 2000
    announce_chars: int = 500
    reason_chars: int = 200
    token_chars: int = 4096
    audio_bytes: int = 64 * 1024
    poll_question_chars: int = 200
    poll_option_chars: int = 80


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type
    required: bool = True
    limit: str | None = None  # the Limits attribute that caps this field
    multiline: bool = False
    choices: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None
    min_value: int = 0  # ints
    max_value: int = 2**53 - 1  # ints: the largest integer a JavaScript client holds exactly
    min_items: int = 0  # lists of strings
    max_items: int = 0


@dataclass(frozen=True, slots=True)
class MessageSpec:
    type: str
    roles: frozenset[Role]
    fields: tuple[Field, ...] = ()
    needs_id: bool = False
    # The keys a message of this type may carry besides its fields ("t", "id"), and its fields: built once here, not
    # for every message parsed (a frozenset of the names cost ~0.7 µs per message).
    allowed_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_keys", self.field_names() | {"t", "id"})

    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


_ID = Field("id", int)
_PID = Field("pid", str, pattern=QID_PATTERN)
_LEADER = frozenset({Role.LEADER, Role.ADMIN})
_MODERATOR = frozenset({Role.MODERATOR, Role.ADMIN})
_CITIZEN = frozenset({Role.CITIZEN})

CLIENT_MESSAGES: dict[str, MessageSpec] = {
    spec.type: spec
    for spec in (
        MessageSpec(
            "hello",
            ANY_ROLE,
            (
                Field("token", str, limit="token_chars"),
                Field("th", str, required=False, pattern=QID_PATTERN),
                Field("last_seq", int, required=False),
                Field("last_mseq", int, required=False),
                Field("mode", str, required=False, choices=LISTENING_MODES),
            ),
        ),
        MessageSpec("ping", ANY_ROLE),
        MessageSpec(
            "ask",
            _CITIZEN,
            (_ID, Field("key", str, pattern=KEY_PATTERN), Field("text", str, limit="question_chars", multiline=True)),
            needs_id=True,
        ),
        MessageSpec(
            "upvote",
            _CITIZEN,
            (_ID, Field("qid", str, pattern=QID_PATTERN), Field("key", str, required=False, pattern=KEY_PATTERN)),
            needs_id=True,
        ),
        MessageSpec("react", _CITIZEN, (Field("kind", str, choices=REACTIONS),)),
        MessageSpec(
            "speech",
            _LEADER,
            (
                _ID,
                Field("text", str, limit="speech_chars", multiline=True),
                Field("final", bool, required=False),
                Field("key", str, required=False, pattern=KEY_PATTERN),
            ),
            needs_id=True,
        ),
        MessageSpec(
            "audio",
            _LEADER,
            (
                Field("data", bytes, limit="audio_bytes"),
                Field("init", bool, required=False),
                Field("mime", str, required=False, pattern=_MIME),
            ),
        ),
        MessageSpec(
            "announce",
            _LEADER,
            (
                _ID,
                Field("text", str, limit="announce_chars", multiline=True),
                Field("key", str, required=False, pattern=KEY_PATTERN),
                Field("to", str, required=False, pattern=UNIT_PATTERN),  # a region unit: only its subtree hears it
            ),
            needs_id=True,
        ),
        MessageSpec("go_live", _LEADER, (_ID,), needs_id=True),
        MessageSpec("end", _LEADER, (_ID,), needs_id=True),
        MessageSpec(
            "moderate",
            frozenset({Role.MODERATOR, Role.LEADER, Role.ADMIN}),
            (
                _ID,
                Field("qid", str, pattern=QID_PATTERN),
                Field("action", str, choices=MODERATION_ACTIONS),
                Field("reason", str, required=False, limit="reason_chars"),
            ),
            needs_id=True,
        ),
        MessageSpec(
            "poll_vote",
            _CITIZEN,
            (_ID, _PID, Field("option", int, max_value=5), Field("key", str, required=False, pattern=KEY_PATTERN)),
            needs_id=True,
        ),
        MessageSpec(
            "poll_create",
            _LEADER,
            (
                _ID,
                Field("question", str, limit="poll_question_chars"),
                Field("options", list, limit="poll_option_chars", min_items=2, max_items=6),
            ),
            needs_id=True,
        ),
        MessageSpec("poll_open", _LEADER, (_ID, _PID), needs_id=True),
        MessageSpec("poll_close", _LEADER, (_ID, _PID), needs_id=True),
        MessageSpec("claim", _MODERATOR, (_ID, Field("qid", str, pattern=QID_PATTERN)), needs_id=True),
        MessageSpec("release", _MODERATOR, (_ID, Field("qid", str, pattern=QID_PATTERN)), needs_id=True),
        MessageSpec(
            "restrict",
            _MODERATOR,
            (
                _ID,
                Field("sub", str, pattern=QID_PATTERN),
                Field("action", str, choices=RESTRICT_ACTIONS),
                Field("seconds", int, required=False, min_value=10, max_value=86_400),
                Field("scope", str, required=False, choices=frozenset({"townhall", "global"})),
                Field("reason", str, required=False, limit="reason_chars"),
            ),
            needs_id=True,
        ),
        MessageSpec(
            "slow_mode",
            frozenset({Role.LEADER, Role.MODERATOR, Role.ADMIN}),
            (_ID, Field("seconds", int, max_value=3600)),
            needs_id=True,
        ),
        MessageSpec("mode", ANY_ROLE, (Field("mode", str, choices=LISTENING_MODES),)),
        MessageSpec("leave", ANY_ROLE),
        MessageSpec(
            "audience",
            frozenset({Role.SCREEN}),
            (_ID, Field("people", int, max_value=SCREEN_AUDIENCE_MAX)),
            needs_id=True,
        ),
    )
}

# Which role may take which moderation action (docs/protocol.md, section 4).
ACTION_ROLES: dict[str, frozenset[Role]] = {
    "approve": frozenset({Role.MODERATOR, Role.ADMIN}),
    "reject": frozenset({Role.MODERATOR, Role.ADMIN}),
    "answer": frozenset({Role.LEADER, Role.MODERATOR, Role.ADMIN}),
    "pin": frozenset({Role.LEADER, Role.MODERATOR, Role.ADMIN}),
    "unpin": frozenset({Role.LEADER, Role.MODERATOR, Role.ADMIN}),
    "forward": frozenset({Role.MODERATOR}),  # a scoped moderator's, up to the parent level (moderation/scope.py)
}

# What each message type does, in words for the `forbidden` error's msg ("a citizen may not speak").
VERBS: dict[str, str] = {
    "ask": "ask questions",
    "upvote": "vote for questions",
    "react": "react",
    "poll_vote": "vote in polls",
    "speech": "speak",
    "audio": "send audio",
    "announce": "make announcements",
    "go_live": "start the town hall",
    "end": "end the town hall",
    "moderate": "moderate questions",
    "poll_create": "create polls",
    "poll_open": "open polls",
    "poll_close": "close polls",
    "claim": "claim questions",
    "release": "release questions",
    "restrict": "restrict citizens",
    "slow_mode": "set slow mode",
    "audience": "say how many people watch a screen",
}

# Node -> client messages and the fields they may carry (besides the envelope keys t, re and seq).
SERVER_MESSAGES: dict[str, frozenset[str]] = {
    "welcome": frozenset({"role", "sub", "name", "th", "title", "status", "seq", "recovered", "mseq"}),
    "snapshot": frozenset(
        {"seq", "status", "speech", "questions", "polls", "slow_mode", "viewers", "staff", "reactions", "queue", "mseq"}
    ),
    "ack": frozenset({"key", "qid", "votes", "seq", "state", "dup", "pid", "option", "sub", "until", "mode", "people"}),
    "error": frozenset({"code", "msg", "field", "retry_ms"}),
    "pong": frozenset(),
    "speech": frozenset({"text", "final", "ts"}),
    "announce": frozenset({"text", "ts", "to", "to_name"}),
    "skip": frozenset({"mseq"}),
    "status": frozenset({"status", "ts"}),
    "question": frozenset({"q", "ts"}),
    "poll": frozenset({"p", "ts"}),
    "settings": frozenset({"slow_mode", "ts"}),
    "viewers": frozenset({"n", "staff"}),
    "votes": frozenset({"v", "g"}),
    "reactions": frozenset({"c"}),
    "poll_counts": frozenset({"pid", "c"}),
    "audio": frozenset({"data", "n", "init", "mime"}),
    "queue_add": frozenset({"q", "unit", "mseq"}),
    "queue_update": frozenset({"qid", "state", "pinned", "by", "reason", "unit", "fwd", "mseq"}),
    "claim_update": frozenset({"qid", "by", "until", "unit", "mseq"}),
    "reconnect": frozenset({"after_ms"}),
    "digest": frozenset({"upto", "live_since", "speech", "announce", "answered", "answered_total", "polls"}),
}

# Events of the town hall's stream: they carry `seq` and are replayed on resume.
STREAM_EVENTS = frozenset({"speech", "announce", "status", "question", "poll", "settings", "skip"})


def _check(spec_field: Field, value: Any, limits: Limits, encoding: Encoding, re_id: int | None) -> Any:
    name = spec_field.name

    def invalid(why: str) -> ProtocolViolation:
        return ProtocolViolation(ErrorCode.INVALID_FIELD, f"{name}: {why}", field=name, re=re_id)

    if spec_field.kind is bytes:
        data = decode_bytes_field(value, encoding)
        if data is None:
            raise invalid("expected bytes" if encoding is Encoding.MSGPACK else "expected a base64 string")
        if spec_field.limit is not None and len(data) > getattr(limits, spec_field.limit):
            raise ProtocolViolation(ErrorCode.TOO_LONG, f"{name}: too long", field=name, re=re_id)
        return data
    # bool is a subclass of int in Python: an int field must not accept true/false, and the reverse.
    if spec_field.kind is int and (type(value) is not int):
        raise invalid("expected an integer")
    if spec_field.kind is bool and type(value) is not bool:
        raise invalid("expected true or false")
    if spec_field.kind is str:
        if type(value) is not str:
            raise invalid("expected a string")
        if spec_field.choices is not None:
            if value not in spec_field.choices:
                raise invalid("expected one of " + ", ".join(sorted(spec_field.choices)))
            return value
        if spec_field.pattern is not None:
            if spec_field.pattern.fullmatch(value) is None:
                raise invalid(_PATTERN_HINTS.get(spec_field.pattern, "has a wrong format"))
            return value
        if spec_field.limit is not None:
            limit = getattr(limits, spec_field.limit)
            # Cheap guard first: a huge string is refused before it is normalised.
            if len(value) > 4 * limit:
                raise ProtocolViolation(ErrorCode.TOO_LONG, f"{name}: longer than {limit}", field=name, re=re_id)
            if name != "token":
                value = clean_text(value, multiline=spec_field.multiline)
            if len(value) > limit:
                raise ProtocolViolation(ErrorCode.TOO_LONG, f"{name}: longer than {limit}", field=name, re=re_id)
            if not value:
                raise invalid("must not be empty")
        return value
    if spec_field.kind is list:
        if type(value) is not list or not all(type(item) is str for item in value):
            raise invalid("expected a list of strings")
        if not spec_field.min_items <= len(value) <= spec_field.max_items:
            raise invalid(f"expected {spec_field.min_items} to {spec_field.max_items} items")
        limit = getattr(limits, spec_field.limit) if spec_field.limit else 0
        items = [clean_text(item) for item in value if len(item) <= 4 * limit]
        if len(items) != len(value) or any(len(item) > limit for item in items):
            raise ProtocolViolation(ErrorCode.TOO_LONG, f"{name}: an item is longer than {limit}", field=name, re=re_id)
        if not all(items):
            raise invalid("items must not be empty")
        return items
    if spec_field.kind is int and not spec_field.min_value <= value <= spec_field.max_value:
        raise invalid(f"out of range {spec_field.min_value}..{spec_field.max_value}")
    return value


def parse_client_message(obj: dict[str, Any], limits: Limits, encoding: Encoding) -> ClientMessage:
    """Validate a decoded client map against its spec. Raises ProtocolViolation with the documented code."""
    raw_id = obj.get("id")
    re_id = raw_id if type(raw_id) is int and 0 <= raw_id <= MAX_REQUEST_ID else None
    t = obj.get("t")
    if not isinstance(t, str):
        raise ProtocolViolation(ErrorCode.BAD_MESSAGE, "a message needs a string field t", field="t", re=re_id)
    spec = CLIENT_MESSAGES.get(t)
    if spec is None:
        raise ProtocolViolation(ErrorCode.UNKNOWN_TYPE, f"unknown message type {t[:32]!r}", re=re_id)
    allowed = spec.allowed_keys
    for key in obj:
        if key not in allowed:
            shown = key if isinstance(key, str) else repr(key)
            raise ProtocolViolation(ErrorCode.INVALID_FIELD, f"{shown[:32]}: unknown field", field=shown[:32], re=re_id)
    fields: dict[str, Any] = {}
    for spec_field in spec.fields:
        if spec_field.name not in obj or obj[spec_field.name] is None:
            if spec_field.required:
                raise ProtocolViolation(
                    ErrorCode.INVALID_FIELD, f"{spec_field.name}: missing", field=spec_field.name, re=re_id
                )
            continue
        fields[spec_field.name] = _check(spec_field, obj[spec_field.name], limits, encoding, re_id)
    msg_id = fields.pop("id", None)
    if msg_id is None and "id" in obj and obj["id"] is not None:
        # Any message may carry an id (a client may tag all it sends); on fire-and-forget types it is only echoed.
        msg_id = _check(_ID, obj["id"], limits, encoding, re_id)
    return CLIENT_RECORD_BY_TYPE[t](id=msg_id, **fields)
