"""Encoding of messages (msgpack or JSON) and of the server's WebSocket frames.

Server frames are built here, once per message per wire format, so the fan-out can write the same bytes to every
listener (RFC 6455 section 5.2: a server frame is never masked, so its bytes do not depend on the receiver).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import struct
from collections.abc import Mapping
from typing import Any

import msgpack
import msgspec

from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation


class Encoding(enum.Enum):
    MSGPACK = "msgpack"
    JSON = "json"

    # A plain Enum's members compare by identity: hashed by identity too, in C, instead of Enum's Python-level hash of
    # the name (~0.2 µs for each dict or set lookup; a join makes several).
    __hash__ = object.__hash__

    @property
    def subprotocol(self) -> str:
        return f"jansamvad.v1.{self.value}"

    @property
    def opcode(self) -> int:
        return OP_BINARY if self is Encoding.MSGPACK else OP_TEXT


SUBPROTOCOLS: dict[str, Encoding] = {enc.subprotocol: enc for enc in Encoding}

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_PING = 0x9


# Nesting deeper than this many brackets could meet the recursion limit, where json and msgspec stop at slightly
# different depths (both at ~1,000): such a text goes to json alone, so its answer stays json's.
_MSGSPEC_BRACKETS_MAX = 500
_msgspec_json_decode = msgspec.json.Decoder().decode
_REFUSED = object()


def _msgspec_json(data: bytes) -> Any:
    """msgspec's reading of a JSON text, or _REFUSED (it refuses more than json.loads: see loads_json)."""
    if data.count(b"[") + data.count(b"{") >= _MSGSPEC_BRACKETS_MAX:
        return _REFUSED
    try:
        return _msgspec_json_decode(data)
    except msgspec.DecodeError:
        return _REFUSED


def loads_json(data: bytes) -> Any:
    """`json.loads(data)`'s answer at msgspec's speed (~1 µs instead of ~3.5 µs for a hello or a JWT payload).

    msgspec's JSON decoder takes a subset of what json.loads takes (no NaN or Infinity, no lone surrogate escapes or
    UTF-8-encoded surrogates, no BOM, no other UTF than 8, numbers out of float range) and gives the same values for
    that subset (tests/protocol/test_codec_loads_json.py checks both on mutated texts). Whatever msgspec refuses is
    handed to json.loads, which accepts it or raises its own error, exactly as before."""
    obj = _msgspec_json(data)
    return json.loads(data) if obj is _REFUSED else obj


def decode(data: bytes, encoding: Encoding) -> dict[str, Any]:
    """Bytes of one client frame to a message map; `bad_message` if it is not one."""
    try:
        if encoding is Encoding.MSGPACK:
            # No container caps of its own: msgpack's defaults bound a map or array by the frame's length (every entry
            # takes at least one byte), and the frame is bounded by max_message_bytes, as a JSON frame is. A cap here
            # would fail the whole frame before its `id` is known, so the client could not tell which request it was;
            # over-long maps and lists are refused by validation instead, with `re`, as in JSON. msgpack's C unpacker
            # has a fixed nesting limit (StackError), as json has the recursion limit.
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0)
        else:
            obj = _decode_json_text(data)
    except (RecursionError, msgpack.StackError):
        raise ProtocolViolation(ErrorCode.BAD_MESSAGE, "the message is nested too deeply") from None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError):
        what = "msgpack" if encoding is Encoding.MSGPACK else "JSON"
        raise ProtocolViolation(ErrorCode.BAD_MESSAGE, f"the frame is not valid {what}") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation(ErrorCode.BAD_MESSAGE, "a message must be a map")
    return obj


def _decode_json_text(data: bytes) -> Any:
    """A text frame's JSON (the connection checked that it is UTF-8). msgspec first (loads_json): what it accepts has
    no unpaired surrogate. Anything else gets json.loads, whose answer it always was."""
    obj = _msgspec_json(data)
    if obj is not _REFUSED:
        return obj
    text = data.decode("utf-8")
    obj = json.loads(text)
    # json.loads turns an escape such as "\ud800" into an unpaired surrogate, which no UTF-8 encoder takes: kept, it
    # fails every later encoding of the message (an ask was answered `internal`; the answer to a bad key could not be
    # sent). Only a frame with such an escape pays for this check.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(obj):
        raise ProtocolViolation(ErrorCode.BAD_MESSAGE, "a string has an unpaired UTF-16 surrogate")
    return obj


def _has_lone_surrogate(obj: object) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_default(obj: object) -> object:
    # JSON has no bytes: the JSON subprotocol carries bytes fields (audio chunks) as base64 strings.
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode(message: Mapping[str, Any], encoding: Encoding) -> bytes:
    """A message map to the payload of one frame."""
    if encoding is Encoding.MSGPACK:
        return msgpack.packb(message, use_bin_type=True)
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode("utf-8")


def decode_bytes_field(value: object, encoding: Encoding) -> bytes | None:
    """A bytes field as received: msgpack bin, or a base64 string in JSON. None when it is neither."""
    if encoding is Encoding.MSGPACK:
        return value if isinstance(value, bytes) else None
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def server_frame(payload: bytes, opcode: int) -> bytes:
    """An unmasked, unfragmented server frame (RFC 6455 section 5.2) carrying `payload`."""
    n = len(payload)
    first = 0x80 | opcode  # FIN set, no RSV bits: never compressed, valid even if permessage-deflate was negotiated
    if n < 126:
        header = bytes((first, n))
    elif n < 0x10000:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def frame_message(message: Mapping[str, Any], encoding: Encoding) -> bytes:
    """Encode and frame in one step: the bytes to write to a transport."""
    return server_frame(encode(message, encoding), encoding.opcode)


# One keepalive ping for every connection: the same pre-framed bytes, written by the shared keepalive wheel.
PING_FRAME = server_frame(b"", OP_PING)
