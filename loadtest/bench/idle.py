"""Does a node's cost stay flat with the number of idle town halls? `python -m loadtest.bench.idle`

One node (pinned to core 0), N listeners in one live town hall, and K idle town halls with one listener each (so
each has a room, a subscription and a place in the aggregates tick on the node). For K = 0 and K = IDLE, it measures
the node's CPU per delivery of single broadcasts to the N listeners, and the node's CPU per second while nothing is
said. Prints one JSON object. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request

import msgpack
from loadtest.bench import procstat
from loadtest.bench.rawclient import RawCitizen

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role


class Listener(RawCitizen):
    """Counts the speech events it receives."""

    speeches = 0

    def on_message(self, message: dict[str, object]) -> None:
        if message.get("t") == "speech":
            Listener.speeches += 1


def cpu_s(pid: int) -> float:
    """The process's CPU seconds so far (procstat: nanosecond schedstat where the kernel has it)."""
    return procstat.cpu(pid).seconds


def api(port: int, path: str, key: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, object] = json.load(response)
        return result


async def open_listeners(
    port: int, tokens: list[str], kind: type[RawCitizen] = Listener, timeout_s: float = 60.0
) -> list[asyncio.Transport]:
    """Join one `kind` per token, 200 at a time (each batch within `timeout_s`), from addresses spread over 127/8."""
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    for start in range(0, len(tokens), 200):
        batch = tokens[start : start + 200]
        futures = [loop.create_future() for _ in batch]
        for i, (token, fut) in enumerate(zip(batch, futures, strict=True)):
            hello = msgpack.packb({"t": "hello", "token": token})
            source = f"127.0.{(start + i) // 250 % 250 + 1}.{(start + i) % 250 + 1}"
            transport, _ = await loop.create_connection(
                lambda h=hello, f=fut: kind(h, f), "127.0.0.1", port, local_addr=(source, 0)
            )
            transports.append(transport)
        await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
    return transports


async def measure(port: int, pid: int, key: str, secret: str, n: int, idle: int, rounds: int) -> dict[str, object]:
    tokens = TokenService(secret)
    th = str(api(port, "/api/townhalls", key, {"title": "मुख्य"})["id"])
    api(port, f"/api/townhalls/{th}/start", key, {})
    main = [tokens.issue(sub=f"c-{i}", role=Role.CITIZEN, th=th, ttl_s=3600)[0] for i in range(n)]
    idle_tokens = []
    for i in range(idle):
        other = str(api(port, "/api/townhalls", key, {"title": f"खाली {i}"})["id"])
        idle_tokens.append(tokens.issue(sub=f"i-{i}", role=Role.CITIZEN, th=other, ttl_s=3600)[0])
    transports = await open_listeners(port, main + idle_tokens)
    await asyncio.sleep(3)  # let joins, viewer counts and the first aggregates ticks settle
    idle_before = cpu_s(pid)
    await asyncio.sleep(10)
    idle_cpu_pct = (cpu_s(pid) - idle_before) / 10 * 100
    leader = TokenService(secret).issue(sub="l-1", role=Role.LEADER, th=th, ttl_s=3600)[0]
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["jansamvad.v1.msgpack"]) as ws:
        await ws.send(msgpack.packb({"t": "hello", "token": leader}))
        await ws.recv()
        Listener.speeches = 0
        before = cpu_s(pid)
        for r in range(rounds):
            await ws.send(msgpack.packb({"t": "speech", "id": r + 1, "text": "x" * 100}))
            deadline = time.monotonic() + 30
            while Listener.speeches < n * (r + 1) and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
        used = cpu_s(pid) - before
    delivered = Listener.speeches
    for transport in transports:
        transport.abort()
    return {
        "idle_townhalls": idle,
        "listeners": n,
        "expected": n * rounds,
        "delivered": delivered,
        "node_cpu_us_per_delivery": round(used / max(1, delivered) * 1e6, 2),
        "node_idle_cpu_pct": round(idle_cpu_pct, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = []
    for idle in (0, args.idle):
        port = 20000 + secrets.randbelow(20000)
        secret, key = secrets.token_urlsafe(32), secrets.token_urlsafe(18)
        argv = ["taskset", "-c", "0", sys.executable, "-m", "jansamvad", "serve", "--port", str(port),
                "--secret", secret, "--admin-key", key, "--log-level", "warning",
                "--max-connections-per-ip", "100000", "--handshakes-per-second", "100000",
                "--ip-handshakes-per-second", "1000000", "--ip-handshake-burst", "1000000",
                "--max-unjoined-per-ip", "1000000",
                "--max-open-townhalls", "100000", "--townhall-creates-per-minute", "100000"]  # fmt: skip
        node = subprocess.Popen(argv)
        try:
            time.sleep(2)
            os.sched_setaffinity(0, {1})
            Listener.speeches = 0
            results.append(asyncio.run(measure(port, node.pid, key, secret, args.listeners, idle, args.rounds)))
        finally:
            node.terminate()
            node.wait(30)
    print(json.dumps({"scenario": "idle_townhalls", "results": results}))


if __name__ == "__main__":
    main()
