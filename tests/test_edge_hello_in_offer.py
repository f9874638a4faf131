"""The hello in the subprotocol offer (protocol/subprotocols.py, docs/protocol.md section 1): a citizen joins in one
round trip, on the edge's fast path and on websockets' handshake alike, and every wrong hello gets the close code a
wrong hello message gets."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import msgpack
import pytest
from loadtest.join_client import offer_with_hello

from jansamvad.edge import EdgeProtocol
from jansamvad.server import RunningServer
from tests.helpers import RawClient, Session, make_hall

pytestmark = pytest.mark.anyio


def encoded(message: dict[str, Any], encoding: str) -> bytes:
    return msgpack.packb(message, use_bin_type=True) if encoding == "msgpack" else json.dumps(message).encode()


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_edge_hello_in_offer_joins_without_a_hello_message(server: RunningServer, encoding: str) -> None:
    hall = await make_hall(server)
    before = EdgeProtocol.fast_upgrades
    session = await Session.open_with_hello(server, encoding, token=hall.citizen_token(sub=f"c-{encoding}"))
    assert session.ws.subprotocol == f"jansamvad.v1.{encoding}+hello"
    welcome = await session.recv()
    assert (welcome["t"], welcome["role"], welcome["th"]) == ("welcome", "citizen", hall.th)
    assert (await session.recv())["t"] == "snapshot"
    assert EdgeProtocol.fast_upgrades == before + 1
    assert (await session.request({"t": "ping"}))["t"] == "pong"  # an ordinary session from here on


async def test_edge_hello_in_offer_sends_the_101_with_the_welcome_in_one_write(server: RunningServer) -> None:
    """The 101 waits for the join: the first read of the socket holds the 101, the welcome and the snapshot."""
    hall = await make_hall(server)
    offer = offer_with_hello("msgpack", encoded({"t": "hello", "token": hall.citizen_token()}, "msgpack"))
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (server.host, server.port))
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws HTTP/1.1\r\nHost: {server.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {', '.join(offer)}\r\n\r\n"
            ).encode(),
        )
        first = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
    finally:
        sock.close()
    head, _, rest = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol: jansamvad.v1.msgpack+hello" in head
    kinds = []
    while rest:  # whole unmasked binary frames (a server frame of a join is under 64 KiB)
        assert rest[0] == 0x82
        size, start = (int.from_bytes(rest[2:4], "big"), 4) if rest[1] == 126 else (rest[1], 2)
        kinds.append(msgpack.unpackb(rest[start : start + size])["t"])
        rest = rest[start + size :]
    assert kinds[:2] == ["welcome", "snapshot"]


async def test_edge_hello_in_offer_through_websockets_handshake(server: RunningServer) -> None:
    """A head the fast path leaves to websockets (a non-ASCII header value) takes the hello all the same."""
    hall = await make_hall(server)
    before = EdgeProtocol.fast_upgrades
    offer = offer_with_hello("msgpack", encoded({"t": "hello", "token": hall.citizen_token()}, "msgpack"))
    raw = await RawClient.open(server, protocol=", ".join(offer), headers="X-Name: राम\r\n")
    assert raw.status == 101 and raw.header("Sec-WebSocket-Protocol") == "jansamvad.v1.msgpack+hello"
    assert EdgeProtocol.fast_upgrades == before  # the slow path answered it
    kinds = []
    for _ in range(2):
        opcode, payload = await raw.read_frame()
        assert opcode == 0x2
        kinds.append(msgpack.unpackb(payload)["t"])
    assert kinds == ["welcome", "snapshot"]


async def test_edge_hello_in_offer_without_an_entry_is_the_plain_subprotocol(server: RunningServer) -> None:
    """`+hello` offered without a hello entry: the node chooses the plain name, and the hello comes as a message."""
    hall = await make_hall(server)
    session = await Session.open(server, "json", ["jansamvad.v1.json+hello", "jansamvad.v1.json"])
    assert session.ws.subprotocol == "jansamvad.v1.json"
    welcome, snapshot = await session.hello(hall.citizen_token())
    assert welcome["t"] == "welcome" and snapshot is not None


def entry_of(data: bytes) -> str:
    """The hello entry alone (the offer's last item), for offers built by hand around it."""
    return offer_with_hello("msgpack", data)[-1]


@pytest.mark.parametrize(
    ("offer", "code"),
    [
        (["jansamvad.v1.msgpack+hello", "jansamvad.v1.hello.a"], 4000),  # not base64url (one char left over)
        (["jansamvad.v1.msgpack+hello", entry_of(b"\xc1")], 4000),  # not msgpack
        (["jansamvad.v1.msgpack+hello", entry_of(msgpack.packb({"t": "ping"}))], 4000),  # not a hello
        (["jansamvad.v1.json+hello", entry_of(msgpack.packb({"t": "hello", "token": "x"}))], 4000),  # not JSON
        (["jansamvad.v1.json+hello", entry_of(b'{"t": "hello", "token": "\xff"}')], 4000),  # not UTF-8
        (["jansamvad.v1.json+hello", entry_of(json.dumps({"t": "hello"}).encode())], 4001),  # no token
        (["jansamvad.v1.msgpack+hello", entry_of(msgpack.packb({"t": "hello", "token": "not.a.jwt"}))], 4001),
    ],
)
@pytest.mark.parametrize("slow", [False, True], ids=["edge", "websockets"])
async def test_edge_hello_in_offer_refused_as_the_hello_message_is(
    server: RunningServer, offer: list[str], code: int, slow: bool
) -> None:
    """On the edge's fast path and on websockets' handshake (a head with a non-ASCII value goes that way) alike."""
    before = EdgeProtocol.fast_upgrades
    raw = await RawClient.open(server, protocol=", ".join(offer), headers="X-Name: राम\r\n" if slow else "")
    assert raw.status == 101
    assert EdgeProtocol.fast_upgrades == before + (not slow)
    assert await raw.close_code() == code


async def test_edge_hello_in_offer_on_the_staff_lane_is_for_staff(server: RunningServer) -> None:
    hall = await make_hall(server)
    offer = offer_with_hello("msgpack", encoded({"t": "hello", "token": hall.citizen_token()}, "msgpack"))
    raw = await RawClient.open(server, path="/ws?lane=staff", protocol=", ".join(offer))
    assert raw.status == 101
    assert await raw.close_code() == 4003


async def test_edge_hello_in_offer_within_the_line_limit(server: RunningServer) -> None:
    """A hello with a token of the longest usable size (4,096 characters) fits the 8 KiB line, and is judged as a
    token (4001); a longer line is refused before the upgrade (431), as websockets refuses any long line."""
    longest = encoded({"t": "hello", "token": "x" * 4096}, "msgpack")
    raw = await RawClient.open(server, protocol=", ".join(offer_with_hello("msgpack", longest)))
    assert raw.status == 101
    assert await raw.close_code() == 4001
    too_long = encoded({"t": "hello", "token": "x" * 6200}, "msgpack")
    raw = await RawClient.open(server, protocol=", ".join(offer_with_hello("msgpack", too_long)))
    assert raw.status == 431  # Request Header Fields Too Large
