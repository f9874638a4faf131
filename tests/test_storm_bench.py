"""The storm bench's own parts (loadtest/bench/storm.py) against a real node: its leader must outlive a long storm."""

from __future__ import annotations

import asyncio
import base64
import random
import re
from collections.abc import Awaitable, Callable

import msgpack
import pytest
from loadtest.bench.storm import Leader
from loadtest.bench.storm_client import LeanStormClient

from jansamvad.server import RunningServer
from tests import helpers
from tests.helpers import joined, make_hall

pytestmark = pytest.mark.anyio

# This module's anyio_backend: asyncio only (the bench's leader is websockets' asyncio client).
asyncio_client_loop = helpers.asyncio_client_loop

PING_S = 1.0  # --ping-interval and --ping-timeout (the keepalive wheel turns once a second): 2 s without a pong
CITIZENS = 30  # each join sends the room a new `viewers` count: more frames than websockets' buffer (16) holds
PRESENCE_S = 0.05  # --presence-interval: the room's `viewers` count goes out at most this often


@pytest.mark.timeout(30)
async def test_storm_leader_survives_a_long_connect_without_speaking(
    make_server: Callable[..., Awaitable[RunningServer]],
) -> None:
    """While the storm's clients connect the leader says nothing for longer than the node's keepalive allows, and the
    room's `viewers` counts keep arriving. It must still answer the node's pings: its next speech is acknowledged
    (before, it stopped reading after 16 frames and the node closed it with 1011 for want of a pong)."""
    server = await make_server(ping_interval_s=PING_S, ping_timeout_s=PING_S, presence_interval_s=PRESENCE_S)
    hall = await make_hall(server)
    leader = await Leader.join(server.base_url, hall.leader)
    try:
        await leader.request({"t": "go_live"})
        for i in range(CITIZENS):  # one at a time, so every count goes out on its own tick
            await joined(server, hall.citizen_token(sub=f"c-{i}"))
            await asyncio.sleep(PRESENCE_S * 2)
        await asyncio.sleep(PING_S * 4)  # several keepalive rounds with the leader silent
        reply = await leader.request({"t": "speech", "text": "सब वापस आ गए"})
        assert reply["t"] == "ack"
    finally:
        await leader.close()


@pytest.mark.timeout(60)
class _CountingClient(LeanStormClient):
    """The lean client, counting the hello frames it sends."""

    __slots__ = ("hello_frames",)

    def __init__(self, port: int, token: str, rng: random.Random, in_offer: bool) -> None:
        super().__init__(port, token, rng, in_offer=in_offer)
        self.hello_frames = 0

    def hello(self) -> bytes:
        self.hello_frames += 1
        return super().hello()


def _offered_hello(request: bytes) -> dict[str, object]:
    """The hello in an upgrade request's offer (docs/protocol.md, section 1)."""
    entry = re.search(rb"jansamvad\.v1\.hello\.([A-Za-z0-9_-]+)\r\n", request)
    assert entry is not None, request
    data = entry.group(1)
    return msgpack.unpackb(base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4)))  # type: ignore[no-any-return]


