"""Property-based tests of the sans-I/O core: whatever bytes arrive, the decoder and the validator either return a
well-formed message or raise the documented ProtocolViolation, never anything else; encoding round-trips."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings, strategies as st

from jansamvad.protocol.codec import Encoding, decode, encode, frame_message
from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.protocol.messages import CLIENT_MESSAGES, Limits, parse_client_message
from jansamvad.protocol.records import error_record
from jansamvad.protocol.text import clean_text

LIMITS = Limits()
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"t": st.sampled_from(sorted(CLIENT_MESSAGES)) | st.text(max_size=10)},
    optional={
        "id": values,
        "text": values,
        "key": values,
        "qid": values,
        "token": values,
        "kind": values,
        "data": values,
        "action": values,
        "options": values,
        "pid": values,
        "option": values,
        "x": values,
    },
)


def parse(data: bytes, encoding: Encoding) -> Any:
    return parse_client_message(decode(data, encoding), LIMITS, encoding)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(list(Encoding)))
def test_properties_arbitrary_bytes_decode_or_raise_bad_message(data: bytes, encoding: Encoding) -> None:
    try:
        result = decode(data, encoding)
    except ProtocolViolation as violation:
        assert violation.code is ErrorCode.BAD_MESSAGE
    else:
        assert isinstance(result, dict)


@settings(max_examples=400, deadline=None)
@given(message_like, st.sampled_from(list(Encoding)))
def test_properties_validation_accepts_or_names_a_documented_error(message: dict[str, Any], encoding: Encoding) -> None:
    if encoding is Encoding.JSON:
        message = {k: v for k, v in message.items() if not isinstance(v, bytes)}
    try:
        data = encode(message, encoding)
    except (TypeError, ValueError, OverflowError):
        return  # not representable in this encoding (e.g. bytes or huge ints in JSON)
    try:
        parsed = parse(data, encoding)
    except ProtocolViolation as violation:
        assert violation.code in ErrorCode
        assert error_record(violation).type == "error"
    else:
        spec = CLIENT_MESSAGES[parsed.type]
        given_fields = {name for name, value in msgspec.structs.asdict(parsed).items() if value is not None}
        assert given_fields <= spec.field_names()
        for field in spec.fields:
            if field.required and field.name != "id":
                assert getattr(parsed, field.name) is not None


@settings(max_examples=300, deadline=None)
@given(json_values.filter(lambda v: isinstance(v, dict)), st.sampled_from(list(Encoding)))
def test_properties_encoding_round_trips(message: dict[str, Any], encoding: Encoding) -> None:
    try:
        data = encode(message, encoding)
    except (TypeError, ValueError, OverflowError):
        return
    assert decode(data, encoding) == message


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.text(max_size=50), max_size=5))
def test_properties_frames_carry_their_payload_length(message: dict[str, Any]) -> None:
    frame = frame_message(message, Encoding.MSGPACK)
    n = frame[1]
    payload = frame[2 + (2 if n == 126 else 8 if n == 127 else 0) :]
    assert frame[0] == 0x82 and len(payload) == (n if n < 126 else int.from_bytes(frame[2 : 4 if n == 126 else 10]))


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_properties_clean_text_is_idempotent_and_free_of_controls(text: str) -> None:
    once = clean_text(text, multiline=True)
    assert clean_text(once, multiline=True) == once
    assert not any(ch in once for ch in "\u202e\u202d\u2066\u2067\u2068\u2069\x00\x1b\r")
