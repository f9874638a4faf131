"""The edge's head shapes (edge.py, `HeadShapes`): a head that differs from one already taken only in its key gets
parse_upgrade's own answer without the parse, and any other difference is parsed afresh."""

from __future__ import annotations

import base64
import os
import random
from typing import Any

import pytest

from jansamvad import edge
from jansamvad.edge import HeadShapes, parse_upgrade, switching_protocols
from tests.test_edge import CASES, GOOD, head

pytestmark = pytest.mark.timeout(10)

KEY = GOOD["Sec-WebSocket-Key"].encode()


def new_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def answer(raw: bytes, origins: list[Any] | None) -> bytes | None:
    """What the edge writes for a head, without the Date line: the 101 for an upgrade it takes, else None."""
    found = parse_upgrade(raw, origins)
    return None if found is None else switching_protocols(found).replace(edge._http_date(), b"")


def shapes_answer(shapes: HeadShapes, raw: bytes, origins: list[Any] | None) -> bytes | None:
    found = shapes.parse(raw, origins)
    return None if found is None else switching_protocols(found).replace(edge._http_date(), b"")


@pytest.mark.parametrize("origins", [None, ["https://jansamvad.example.org"]])
def test_head_shapes_answer_every_case_as_parse_upgrade_does_cold_and_warm(origins: list[Any] | None) -> None:
    """Against every case of test_edge.py (which holds parse_upgrade to websockets' answers)."""
    shapes = HeadShapes()
    for _ in range(2):  # cold, then every taken shape is known
        for raw in CASES:
            assert shapes_answer(shapes, raw, origins) == answer(raw, origins), raw
            again = raw.replace(KEY, new_key())  # the same shape with another key
            assert shapes_answer(shapes, again, origins) == answer(again, origins), again


def test_head_shapes_give_each_key_its_own_accept() -> None:
    shapes = HeadShapes()
    first, second = head(), head(Sec_WebSocket_Key=new_key().decode())
    one, two = shapes.parse(first, None), shapes.parse(second, None)
    assert one is not None and two is not None and one.accept != two.accept
    assert two.accept == edge.accept_key(second.split(b"Sec-WebSocket-Key: ")[1][:24])


ALLOWED = "https://jansamvad.example.org"


@pytest.mark.parametrize(
    "change",
    [
        {"Sec_WebSocket_Version": "8"},
        {"Upgrade": "websocket, h2c"},
        {"Connection": "keep-alive"},
        {"Sec_WebSocket_Key": base64.b64encode(os.urandom(15)).decode() + "A"},  # not 16 bytes
        {"Sec_WebSocket_Key": new_key().decode() + " x"},  # more after the key in its value
        {"Origin": "https://evil.example"},
        {"X_Control": "a\x01b"},
    ],
)
def test_head_shapes_parse_a_head_that_differs_elsewhere_afresh(change: dict[str, str]) -> None:
    """A known good shape never answers for a head that differs in anything but the key: each of these is refused.
    (The node's origins are one list for its life: the shapes are kept for that list.)"""
    shapes, origins = HeadShapes(), [ALLOWED]
    assert shapes.parse(head(Origin=ALLOWED), origins) is not None
    assert shapes.parse(head(Origin=ALLOWED, Sec_WebSocket_Key=new_key().decode()), origins) is not None  # a hit
    assert shapes.parse(head(**{"Origin": ALLOWED, **change}), origins) is None
    for raw in (
        head("/ws?lane=vip", Origin=ALLOWED),
        head(Origin=ALLOWED) + b"\r\nSec-WebSocket-Key: " + new_key(),  # a second key line
    ):
        assert shapes.parse(raw, origins) is None


def test_head_shapes_forget_what_they_knew_for_other_origins() -> None:
    shapes = HeadShapes()
    assert shapes.parse(head(), None) is not None
    assert shapes.parse(head(Sec_WebSocket_Key=new_key().decode()), [ALLOWED]) is None  # no Origin: websockets' 403


