"""`--send-buffer-bytes`: a fixed kernel send buffer per WebSocket, so the slow-consumer policy sees a stalled phone.

Without it Linux autotunes the send buffer from the MSS: on loopback (64 KB MSS) megabytes per socket, which a
stalled reader fills silently before the node's own cap (`max_buffered_bytes`) is ever reached.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from jansamvad.server import RunningServer
from jansamvad.settings import Settings
from tests.helpers import RawClient, joined, make_hall

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

CHUNK = 20_000
CHUNKS = 40  # 800 KB of audio: far below what loopback's autotuned buffers hold, far above 16 KiB + 2 x 4 KiB


def server_sockets(server: RunningServer) -> list[Any]:
    return [conn.transport.get_extra_info("socket") for conn in server.node.gateway.connections if conn.transport]


async def test_send_buffer_bytes_default_is_the_kernels_autotuning() -> None:
    assert Settings().send_buffer_bytes == 0


async def test_send_buffer_bytes_sets_so_sndbuf_on_every_websocket(make_server: Any) -> None:
    server = await make_server(send_buffer_bytes=8192)
    hall = await make_hall(server)
    await joined(server, hall.citizen_token(sub="c-one"))
    sizes = {s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) for s in server_sockets(server)}
    assert sizes == {2 * 8192}  # Linux doubles what is asked for (its bookkeeping overhead)


async def test_send_buffer_bytes_lets_a_stalled_phone_meet_the_cap_audio_skipped_speech_closes(
    make_server: Any,
) -> None:
    server = await make_server(
        send_buffer_bytes=4096, max_buffered_bytes=16 * 1024, staff_msgs_per_s=10_000.0, staff_msg_burst=10_000
    )
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    await leader.request({"t": "go_live"})
    reader = await joined(server, hall.citizen_token(sub="c-reader"), mode="audio")
    stalled = await RawClient.open(server, rcvbuf=4096)
    stalled.send_message({"t": "hello", "token": hall.citizen_token(sub="c-stalled"), "mode": "audio"})
    await asyncio.sleep(0.2)
    stalled.writer.transport.pause_reading()  # the phone stops reading: only the kernel buffers fill
    for i in range(CHUNKS):
        await leader.send({"t": "audio", "data": bytes([i]) * CHUNK})
        await reader.recv_until(lambda m, i=i: m["t"] == "audio" and m["data"][:1] == bytes([i]))
    # 800 KB did not fit in 2 x 4 KiB of kernel buffer + 16 KiB of the node's: audio was skipped, nobody closed.
    assert server.node.broadcasts_skipped > 0
    assert server.node.slow_consumer_drops == 0
    # Speech must be delivered: the stalled phone is closed with 4009 (it resumes from history), the reader has it.
    ack = await leader.request({"t": "speech", "text": "सब तक पहुँचना चाहिए"})
    assert (await reader.recv_until(lambda m: m["t"] == "speech"))["seq"] == ack["seq"]
    await asyncio.sleep(0.2)
    assert server.node.slow_consumer_drops == 1
