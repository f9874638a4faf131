"""`loads_json` and the JSON frames' decode read with msgspec first (codec.py): they must give json.loads's answer
for every text, the value where it accepts and an error where it refuses, with json's own error messages kept for
what msgspec refuses (NaN, lone surrogates, BOM, deep nesting)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from jansamvad.protocol.codec import Encoding, decode, loads_json
from jansamvad.protocol.errors import ProtocolViolation

BASE = json.dumps(
    {"sub": "c-j-1", "role": "citizen", "th": "abc", "exp": 1733003600, "aud": ["jansamvad"], "name": "नागरिक"},
    ensure_ascii=False,
).encode()
ALPHABET = list(b'{}[]",:0123456789.eE+-\\u tfnrlaN\x00\x7f\xff\xc3\xa9\xed\xa0\x80')


def _json_answer(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", json.loads(data)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc).__name__


def _fast_answer(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", loads_json(data)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc).__name__


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":NaN}',
        b'{"a":Infinity,"b":-Infinity}',
        b'{"a":1e400}',
        b'{"a":"\\ud800"}',
        b'{"a":"\\uD83D\\uDE00"}',
        b'{"a":"\xed\xa0\x80"}',
        b'\xef\xbb\xbf{"a":1}',
        '{"a":1}'.encode("utf-16"),
        b'{"a":1,"a":2}',
        b'{"a":18446744073709551616,"b":-9223372036854775809}',
        b' \t{"a":[1,{"b":null}]}\r\n',
        b'{"a":1}x',
        b"[" * 2000 + b"]" * 2000,
        b'{"a":' * 995 + b"1" + b"}" * 995,
    ],
)
def test_codec_loads_json_gives_json_loads_answer_where_msgspec_differs(text: bytes) -> None:
    assert repr(_fast_answer(text)) == repr(_json_answer(text))


@settings(max_examples=2000, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(ALPHABET), st.integers(0, 2)), max_size=4))
def test_codec_loads_json_agrees_with_json_loads_on_mutated_texts(edits: list[tuple[int, int, int]]) -> None:
    data = bytearray(BASE)
    for at, byte, op in edits:
        at %= len(data) + 1
        if op == 0:
            data[at : at + 1] = bytes((byte,))
        elif op == 1:
            del data[at : at + 1]
        else:
            data.insert(at, byte)
    text = bytes(data)
    assert repr(_fast_answer(text)) == repr(_json_answer(text)), text


def test_codec_decode_json_frame_still_refuses_an_unpaired_surrogate_and_deep_nesting() -> None:
    with pytest.raises(ProtocolViolation, match="unpaired UTF-16 surrogate"):
        decode(b'{"t":"ping","x":"\\udc00"}', Encoding.JSON)
    with pytest.raises(ProtocolViolation, match="nested too deeply"):
        decode(b'{"t":"ping","x":' + b"[" * 5000 + b"]" * 5000 + b"}", Encoding.JSON)
    assert decode(b'{"t":"ping","x":"\\uD83D\\uDE00"}', Encoding.JSON) == {"t": "ping", "x": "\U0001f600"}
