"""Multi-process: a real node process, a bounded storm of citizen upgrades on loopback, and a leader who connects on
the staff lane meanwhile (docs/reliability.md has the measured numbers)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from jansamvad.auth import TokenService
from jansamvad.localredis import free_port
from jansamvad.protocol.codes import CloseCode
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.helpers import ADMIN_KEY, SECRET, RawClient, Session, stop_process
from tests.test_staff_lane import staff_session

pytestmark = pytest.mark.anyio

# This module's anyio_backend: asyncio only (see tests/helpers.py).
asyncio_client_loop = helpers.asyncio_client_loop

STORM_ATTEMPTS = 4000  # citizen upgrades at most, ...
STORM_SECONDS = 8.0  # ... for at most this long,
STORM_CONCURRENCY = 20  # from this many at once, each at most 100 a second (so the storm lasts at least 2 s)


async def citizen_storm(port: int, stop: asyncio.Event, statuses: Counter[int]) -> None:
    """Citizen upgrades on the citizen lane as fast as the node answers them (bounded in count and time); each one
    that gets through is closed at once, as a reconnecting phone that lost its network again would be."""
    left = STORM_ATTEMPTS
    deadline = time.monotonic() + STORM_SECONDS

    async def one() -> None:
        nonlocal left
        target = SimpleNamespace(host="127.0.0.1", port=port)
        while left > 0 and not stop.is_set() and time.monotonic() < deadline:
            left -= 1
            try:
                client = await RawClient.open(target)  # type: ignore[arg-type]
            except (TimeoutError, OSError):
                statuses[0] += 1
                continue
            statuses[client.status] += 1
            client.close()
            RawClient.opened.remove(client)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(STORM_CONCURRENCY)))


def start_node_process(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "JANSAMVAD_SECRET": SECRET, "JANSAMVAD_ADMIN_KEY": ADMIN_KEY}
    with (tmp_path / "node.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), "--log-level", "warning", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError((tmp_path / "node.log").read_text(errors="replace"))
        time.sleep(0.05)


def create_townhall(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/townhalls",
        data=json.dumps({"title": "storm"}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["id"])


async def leader_connects_and_speaks(ws_url: str, token: str) -> float:
    """Seconds from the leader's first connect attempt (staff lane, no retry) to the ack of a speech."""
    started = time.monotonic()
    leader = await staff_session(ws_url)
    try:
        await leader.hello(token)
        assert (await leader.request({"t": "go_live"}))["t"] == "ack"
        ack = await leader.request(
            {"t": "speech", "text": "नमस्ते, तूफ़ान के बीच भी"},
        )
        assert ack["t"] == "ack", ack
        return time.monotonic() - started
    finally:
        Session.opened.remove(leader)
        await leader.close()


async def test_staff_lane_leader_connects_at_once_and_speaks_during_a_citizen_storm(tmp_path: Path) -> None:
    proc, port = start_node_process(tmp_path, "--handshakes-per-second", "20")
    try:
        th = create_townhall(port)
        tokens = TokenService(SECRET)
        leader = tokens.issue(sub="l-storm", role=Role.LEADER, th=th, ttl_s=600, name="Leader")[0]
        citizen = tokens.issue(sub="c-storm", role=Role.CITIZEN, th=th, ttl_s=600, name="C")[0]
        ws_url = f"ws://127.0.0.1:{port}/ws"
        stop = asyncio.Event()
        statuses: Counter[int] = Counter()
        storm = asyncio.create_task(citizen_storm(port, stop, statuses))
        try:
            while statuses[503] < 20:  # the storm has spent the citizens' budget
                assert not storm.done(), statuses
                await asyncio.sleep(0.05)
            # The leader connects at the first attempt and speaks while citizens keep being refused.
            refused_before = statuses[503]
            seconds = await leader_connects_and_speaks(ws_url, leader)
            # ... and the storm was still being refused meanwhile: a further 503 comes while it runs (on a loaded
            # machine the storm's own clients may be slower than the leader, so give it a bounded moment).
            async with asyncio.timeout(5):
                while statuses[503] <= refused_before:
                    assert not storm.done(), statuses
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await storm
        assert seconds < STORM_SECONDS
        # A citizen token on the staff lane is refused with 4003, storm or not.
        intruder = await staff_session(ws_url)
        await intruder.send({"t": "hello", "token": citizen})
        code, _ = await intruder.expect_close()
        Session.opened.remove(intruder)
        assert code == CloseCode.FORBIDDEN
    finally:
        stop_process(proc)
