"""Questions at 10,000 a minute through auto-moderation on one node: submit → ack latency. `python -m
loadtest.bench.questions [--per-minute 10000 --seconds 60]`

One node (pinned to core 0, the embedded store), many citizens on raw connections from the other core, questions
sent at an even rate (a mix of Hindi, English and Hinglish, some abusive, some with phone numbers, all different);
every question must be acknowledged. Prints one JSON object. Loopback only; bounded in count and time.
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

import msgpack
from loadtest.bench.idle import api, cpu_s
from loadtest.bench.rawclient import RawCitizen

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role

TEXTS = [
    "हमारे गाँव {n} में सड़क कब बनेगी?", "When will ward {n} get clean water?", "bijli ka bill {n} bahut zyada hai",
    "अस्पताल {n} में डॉक्टर कब आएंगे?", "tu chutiya hai {n}", "मेरा नंबर 98765{n:05d} है", "School {n} ki chhat tooti hai",
]  # fmt: skip


class Citizen(RawCitizen):
    """Measures submit → ack for the questions it was given."""

    latencies: list[float] = []
    pending: dict[int, float] = {}

    def on_message(self, message: dict[str, object]) -> None:
        re_id = message.get("re")
        if message.get("t") in ("ack", "error") and isinstance(re_id, int) and re_id in Citizen.pending:
            sent = Citizen.pending.pop(re_id)
            if message["t"] == "ack":
                Citizen.latencies.append((time.monotonic() - sent) * 1000)


async def run(port: int, pid: int, key: str, secret: str, per_minute: int, seconds: int) -> dict[str, object]:
    tokens = TokenService(secret)
    th = str(api(port, "/api/townhalls", key, {"title": "प्रश्न"})["id"])
    api(port, f"/api/townhalls/{th}/start", key, {})
    loop = asyncio.get_running_loop()
    citizens: list[Citizen] = []
    count = max(50, per_minute // 20)  # each citizen asks well under its per-minute limit
    for i in range(count):
        ready: asyncio.Future[None] = loop.create_future()
        hello = msgpack.packb(
            {
                "t": "hello",
                "token": tokens.issue(sub=f"c-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name="x", region="Patna")[0],
            }
        )
        source = f"127.0.{i // 250 % 250 + 1}.{i % 250 + 1}"
        _, proto = await loop.create_connection(lambda h=hello, r=ready: Citizen(h, r), "127.0.0.1", port,
                                                local_addr=(source, 0))  # fmt: skip
        citizens.append(proto)
        await asyncio.wait_for(ready, 10)
    total = per_minute * seconds // 60
    interval = 60.0 / per_minute
    before = cpu_s(pid)
    started = time.monotonic()
    for n in range(total):
        at = started + n * interval
        if (delay := at - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        citizen = citizens[n % count]
        Citizen.pending[n + 1] = time.monotonic()
        citizen.send({"t": "ask", "id": n + 1, "key": f"q-{n:08d}-{secrets.token_hex(3)}",
                      "text": TEXTS[n % len(TEXTS)].format(n=n)})  # fmt: skip
    deadline = time.monotonic() + 30
    while Citizen.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    used = cpu_s(pid) - before
    lat = sorted(Citizen.latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else -1.0

    return {
        "scenario": "questions",
        "per_minute": per_minute,
        "seconds": seconds,
        "sent": total,
        "acked": len(lat),
        "lost": len(Citizen.pending),
        "ack_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": round(lat[-1], 2) if lat else -1},
        "node_cpu_us_per_question": round(used / max(1, len(lat)) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-minute", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    port = 20000 + secrets.randbelow(20000)
    secret, key = secrets.token_urlsafe(32), secrets.token_urlsafe(18)
    argv = ["taskset", "-c", "0", sys.executable, "-m", "jansamvad", "serve", "--port", str(port),
            "--secret", secret, "--admin-key", key, "--log-level", "warning", "--max-connections-per-ip", "100000",
            "--ask-per-minute", "100", "--ask-per-minute-per-ip", "100000"]  # fmt: skip
    node = subprocess.Popen(argv)
    try:
        time.sleep(2)
        os.sched_setaffinity(0, {1})
        print(json.dumps(asyncio.run(run(port, node.pid, key, secret, args.per_minute, args.seconds))))
    finally:
        node.terminate()
        node.wait(30)


if __name__ == "__main__":
    main()