@pytest.mark.parametrize("in_offer", [True, False], ids=["hello_in_offer", "hello_as_message"])
async def test_storm_lean_client_honours_retry_after_and_resumes_every_seq_once(
    make_server: Callable[..., Awaitable[RunningServer]], in_offer: bool
) -> None:
    """The bench's lean client (storm_client.py) against a real node: 30 at once over a handshake budget of 10 are told
    503 + Retry-After and come back; after a drop they resume with `last_seq` and hold exactly the spoken seqs. With
    the hello in the offer (its `last_seq` too, after the first join) no hello frame is sent; as a message, one each
    join."""
    server = await make_server(handshakes_per_second=10)
    hall = await make_hall(server)
    leader = await Leader.join(server.base_url, hall.leader)
    rng = random.Random(3)
    clients = [_CountingClient(server.port, hall.citizen_token(sub=f"c-{i}"), rng, in_offer) for i in range(30)]
    try:
        await leader.request({"t": "go_live"})

        async def all_back() -> None:
            async with asyncio.timeout(20):
                await asyncio.gather(*(c.connect() for c in clients))

        async def all_have(seq: int) -> None:
            async with asyncio.timeout(10):
                while not all(c.last_seq == seq for c in clients):
                    await asyncio.sleep(0.05)

        await all_back()
        assert sum(c.rejected for c in clients) >= 20 and max(c.most_retry_after for c in clients) >= 1
        spoken = [(await leader.request({"t": "speech", "text": f"पहले {i}"}))["seq"] for i in range(2)]
        await all_have(spoken[-1])
        for c in clients:
            c.drop()
        if in_offer:
            assert all(
                _offered_hello(c.upgrade()) == {"t": "hello", "token": c.token, "last_seq": spoken[-1]} for c in clients
            )
        else:
            assert all(b"jansamvad.v1.hello." not in c.upgrade() for c in clients)
        missed = [(await leader.request({"t": "speech", "text": f"बीच में {i}"}))["seq"] for i in range(2)]
        await all_back()
        await all_have(missed[-1])
        assert all(c.recovered is True for c in clients)
        assert all(c.seqs == spoken + missed and not c.problems for c in clients)
        assert all(c.hello_frames == (0 if in_offer else 2) for c in clients)
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
        await leader.close()


@pytest.mark.timeout(10)
async def test_storm_lean_client_fails_on_a_503_without_retry_after() -> None:
    """docs/protocol.md: every 503 of the handshake says when to come back; a node that does not is a failure of the
    bench, not something to retry for ever."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
        finally:
            writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = LeanStormClient(port, "token", random.Random(1))
    try:
        with pytest.raises(AssertionError, match="without a Retry-After"):
            await asyncio.wait_for(client.connect(), 5)
        assert client.problems and client.rejected == 0
    finally:
        listener.close()
        await listener.wait_closed()


def _unmasked(data: bytes) -> bytes:
    """The payload of one masked client frame shorter than 126 bytes (a hello)."""
    n, key = data[1] & 0x7F, data[2:6]
    return bytes(b ^ key[i % 4] for i, b in enumerate(data[6 : 6 + n]))


async def _stub_node(chosen: str, hellos: list[bytes]) -> asyncio.Server:
    """A node that answers the upgrade with `chosen` as its subprotocol, keeps the first frame after it, then sends a
    welcome (a node that does not know the `+hello` names answers the plain one and waits for a hello frame)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: " + chosen.encode() + b"\r\n\r\n"
            )
            first = await reader.read(200)
            if not first:  # the client hung up instead of saying hello
                return
            hellos.append(_unmasked(first))
            welcome = msgpack.packb({"t": "welcome", "recovered": False})
            writer.write(bytes([0x82, len(welcome)]) + welcome)
            await writer.drain()
            await reader.read()  # until the client hangs up
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


@pytest.mark.timeout(10)
async def test_storm_lean_client_sends_its_hello_as_a_frame_when_the_node_answers_the_plain_name() -> None:
    hellos: list[bytes] = []
    listener = await _stub_node("jansamvad.v1.msgpack", hellos)
    client = LeanStormClient(listener.sockets[0].getsockname()[1], "the-token", random.Random(1))
    try:
        await asyncio.wait_for(client.connect(), 5)
        assert [msgpack.unpackb(h) for h in hellos] == [{"t": "hello", "token": "the-token"}]
        assert client.recovered is False and not client.problems
    finally:
        await client.stop()
        listener.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("chosen", "in_offer"), [("jansamvad.v1.json", True), ("jansamvad.v1.msgpack+hello", False), ("", True)]
)
async def test_storm_lean_client_fails_when_the_node_chooses_what_it_did_not_offer(chosen: str, in_offer: bool) -> None:
    listener = await _stub_node(chosen, [])
    client = LeanStormClient(listener.sockets[0].getsockname()[1], "the-token", random.Random(1), in_offer=in_offer)
    try:
        with pytest.raises(AssertionError, match="did not offer"):
            await asyncio.wait_for(client.connect(), 5)
    finally:
        await client.stop()
        listener.close()
