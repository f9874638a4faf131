"""The one registry of error codes and close codes (docs/protocol.md, section 6).

An *error* answers one message and leaves the connection open; a *close code* ends the connection and tells the
client whether to reconnect. The browser client and the docs mirror these tables; a test checks the docs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.StrEnum):
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    TOO_LONG = "too_long"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    BAD_STATE = "bad_state"
    RATE_LIMITED = "rate_limited"
    TIMED_OUT = "timed_out"
    BANNED = "banned"
    CLAIMED = "claimed"
    OWN_QUESTION = "own_question"
    ALREADY_JOINED = "already_joined"
    OUT_OF_SCOPE = "out_of_scope"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_HELLO = 4000
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    TOWNHALL_NOT_FOUND = 4004
    TOWNHALL_ENDED = 4005
    HELLO_TIMEOUT = 4008
    SLOW_CONSUMER = 4009
    TOO_MANY_ERRORS = 4010
    BANNED = 4011


@dataclass(frozen=True, slots=True)
class CloseSpec:
    code: CloseCode
    meaning: str
    reconnect: bool


CLOSE_CODES: dict[CloseCode, CloseSpec] = {
    spec.code: spec
    for spec in (
        CloseSpec(CloseCode.NORMAL, "the client sent leave or the session ended normally", False),
        CloseSpec(CloseCode.PROTOCOL_ERROR, "a WebSocket framing error", False),
        CloseSpec(CloseCode.UNSUPPORTED_DATA, "a frame of the wrong kind for the subprotocol", False),
        CloseSpec(CloseCode.INVALID_DATA, "a text frame that is not valid UTF-8", False),
        CloseSpec(CloseCode.MESSAGE_TOO_BIG, "a frame or message over the size limit", False),
        CloseSpec(CloseCode.INTERNAL_ERROR, "an unexpected server error, or no pong in time", True),
        CloseSpec(CloseCode.SERVICE_RESTART, "the node is shutting down, restarting or draining", True),
        CloseSpec(
            CloseCode.TRY_AGAIN_LATER, "the node cannot serve the session now (store or broker down, device cap)", True
        ),
        CloseSpec(CloseCode.BAD_HELLO, "the first message was not a valid hello", False),
        CloseSpec(CloseCode.UNAUTHORIZED, "the token is missing, forged, malformed or expired", False),
        CloseSpec(CloseCode.FORBIDDEN, "the token is for another town hall or role", False),
        CloseSpec(CloseCode.TOWNHALL_NOT_FOUND, "no such town hall", False),
        CloseSpec(CloseCode.TOWNHALL_ENDED, "the town hall has ended", False),
        CloseSpec(CloseCode.HELLO_TIMEOUT, "no hello in time", True),
        CloseSpec(CloseCode.SLOW_CONSUMER, "the client did not read fast enough", True),
        CloseSpec(CloseCode.TOO_MANY_ERRORS, "too many erroneous messages or pings", False),
        CloseSpec(CloseCode.BANNED, "the citizen is banned from this town hall", False),
    )
}

# Reasons travel in the close frame, which RFC 6455 section 5.5 caps at 125 bytes (2 of them for the code).
MAX_CLOSE_REASON_BYTES = 123


def close_reason(code: CloseCode, detail: str = "") -> str:
    """The close frame's reason: the code's name, then an optional detail, cut to fit the frame."""
    text = code.name.lower() if not detail else f"{code.name.lower()}: {detail}"
    data = text.encode()[:MAX_CLOSE_REASON_BYTES]
    return data.decode(errors="ignore")