def test_head_shapes_keep_a_bounded_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge, "SHAPES_KEPT", 4)
    shapes = HeadShapes()
    for n in range(10):  # a proxy's X-Forwarded-For: every head its own shape
        raw = head(X_Forwarded_For=f"198.51.100.{n}")
        assert shapes_answer(shapes, raw, None) == answer(raw, None)
        assert len(shapes._shapes) <= 4


def with_hello(entry: str, key: str = GOOD["Sec-WebSocket-Key"], **changes: str) -> bytes:
    protocol = f"jansamvad.v1.msgpack+hello, jansamvad.v1.msgpack, jansamvad.v1.hello.{entry}"
    return head(Sec_WebSocket_Key=key, Sec_WebSocket_Protocol=protocol, **changes)


def test_head_shapes_cut_out_the_hello_entry_and_give_each_head_its_own() -> None:
    """Heads that differ in key and hello entry (of any length) share a shape: each gets its own hello and accept."""
    shapes = HeadShapes()
    for n, entry in enumerate(["gaF0pWhlbGxv", "", "abc", "A" * 700, "gaF0pWhlbGxv_-x"]):
        key = new_key().decode()
        raw = with_hello(entry, key)
        found = shapes.parse(raw, None)
        assert found is not None and found.hello == entry and found.subprotocol == "jansamvad.v1.msgpack+hello"
        assert switching_protocols(found) == switching_protocols(parse_upgrade(raw, None))  # type: ignore[arg-type]
        assert len(shapes._shapes) == 1, n  # one shape for all of them


def test_head_shapes_take_the_hello_parse_upgrade_takes() -> None:
    """An entry before the key, in a second protocol line, or after an entry that is not base64url: the hello is
    always the one parse_upgrade takes (the first entry offered), cold and warm."""
    shapes = HeadShapes()
    key_line = b"\r\nSec-WebSocket-Key: " + KEY
    heads = [
        # the protocol line before the key line
        head(Sec_WebSocket_Key=None, Sec_WebSocket_Protocol="jansamvad.v1.json+hello, jansamvad.v1.hello.e30")
        + key_line,
        head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello") + b"\r\nSec-WebSocket-Protocol: jansamvad.v1.hello.W10",
        # the first entry is a token but not base64url: it is the hello (refused at the join), not the second one
        head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello, jansamvad.v1.hello.a.b, jansamvad.v1.hello.e30"),
        head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello, xjansamvad.v1.hello.e30"),  # not an entry
    ]
    for _ in range(2):
        for raw in heads:
            for variant in (raw, raw.replace(KEY, new_key()).replace(b"e30", b"eyJ0IjoiaGVsbG8ifQ")):
                want, got = parse_upgrade(variant, None), shapes.parse(variant, None)
                assert want is not None and got is not None, variant
                assert (got.subprotocol, got.hello) == (want.subprotocol, want.hello), variant
                assert switching_protocols(got) == switching_protocols(want), variant


@pytest.mark.parametrize(
    "raw",
    [
        with_hello("gaF0pWhlbGxv"),
        with_hello("gaF0pWhlbGxv", User_Agent="jansamvad.v1.hello.e30"),  # the prefix first elsewhere
        head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello, jansamvad.v1.hello.a.b, jansamvad.v1.hello.e30"),
        head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello,jansamvad.v1.hello.e30"),
        head(Sec_WebSocket_Protocol="xjansamvad.v1.hello.e30, jansamvad.v1.hello.W10"),
        head(SEC_WEBSOCKET_PROTOCOL="jansamvad.v1.hello.e30"),
        head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello") + b"\r\nSec-WebSocket-Protocol: jansamvad.v1.hello.W10",
        head(Sec_WebSocket_Protocol="jansamvad.v1.hello.a!") + b"\r\nSec-WebSocket-Protocol: jansamvad.v1.hello.W10",
        head(Sec_WebSocket_Protocol="jansamvad.v1.json"),
        head(X_Sec_WebSocket_Protocol="jansamvad.v1.hello.e30"),
    ],
)
def test_head_shapes_find_the_hello_entry_as_the_full_search_does(raw: bytes) -> None:
    quick, full = edge._hello_entry(raw), edge._HELLO_ENTRY.search(raw)
    assert (quick and (quick.span(1), quick.group(1))) == (full and (full.span(1), full.group(1)))


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ITEMS = [
    "jansamvad.v1.msgpack+hello",
    "jansamvad.v1.json+hello",
    "jansamvad.v1.msgpack+hello",
    "jansamvad.v1.json+hello",
    "jansamvad.v1.msgpack",
    "jansamvad.v1.json",
    "chat",
    "jansamvad.v1.hello.a.b",  # a token, not base64url
    "jansamvad.v1.hello.a+b",
    "xjansamvad.v1.hello.e30",  # not an entry
    None,  # an entry of random base64url text (a slot, filled per head)
    None,
    None,
]


