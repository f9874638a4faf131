"""The subprotocol choice and the hello in the offer (protocol/subprotocols.py), with literals."""

from __future__ import annotations

import pytest

from jansamvad.protocol.codec import Encoding
from jansamvad.protocol.subprotocols import ENCODING_OF, WITH_HELLO, choose, hello_bytes


def test_subprotocols_names() -> None:
    assert WITH_HELLO == {"jansamvad.v1.msgpack+hello": Encoding.MSGPACK, "jansamvad.v1.json+hello": Encoding.JSON}
    assert ENCODING_OF["jansamvad.v1.json"] is Encoding.JSON
    assert ENCODING_OF["jansamvad.v1.msgpack+hello"] is Encoding.MSGPACK


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([], (None, None)),
        (["chat"], (None, None)),
        (["chat", "jansamvad.v1.json"], ("jansamvad.v1.json", None)),
        (
            ["jansamvad.v1.json+hello", "jansamvad.v1.json", "jansamvad.v1.hello.e30"],
            ("jansamvad.v1.json+hello", "e30"),
        ),
        (["jansamvad.v1.hello.e30", "jansamvad.v1.msgpack+hello"], ("jansamvad.v1.msgpack+hello", "e30")),
        (["jansamvad.v1.json+hello", "jansamvad.v1.json"], ("jansamvad.v1.json", None)),  # no entry: the plain name
        (["jansamvad.v1.json+hello"], (None, None)),
        (["jansamvad.v1.json", "jansamvad.v1.json+hello", "jansamvad.v1.hello.e30"], ("jansamvad.v1.json", None)),
        # the first entry is the hello, whatever follows
        (["jansamvad.v1.json+hello", "jansamvad.v1.hello.", "jansamvad.v1.hello.e30"], ("jansamvad.v1.json+hello", "")),
        (["JANSAMVAD.v1.json+hello", "jansamvad.v1.hello.e30"], (None, None)),  # names are case-sensitive
    ],
)
def test_subprotocols_choose(offered: list[str], chosen: tuple[str | None, str | None]) -> None:
    assert choose(offered) == chosen
    assert choose(iter(offered)) == chosen  # any iterable, read once


@pytest.mark.parametrize(
    ("entry", "data"),
    [
        ("", b""),
        ("e30", b"{}"),
        ("eyJ0IjoiaGVsbG8ifQ", b'{"t":"hello"}'),
        ("gaF0pWhlbGxv", b"\x81\xa1t\xa5hello"),
        ("__79_A", b"\xff\xfe\xfd\xfc"),  # the URL-safe alphabet's two letters
        ("a", None),  # one character left over is no byte
        ("e30=", None),  # no padding
        ("e3+0", None),  # the standard alphabet's letters are not base64url
        ("e3/0", None),
        ("e3.0", None),
        ("e3 0", None),
    ],
)
def test_subprotocols_hello_bytes(entry: str, data: bytes | None) -> None:
    assert hello_bytes(entry) == data


@pytest.mark.parametrize("entry", ["e3\u00e90", "e30\n", "\te30", "e3=0", "e30==", "eyJ0Ijoi\r\naGVsbG8ifQ"])
def test_subprotocols_hello_bytes_refuse_strangers(entry: str) -> None:
    assert hello_bytes(entry) is None
