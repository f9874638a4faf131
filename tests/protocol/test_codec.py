"""The codec and framing, tested with byte literals: no sockets, no event loop."""

from __future__ import annotations

import pytest

from jansamvad.protocol.codec import (
    OP_BINARY,
    OP_TEXT,
    PING_FRAME,
    Encoding,
    decode,
    decode_bytes_field,
    encode,
    frame_message,
    server_frame,
)
from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation


def test_decode_msgpack_ping_from_bytes() -> None:
    # fixmap(1) {"t": "ping"}
    assert decode(b"\x81\xa1t\xa4ping", Encoding.MSGPACK) == {"t": "ping"}


def test_decode_json_ping_from_bytes() -> None:
    assert decode(b'{"t":"ping"}', Encoding.JSON) == {"t": "ping"}


def test_encode_msgpack_is_compact_and_stable() -> None:
    assert encode({"t": "pong"}, Encoding.MSGPACK) == b"\x81\xa1t\xa4pong"


def test_encode_json_keeps_devanagari_unescaped() -> None:
    assert encode({"t": "speech", "text": "नमस्ते"}, Encoding.JSON) == '{"t":"speech","text":"नमस्ते"}'.encode()


def test_encode_json_carries_bytes_as_base64() -> None:
    assert encode({"t": "audio", "data": b"\x00\x01\xff"}, Encoding.JSON) == b'{"t":"audio","data":"AAH/"}'


@pytest.mark.parametrize("encoding", list(Encoding))
def test_codec_round_trips_every_value_kind(encoding: Encoding) -> None:
    message = {
        "t": "snapshot",
        "seq": 7,
        "status": "live",
        "speech": [{"t": "speech", "text": "हाँ", "seq": 3}],
        "questions": [],
        "viewers": 1_000_000,
        "ok": True,
    }
    assert decode(encode(message, encoding), encoding) == message


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\xc1", Encoding.MSGPACK),  # 0xc1 is never used in msgpack
        (b"\x81\xa1t", Encoding.MSGPACK),  # truncated map
        (b"\xa4ping", Encoding.MSGPACK),  # a string, not a map
        (b"\x92\x01\x02", Encoding.MSGPACK),  # an array, not a map
        (b"\x81\xa1t\xa4ping\x00", Encoding.MSGPACK),  # trailing data
        (b"\x81\x01\xa4ping", Encoding.MSGPACK),  # integer map key
        (b"\xc7\x01\x05x", Encoding.MSGPACK),  # ext type
        (b'{"t": "ping"', Encoding.JSON),
        (b"[1, 2]", Encoding.JSON),
        (b"\xff\xfe", Encoding.JSON),  # not UTF-8
        (b'{"t":"ask","id":1,"key":"abcd-1234","text":"\\ud800"}', Encoding.JSON),  # an unpaired surrogate
        (b'{"t":"ping","\\udc00x":1}', Encoding.JSON),  # in a key
        (b'{"t":"ping","id":1,"k":["a",{"b":"\\ud83d"}]}', Encoding.JSON),  # deeper, the first half of a pair alone
        (b"[" * 100_000 + b"]" * 100_000, Encoding.JSON),  # deep nesting
        (b"\x91" * 100_000 + b"\xc0", Encoding.MSGPACK),  # deep nesting
    ],
)
def test_decode_rejects_what_is_not_a_message(data: bytes, encoding: Encoding) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode(data, encoding)
    assert info.value.code is ErrorCode.BAD_MESSAGE


def test_decode_json_surrogate_pair_escape_is_one_character() -> None:
    # A client may escape an emoji as its UTF-16 pair (JSON.stringify does not, some libraries do): that is valid.
    assert decode(b'{"t":"react","x":"\\ud83d\\ude00"}', Encoding.JSON) == {"t": "react", "x": "\U0001f600"}


def test_decode_bytes_field_takes_bin_or_base64() -> None:
    assert decode_bytes_field(b"\x01", Encoding.MSGPACK) == b"\x01"
    assert decode_bytes_field("AQ==", Encoding.JSON) == b"\x01"
    assert decode_bytes_field("not base64!", Encoding.JSON) is None
    assert decode_bytes_field("AQ==", Encoding.MSGPACK) is None


def test_server_frame_short_binary() -> None:
    assert server_frame(b"abc", OP_BINARY) == b"\x82\x03abc"


def test_server_frame_16_bit_length() -> None:
    frame = server_frame(b"x" * 300, OP_TEXT)
    assert frame[:4] == b"\x81\x7e\x01\x2c"
    assert len(frame) == 304


def test_server_frame_64_bit_length() -> None:
    frame = server_frame(b"x" * 70_000, OP_BINARY)
    assert frame[:10] == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70"


def test_frame_message_is_encode_then_frame() -> None:
    assert frame_message({"t": "pong"}, Encoding.MSGPACK) == b"\x82\x08\x81\xa1t\xa4pong"
    assert frame_message({"t": "pong"}, Encoding.JSON) == b'\x81\x0c{"t":"pong"}'


def test_ping_frame_is_an_empty_ping() -> None:
    assert PING_FRAME == b"\x89\x00"


def test_encoding_subprotocol_names() -> None:
    assert Encoding.MSGPACK.subprotocol == "jansamvad.v1.msgpack"
    assert Encoding.JSON.subprotocol == "jansamvad.v1.json"