def _shape_of_head(rng: random.Random) -> tuple[list[str], int]:
    """A head with slots: "{k}" for each key, "{h}" for each hello entry's text; lines in random order, random
    case of the protocol header's name, random spacing; (lines, number of hello slots)."""
    lines = ["Host: h", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]
    lines += [rng.choice(["Sec-WebSocket-Key:", "sec-websocket-key:  "]) + "{k}"] * rng.choice([1, 1, 1, 0, 2])
    slots = 0
    for _ in range(rng.choice([1, 1, 2, 3])):
        items = [rng.choice(_ITEMS) or "jansamvad.v1.hello.{h}" for _ in range(rng.randrange(5))]
        slots += sum(item.endswith("{h}") for item in items)
        name = rng.choice(["Sec-WebSocket-Protocol", "sec-websocket-protocol", "SEC-WEBSOCKET-PROTOCOL"])
        sep = rng.choice([",", ", ", " , ", "\t,"])
        lines.append(f"{name}:{rng.choice(['', ' ', chr(9)])}{sep.join(items)}{rng.choice(['', ' ', ','])}")
    if rng.random() < 0.3:
        lines.append("User-Agent: jansamvad.v1.hello.e30")
    rng.shuffle(lines)
    return [rng.choice(["GET /ws HTTP/1.1", "GET /ws?enc=json HTTP/1.1"]), *lines], slots


def _fill(lines: list[str], keys: list[str], texts: list[str]) -> bytes:
    out, k, h = [], iter(keys), iter(texts)
    for line in lines:
        while "{k}" in line or "{h}" in line:
            line = line.replace("{k}", next(k), 1) if "{k}" in line else line.replace("{h}", next(h), 1)
        out.append(line)
    return "\r\n".join(out).encode()


def _parts(found: Any) -> Any:
    return found and (found.accept, found.subprotocol, found.hello, found.origin, found.query, found.lane)


def test_head_shapes_answer_generated_heads_as_parse_upgrade_does_warm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated heads (keys and hello entries in either order, entries of other lengths, an earlier entry that is
    not base64url, entries in several lines or in other headers): a head of a shape already taken, with other keys
    and entry texts, gets parse_upgrade's own answer; the quick entry lookup finds what the full search finds."""
    rng, warm_hellos, parses = random.Random(19), 0, [0]

    def counted(head: bytes, origins: list[Any] | None) -> Any:
        parses[0] += 1
        return parse_upgrade(head, origins)

    monkeypatch.setattr(edge, "parse_upgrade", counted)
    for _ in range(1500):
        lines, slots = _shape_of_head(rng)
        shapes = HeadShapes()
        first = _fill(lines, [new_key().decode() for _ in range(2)], ["".join(rng.choices(_B64URL, k=4))] * slots)
        assert _parts(shapes.parse(first, None)) == _parts(parse_upgrade(first, None)), first
        for _ in range(3):
            texts = ["".join(rng.choices(_B64URL, k=rng.choice([0, 3, 4, 50]))) for _ in range(slots)]
            raw = _fill(lines, [new_key().decode() for _ in range(2)], texts)
            before = parses[0]
            got, want = shapes.parse(raw, None), parse_upgrade(raw, None)
            assert _parts(got) == _parts(want), (first, raw)
            warm_hellos += parses[0] == before and got is not None and got.hello is not None
            quick, full = edge._hello_entry(raw), edge._HELLO_ENTRY.search(raw)
            assert (quick and quick.span(1)) == (full and full.span(1)), raw
    assert warm_hellos > 100  # answered from the shapes with a hello: the generator reaches the case under test
