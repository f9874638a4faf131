"""The edge (edge.py): plain WebSocket upgrades answered without uvicorn or websockets' request parser, everything
else handed on unchanged. The fast path must never accept what websockets would refuse, and must write the same
bytes websockets writes."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from jansamvad.edge import EdgeProtocol, parse_upgrade, service_unavailable, switching_protocols
from jansamvad.frames_in import _select_subprotocol
from jansamvad.server import RunningServer
from tests.helpers import RawClient, joined, make_hall

pytestmark = pytest.mark.anyio

GOOD = {
    "Host": "node:8000",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def head(path: str = "/ws", method: str = "GET", version: str = "HTTP/1.1", **changes: str | None) -> bytes:
    """A request head without its blank line; a header set to None is left out, names with `_` become `-`."""
    headers = dict(GOOD)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    lines = [f"{method} {path} {version}"] + [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines).encode("latin-1")


def websockets_answer(raw_head: bytes, origins: list[Any] | None = None) -> bytes | None:
    """What websockets (the slow path) writes for this head, or None when it cannot even parse it."""
    reader = StreamReader()
    reader.feed_data(raw_head + b"\r\n\r\n")
    parser = Request.parse(reader.read_line)
    try:
        next(parser)
    except StopIteration as done:
        request = done.value
    except Exception:
        return None
    else:
        return None
    protocol = ServerProtocol(origins=origins, select_subprotocol=_select_subprotocol)
    if request.path.split("?")[0] != "/ws":
        return b"HTTP/1.1 404"
    protocol.send_response(protocol.accept(request))
    return b"".join(protocol.data_to_send())


def without_date(response: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"", response)


CASES: list[bytes] = [
    head(),
    head(Sec_WebSocket_Protocol="jansamvad.v1.json"),
    head(Sec_WebSocket_Protocol="chat, jansamvad.v1.msgpack"),
    head(Sec_WebSocket_Protocol="chat"),
    head("/ws?enc=json"),
    head("/ws?lane=staff"),
    head(Connection="keep-alive, Upgrade", Upgrade="WebSocket"),
    head(Origin="https://jansamvad.example.org"),
    head(Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits"),
    # The hello in the offer (protocol/subprotocols.py): with an entry, without one, the entry first, two entries.
    head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello, jansamvad.v1.json, jansamvad.v1.hello.eyJ0IjoiaGVsbG8ifQ"),
    head(Sec_WebSocket_Protocol="jansamvad.v1.msgpack+hello, jansamvad.v1.msgpack"),
    head(Sec_WebSocket_Protocol="jansamvad.v1.hello.gaF0pWhlbGxv, jansamvad.v1.msgpack+hello"),
    head(Sec_WebSocket_Protocol="jansamvad.v1.json+hello, jansamvad.v1.hello.e30, jansamvad.v1.hello.W10"),
    # Everything below is refused by websockets, or not plain enough for the fast path.
    head(method="POST"),
    head(version="HTTP/1.0"),
    head("/wsx"),
    head("/ws/"),
    head("/ws?lane=vip"),
    head(Connection=None),
    head(Connection="keep-alive"),
    head(Upgrade=None),
    head(Upgrade="websocket, h2c"),
    head(Sec_WebSocket_Key=None),
    head(Sec_WebSocket_Key="c2hvcnQ="),
    head(Sec_WebSocket_Key="not base64!!"),
    head(Sec_WebSocket_Version="8"),
    head(Sec_WebSocket_Version=None),
    head(Sec_WebSocket_Protocol="bad token"),
    head(X_Control="a\x01b"),
    head(X_Latin="नमस्ते".encode().decode("latin-1")),
    head() + b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    head() + b"\r\nSec-WebSocket-Version: 13",
    head(Origin="https://jansamvad.example.org") + b"\r\nOrigin: https://evil.example",
    head() + b"\r\n folded continuation",
    head(X_Bare="a\nb"),
    head(X_Bare="a\rb"),
    head() + b"\r\nX-Empty:",
    head() + b"\r\n: no name",
    b"GET /ws HTTP/1.1",
]


@pytest.mark.parametrize("origins", [None, ["https://jansamvad.example.org"]])
@pytest.mark.parametrize("raw", CASES)
def test_edge_fast_path_accepts_only_what_websockets_accepts_with_the_same_bytes(
    raw: bytes, origins: list[Any] | None
) -> None:
    upgrade = parse_upgrade(raw, origins)
    slow = websockets_answer(raw, origins)
    if upgrade is None:
        return  # handed to websockets: it answers, whatever it answers
    assert slow is not None and slow.startswith(b"HTTP/1.1 101 ")
    assert without_date(switching_protocols(upgrade)) == without_date(slow)


def test_edge_fast_path_takes_the_plain_upgrades() -> None:
    """The common requests must not fall to the slow path (or the edge would save nothing)."""
    for raw in CASES[:13]:
        assert parse_upgrade(raw, None) is not None, raw
    assert parse_upgrade(head(Origin="https://jansamvad.example.org"), ["https://jansamvad.example.org"]) is not None
    assert parse_upgrade(head(), ["https://jansamvad.example.org"]) is None  # no Origin: websockets says 403


def test_edge_503_is_the_slow_paths_503() -> None:
    protocol = ServerProtocol()
    response = protocol.reject(503, "Service Unavailable: try again later\n")
    response.headers["Retry-After"] = "7"
    protocol.send_response(response)
    assert without_date(service_unavailable(7)) == without_date(b"".join(protocol.data_to_send()))


async def test_edge_answers_a_plain_upgrade_and_the_session_joins(server: RunningServer) -> None:
    before = EdgeProtocol.fast_upgrades
    hall = await make_hall(server)
    for encoding in ("msgpack", "json"):
        session = await joined(server, hall.citizen_token(sub=f"c-{encoding}"), encoding)
        await session.close()
    assert EdgeProtocol.fast_upgrades >= before + 2


async def test_edge_hands_other_requests_to_uvicorn_unchanged(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/ws")).status_code == 404  # a GET /ws without upgrade: the HTTP app, as before
    wrong = await RawClient.open(server, path="/wsx")
    assert wrong.status == 404
    old = await RawClient.open(server, headers="Sec-WebSocket-Version: 8\r\n")  # a second version line: slow path
    assert old.status == 400


async def test_edge_refusal_is_a_503_with_retry_after(make_server: Any) -> None:
    server = await make_server(max_connections=1)
    first = await RawClient.open(server)
    second = await RawClient.open(server)
    assert (first.status, second.status) == (101, 503)
    assert b"\r\nRetry-After: 2\r\n" in second.response


async def test_edge_head_deadline_counts_from_the_socket_opening(make_server: Any) -> None:
    """A client that sends a non-upgrade request slowly is cut off by the deadline started when the socket opened,
    not by a fresh one started when the edge handed it to uvicorn."""
    server = await make_server(http_head_timeout_s=0.6)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        await asyncio.sleep(0.4)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # handed to uvicorn now, head still open
        async with asyncio.timeout(0.5):  # well before 0.4 + 0.6 s
            assert await reader.read(1024) == b""
    finally:
        writer.close()
