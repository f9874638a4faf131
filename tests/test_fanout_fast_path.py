"""The fan-out's hot path (issue 19 item 4): a member's `fast_write` is a send on its socket exactly while its transport
holds nothing and the checked path (write_broadcast) would write without a question, and a tick is encoded only in
the wire formats its room's listeners speak."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jansamvad.connection import WsConnection
from jansamvad.fanout import Fanout
from jansamvad.feeds import Mode
from jansamvad.hub import Hub
from jansamvad.protocol.codec import Encoding
from jansamvad.server import RunningServer
from tests.helpers import joined, make_hall
from tests.test_fanout import Recorder, frames, settle

pytestmark = pytest.mark.anyio


class FastRecorder(Recorder):
    """A listener that offers the fan-out a fast write, as an open connection whose transport holds nothing does.
    `take` (if set) is how many bytes its sends take, as a full kernel buffer would; the rest comes to write_rest."""

    def __init__(self, encoding: Encoding = Encoding.MSGPACK, *, mode: Mode = Mode.CAPTIONS) -> None:
        super().__init__(encoding, mode=mode)
        self.fast_write = self.send  # type: ignore[assignment]  # the fake's socket
        self.take: int | None = None
        self.rests: list[tuple[bytes, int]] = []

    def send(self, blob: bytes) -> int:
        if self.take == 0:
            raise BlockingIOError  # EAGAIN
        sent = len(blob) if self.take is None else min(self.take, len(blob))
        self.writes.append(blob[:sent])
        return sent

    def write_rest(self, blob: bytes, sent: int) -> None:
        self.rests.append((blob, sent))
        self.writes.append(blob[sent:])
        self.fast_write = None  # the transport holds bytes now: everything goes through it until it drained


def connection_of(server: RunningServer, sub: str) -> WsConnection:
    (conn,) = server.node.hub.users[sub]
    assert isinstance(conn, WsConnection)
    return conn


async def test_fanout_fast_write_is_the_transport_write_only_while_the_connection_is_writable(
    make_server: Any,
) -> None:
    server = await make_server()
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    citizen = await joined(server, hall.citizen_token(sub="c-fast"))
    await asyncio.sleep(0.1)  # the join's resume goes through the flusher (fanout.py): the session is live after it
    conn = connection_of(server, "c-fast")
    assert conn.transport is not None and conn.sock is not None
    assert conn.fast_write == conn.sock.send  # joined, open, not replaying, the transport holds nothing

    conn.pause_writing()  # what the transport calls as soon as it holds a byte
    assert conn.fast_write is None
    conn.resume_writing()  # ... and once it drained
    assert conn.fast_write == conn.sock.send

    # Replaying: live frames wait in `paused` and reach the session on resume, not through the fast write.
    conn.paused = []
    assert conn.fast_write is None
    ack = await leader.request({"t": "speech", "text": "रुकी हुई बात"})
    await asyncio.sleep(0.1)
    # Only sequenced frames count: a tick's conflated update (seq 0, e.g. the viewers count) may wait there too.
    assert [seq for _, seq, _ in conn.paused if seq] == [ack["seq"]]
    server.node.fanout.resume(conn, {"seq": ack["seq"] - 1})
    got = await citizen.recv_until(lambda m: m.get("t") == "speech")
    assert got["seq"] == ack["seq"]
    assert conn.paused is None and conn.fast_write == conn.sock.send

    await citizen.close()
    await asyncio.sleep(0.1)
    assert conn.fast_write is None


async def test_fanout_room_of_msgpack_listeners_never_encodes_json_until_a_json_listener_joins(
    make_server: Any,
) -> None:
    server = await make_server()
    fanout = server.node.fanout
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    citizens = [await joined(server, hall.citizen_token(sub=f"c-m{i}")) for i in range(3)]
    first = await leader.request({"t": "speech", "text": "पहला वाक्य"})
    for citizen in citizens:
        assert (await citizen.recv_until(lambda m: m.get("seq") == first["seq"]))["t"] == "speech"
    assert fanout.frames_by_format["msgpack"] >= 1
    assert fanout.frames_by_format["json"] == 0, "nobody in the room speaks JSON"

    reader = await joined(server, hall.citizen_token(sub="c-json"), encoding="json")
    second = await leader.request({"t": "speech", "text": "दूसरा वाक्य"})
    got = await reader.recv_until(lambda m: m.get("seq") == second["seq"])
    assert got["t"] == "speech" and got["text"] == "दूसरा वाक्य"
    assert fanout.frames_by_format["json"] >= 1
    for citizen in citizens:
        assert (await citizen.recv_until(lambda m: m.get("seq") == second["seq"]))["t"] == "speech"


async def test_fanout_fast_and_checked_members_of_one_room_each_get_their_own_feed() -> None:
    fanout = Fanout(tick_s=0.001, writes_per_yield=3, coalesce_s=0.0)
    fanout.start()
    hub = Hub()
    fast = [FastRecorder() for _ in range(5)]
    fast_json = FastRecorder(Encoding.JSON)
    paused = FastRecorder()
    paused.fast_write = None  # type: ignore[assignment]  # replaying, as WsConnection says while paused
    paused.paused = []
    slow = Recorder(slow=True)  # over its cap: no fast write, and the checked path drops it on must-deliver
    for listener in [*fast, fast_json, paused, slow]:
        hub.add("th:x", listener)
    room = hub.room("th:x")
    assert room is not None
    fanout.enqueue(room, 7, {"t": "speech", "text": "सबको"})
    await settle()
    for listener in fast:
        assert [frames(blob) for blob in listener.writes] == [[{"t": "speech", "text": "सबको", "seq": 7}]]
    (text,) = fast_json.writes
    assert json.loads(text[2:]) == {"t": "speech", "text": "सबको", "seq": 7}
    assert paused.writes == [] and [seq for _, seq, _ in paused.paused] == [7]
    assert slow.dropped and slow.writes == []
    # Five msgpack writes and one JSON write; the slow member's checked write counts (write_broadcast decides), the
    # paused member's frames do not.
    assert fanout.writes == 7
    assert fanout.frames_by_format == {"msgpack": 1, "json": 1}
    await fanout.stop()
