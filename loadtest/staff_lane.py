"""How long a leader waits to speak during a storm of citizen reconnects: on the staff lane, and on the citizen lane.

Starts one real node process on loopback with a small citizen handshake budget, then, for each round, a bounded storm
of citizen upgrades (at most --attempts, --seconds, from --concurrency clients each at most 100 a second) and, once
the storm is being refused, a leader who connects (staff lane: `/ws?lane=staff`; citizen lane: `/ws`, waiting
`Retry-After` after each HTTP 503), goes live and speaks. Prints the seconds from the first connect attempt to the
speech's ack, and the 503s the leader got. docs/reliability.md has the results.

    .venv/bin/python loadtest/staff_lane.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

import msgpack
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from jansamvad.auth import TokenService
from jansamvad.localredis import free_port
from jansamvad.protocol.roles import Role

SECRET = "staff-lane-bench-" + "s" * 32
ADMIN_KEY = "staff-lane-bench-admin"
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def storm(port: int, opts: argparse.Namespace, stop: asyncio.Event, statuses: Counter[int]) -> None:
    left = opts.attempts
    deadline = time.monotonic() + opts.seconds

    async def one() -> None:
        nonlocal left
        while left > 0 and not stop.is_set() and time.monotonic() < deadline:
            left -= 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(UPGRADE)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                statuses[int(head.split(b" ", 2)[1])] += 1
                writer.close()
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                statuses[0] += 1
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(opts.concurrency)))


async def leader_speaks(url: str, token: str) -> tuple[float, int]:
    started, refused = time.monotonic(), 0
    while True:
        try:
            ws = await connect(url, subprotocols=["jansamvad.v1.msgpack"], open_timeout=10)  # type: ignore[list-item]
            break
        except InvalidStatus as exc:
            refused += 1
            await asyncio.sleep(int(exc.response.headers.get("Retry-After", "1")))
    async with ws:

        async def request(message: dict[str, Any]) -> dict[str, Any]:
            await ws.send(msgpack.packb(message))
            while True:
                reply: dict[str, Any] = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
                if reply.get("re") == message.get("id") or reply["t"] == "welcome":
                    return reply

        assert (await request({"t": "hello", "token": token}))["t"] == "welcome"
        assert (await request({"t": "go_live", "id": 1}))["t"] in ("ack", "error")  # error: already live
        assert (await request({"t": "speech", "id": 2, "text": "नमस्ते"}))["t"] == "ack"
    return time.monotonic() - started, refused


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "JANSAMVAD_SECRET": SECRET, "JANSAMVAD_ADMIN_KEY": ADMIN_KEY}
    argv = [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), "--log-level", "warning"]
    node = subprocess.Popen([*argv, "--handshakes-per-second", str(opts.rate)], env=env)
    results: dict[str, list[float]] = {"staff": [], "citizen": [], "staff_503": [], "citizen_503": []}
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/townhalls",
                    data=json.dumps({"title": "storm"}).encode(),
                    headers={"Authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    th = json.load(response)["id"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        token = TokenService(SECRET).issue(sub="l-bench", role=Role.LEADER, th=th, ttl_s=3600, name="L")[0]
        for lane in ("staff", "citizen") * opts.rounds:
            stop, statuses = asyncio.Event(), Counter[int]()
            task = asyncio.create_task(storm(port, opts, stop, statuses))
            while statuses[503] < 20 and not task.done():  # the storm is being refused: the budget is spent
                await asyncio.sleep(0.05)
            path = "/ws?lane=staff" if lane == "staff" else "/ws"
            seconds, refused = await leader_speaks(f"ws://127.0.0.1:{port}{path}", token)
            stop.set()
            await task
            results[lane].append(seconds)
            results[lane + "_503"].append(refused)
            print(f"{lane}: {seconds:.3f} s, {refused} HTTP 503 for the leader; storm {dict(statuses)}", flush=True)
            await asyncio.sleep(1.5)  # the budget refills between rounds
    finally:
        node.terminate()
        node.wait(15)
    return {
        lane: {"median_s": round(statistics.median(v), 3), "max_s": round(max(v), 3)}
        | {"leader_503s": results[lane + "_503"]}
        for lane, v in results.items()
        if not lane.endswith("_503")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per lane")
    parser.add_argument("--rate", type=int, default=20, help="the node's --handshakes-per-second (citizens)")
    parser.add_argument("--attempts", type=int, default=4000, help="citizen upgrades per storm, at most")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of a storm, at most")
    parser.add_argument("--concurrency", type=int, default=20, help="storm clients (each at most 100 upgrades/s)")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=1))


if __name__ == "__main__":
    main()
