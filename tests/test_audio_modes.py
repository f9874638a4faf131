"""Listening modes over real sockets (docs/protocol.md section 4.2): audio is opt-in, counted in bytes on the wire;
a node subscribes to a town hall's audio only while it has a listener; a listener who starts late begins at the
latest init chunk; text-light gets no partial transcripts and aggregates at most every 5 s."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from jansamvad.broker.memory import MemoryBroker
from jansamvad.feeds import audio_channel
from jansamvad.server import RunningServer
from tests.contract.support import eventually
from tests.helpers import RawClient, Session, joined, make_hall

pytestmark = pytest.mark.anyio

INIT = b"\x1aE\xdf\xa3" + b"h" * 200
MIME = "audio/webm;codecs=opus"


async def read_all(raw: RawClient, quiet_s: float) -> list[bytes]:
    """Every frame's payload until the socket has been quiet for `quiet_s`."""
    payloads = []
    try:
        while True:
            _, payload = await raw.read_frame(timeout=quiet_s)
            payloads.append(payload)
    except TimeoutError:
        return payloads


async def test_audio_listener_who_never_opts_in_gets_zero_audio_bytes(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    listener = await joined(server, hall.citizen_token(sub="c-listens"), mode="audio")
    reader = await RawClient.open(server)
    reader.send_message({"t": "hello", "token": hall.citizen_token(sub="c-reads")})
    join_frames = await read_all(reader, 0.5)
    assert [msgpack.unpackb(p)["t"] for p in join_frames[:2]] == ["welcome", "snapshot"]
    chunk = b"\x42" * 8_000
    await leader.send({"t": "audio", "data": INIT, "init": True, "mime": MIME})
    for _ in range(20):
        await leader.send({"t": "audio", "data": chunk})
    heard = 0
    while heard < 20 * len(chunk):
        message = await listener.recv_until(lambda m: m["t"] == "audio")
        heard += len(message["data"]) if not message["init"] else 0
    # Counted on the wire: the reader got no audio frame and far fewer bytes than one chunk (a viewer count at most).
    after = await read_all(reader, 0.5)
    assert not [p for p in after if msgpack.unpackb(p)["t"] == "audio"]
    assert sum(len(p) for p in after) < 1_000, [msgpack.unpackb(p)["t"] for p in after]


async def test_audio_node_subscribes_to_a_townhall_audio_only_while_it_has_an_audio_listener(
    server: RunningServer,
) -> None:
    hall = await make_hall(server)
    broker = server.node.broker
    assert isinstance(broker, MemoryBroker)
    channel = audio_channel(hall.th)

    def subscribed() -> bool:
        return channel in broker._subscribed

    reader = await joined(server, hall.citizen_token(sub="c-reads"))
    assert not subscribed() and channel not in server.node.live_channels()
    assert (await reader.request({"t": "mode", "mode": "audio"}))["mode"] == "audio"
    assert subscribed() and channel in server.node.live_channels()
    await reader.request({"t": "mode", "mode": "light"})
    await eventually(lambda: not subscribed(), what="unsubscribed after the last listener left audio mode")
    listener = await joined(server, hall.citizen_token(sub="c-listens"), mode="audio")
    assert subscribed()
    await listener.close()
    await eventually(lambda: not subscribed(), what="unsubscribed after the last listener left")


async def test_audio_listener_who_turns_audio_on_starts_at_the_latest_init_chunk(server: RunningServer) -> None:
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    # The node has no audio listener while the leader starts: the init chunk is kept by the broker, not by a room.
    await leader.send({"t": "audio", "data": INIT, "init": True, "mime": MIME})
    await leader.send({"t": "audio", "data": b"second"})
    await leader.send({"t": "audio", "data": INIT + b"again", "init": True, "mime": MIME})  # the leader reconnected
    citizen = await joined(server, hall.citizen_token())
    await asyncio.sleep(0.1)
    await citizen.send({"t": "mode", "id": 1, "mode": "audio"})
    init = await citizen.recv_until(lambda m: m["t"] == "audio")
    assert init["init"] is True and init["data"] == INIT + b"again" and init["mime"] == MIME
    assert (await citizen.recv_until(lambda m: m.get("re") == 1))["mode"] == "audio"
    await leader.send({"t": "audio", "data": b"live"})
    assert (await citizen.recv_until(lambda m: m["t"] == "audio"))["data"] == b"live"
    # Back to captions: no more audio.
    await citizen.request({"t": "mode", "mode": "captions"})
    await leader.send({"t": "audio", "data": b"not for you"})
    await leader.request({"t": "speech", "text": "पाठ"})
    await citizen.recv_until(lambda m: m["t"] == "speech")
    assert not [m for m in citizen.skipped if m["t"] == "audio" and m["data"] == b"not for you"]


async def test_audio_hello_with_a_mode_outside_the_ladder_is_a_bad_hello(server: RunningServer) -> None:
    hall = await make_hall(server)
    session = await Session.open(server)
    await session.send({"t": "hello", "token": hall.citizen_token(), "mode": "video"})
    assert (await session.expect_close())[0] == 4000
    citizen = await joined(server, hall.citizen_token())
    reply = await citizen.request({"t": "mode", "mode": "video"})
    assert (reply["t"], reply["code"], reply["field"]) == ("error", "invalid_field", "mode")


async def test_light_mode_gets_final_sentences_only_and_aggregates_at_most_every_5_s(make_server: Any) -> None:
    server = await make_server(presence_interval_s=0.1)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    light = await joined(server, hall.citizen_token(sub="c-light"), mode="light")
    full = await joined(server, hall.citizen_token(sub="c-full"))
    # Viewer counts change every presence tick while citizens come (in light mode themselves: sessions this test
    # never reads must not fill their client's queue, or their closing handshake stalls at teardown).
    for i in range(12):
        await joined(server, hall.citizen_token(sub=f"c-{i}"), mode="light")
        await leader.request({"t": "speech", "text": f"आधा {i}", "final": False})
        await asyncio.sleep(0.12)
    await leader.request({"t": "speech", "text": "पूरा वाक्य", "final": True})
    final_full = await full.recv_until(lambda m: m["t"] == "speech" and m["final"])
    final_light = await light.recv_until(lambda m: m["t"] == "speech" and m["final"])
    assert final_full["seq"] == final_light["seq"]
    full_seen, light_seen = full.skipped, light.skipped
    assert len([m for m in full_seen if m["t"] == "speech" and not m["final"]]) == 12
    assert not [m for m in light_seen if m["t"] == "speech" and not m["final"]]
    # About 1.5 s passed: the full listener saw the count move many times, the light one at most once.
    assert len([m for m in full_seen if m["t"] == "viewers"]) >= 4
    assert len([m for m in light_seen if m["t"] == "viewers"]) <= 1
