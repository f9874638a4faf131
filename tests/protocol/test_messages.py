"""Validation of client messages against the protocol tables: pure, no sockets."""

from __future__ import annotations

import re
from typing import Any

import pytest

from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.protocol.messages import CLIENT_MESSAGES, VERBS, Limits, parse_client_message
from jansamvad.protocol.records import Ask, Audio, Hello
from jansamvad.protocol.roles import Role

LIMITS = Limits()


def parse(obj: dict[str, Any], encoding: Encoding = Encoding.MSGPACK) -> Any:
    return parse_client_message(obj, LIMITS, encoding)


def violation(obj: dict[str, Any], encoding: Encoding = Encoding.MSGPACK) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        parse(obj, encoding)
    return info.value


def test_parse_ask_keeps_id_key_and_cleans_text() -> None:
    msg = parse({"t": "ask", "id": 4, "key": "abcd-1234", "text": "  सड़क\u202e कब?  "})
    assert msg == Ask(id=4, key="abcd-1234", text="सड़क कब?")


def test_parse_hello_with_optional_fields() -> None:
    msg = parse({"t": "hello", "token": "x.y.z", "last_seq": 12, "th": "abc"})
    assert msg == Hello(token="x.y.z", last_seq=12, th="abc")


def test_parse_audio_bytes_in_msgpack_and_base64_in_json() -> None:
    assert parse({"t": "audio", "data": b"\x1a\x45"}) == Audio(data=b"\x1a\x45")
    assert parse({"t": "audio", "data": "GkU="}, Encoding.JSON) == Audio(data=b"\x1a\x45")


def test_parse_rejects_missing_type() -> None:
    v = violation({"id": 3})
    assert (v.code, v.re) == (ErrorCode.BAD_MESSAGE, 3)


def test_parse_rejects_unknown_type() -> None:
    assert violation({"t": "shout"}).code is ErrorCode.UNKNOWN_TYPE


def test_parse_rejects_unknown_field_and_names_it() -> None:
    v = violation({"t": "ping", "extra": 1})
    assert (v.code, v.field) == (ErrorCode.INVALID_FIELD, "extra")


def test_parse_rejects_missing_required_field() -> None:
    v = violation({"t": "ask", "id": 1, "key": "abcdefgh"})
    assert (v.code, v.field, v.re) == (ErrorCode.INVALID_FIELD, "text", 1)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"t": "ask", "id": "1", "key": "abcdefgh", "text": "x"}, "id"),
        ({"t": "ask", "id": True, "key": "abcdefgh", "text": "x"}, "id"),  # bool is not an int here
        ({"t": "ask", "id": -1, "key": "abcdefgh", "text": "x"}, "id"),
        ({"t": "ask", "id": 2**60, "key": "abcdefgh", "text": "x"}, "id"),
        ({"t": "ask", "id": 1, "key": "short", "text": "x"}, "key"),
        ({"t": "ask", "id": 1, "key": "has space!", "text": "x"}, "key"),
        ({"t": "ask", "id": 1, "key": "abcdefgh", "text": 5}, "text"),
        ({"t": "ask", "id": 1, "key": "abcdefgh", "text": " \u202e "}, "text"),  # empty once cleaned
        ({"t": "speech", "id": 1, "text": "x", "final": 1}, "final"),
        ({"t": "react", "kind": "bomb"}, "kind"),
        ({"t": "moderate", "id": 1, "qid": "q1", "action": "delete"}, "action"),
        ({"t": "moderate", "id": 1, "qid": "q 1", "action": "approve"}, "qid"),
        ({"t": "audio", "data": "not bytes"}, "data"),
        ({"t": "audio", "data": b"x", "mime": "<script>"}, "mime"),
        ({"t": "hello", "token": "x", "last_seq": "5"}, "last_seq"),
    ],
)
def test_parse_rejects_wrong_types_and_formats(obj: dict[str, Any], field: str) -> None:
    v = violation(obj)
    assert (v.code, v.field) == (ErrorCode.INVALID_FIELD, field)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"t": "ask", "id": 1, "key": "abcdefgh", "text": "प" * 301}, "text"),
        ({"t": "ask", "id": 1, "key": "abcdefgh", "text": "x" * 1_000_000}, "text"),
        ({"t": "speech", "id": 1, "text": "x" * 2001}, "text"),
        ({"t": "announce", "id": 1, "text": "x" * 501}, "text"),
        ({"t": "audio", "data": b"x" * (64 * 1024 + 1)}, "data"),
    ],
)
def test_parse_rejects_too_long(obj: dict[str, Any], field: str) -> None:
    v = violation(obj)
    assert (v.code, v.field) == (ErrorCode.TOO_LONG, field)


def test_parse_limit_is_configurable() -> None:
    with pytest.raises(ProtocolViolation):
        parse_client_message(
            {"t": "ask", "id": 1, "key": "abcdefgh", "text": "x" * 11}, Limits(question_chars=10), Encoding.MSGPACK
        )


def test_every_message_type_has_roles_and_only_staff_speak() -> None:
    for spec in CLIENT_MESSAGES.values():
        assert spec.roles
    assert Role.CITIZEN not in CLIENT_MESSAGES["speech"].roles
    assert Role.CITIZEN not in CLIENT_MESSAGES["moderate"].roles
    assert CLIENT_MESSAGES["ask"].roles == {Role.CITIZEN}


def test_messages_needing_an_ack_require_an_id() -> None:
    for spec in CLIENT_MESSAGES.values():
        if spec.needs_id:
            assert "id" in spec.field_names(), spec.type


def test_messages_every_type_a_role_may_not_send_has_words_for_forbidden() -> None:
    # issue 13: "a citizen may not speech" read as a bug; the forbidden msg says what the message does, in words.
    restricted = {name for name, spec in CLIENT_MESSAGES.items() if spec.roles != frozenset(Role)}
    assert restricted <= set(VERBS)
    assert all(re.fullmatch(r"[a-z ]+", VERBS[name]) for name in restricted)


def test_messages_invalid_format_says_what_was_expected() -> None:
    with pytest.raises(ProtocolViolation) as bad_key:
        parse_client_message({"t": "ask", "id": 1, "key": "short", "text": "x"}, Limits(), Encoding.MSGPACK)
    assert bad_key.value.msg == "key: expected 8 to 64 characters of A-Z a-z 0-9 _ -" and bad_key.value.re == 1


@pytest.mark.parametrize(
    "message", [{"t": "react", "kind": "clap"}, {"t": "ping"}, {"t": "leave"}, {"t": "audio", "data": b"x"}]
)
def test_messages_id_is_accepted_on_fire_and_forget_types(message: dict[str, object]) -> None:
    parsed = parse_client_message({**message, "id": 7}, Limits(), Encoding.MSGPACK)
    assert parsed.id == 7 and parsed.type == message["t"]
    with pytest.raises(ProtocolViolation) as bad:
        parse_client_message({**message, "id": "seven"}, Limits(), Encoding.MSGPACK)
    assert (bad.value.code, bad.value.field) == (ErrorCode.INVALID_FIELD, "id")
