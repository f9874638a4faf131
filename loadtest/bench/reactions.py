"""Reaction taps across two nodes: however many taps, a listener gets one `reactions` message per aggregates tick.
`python -m loadtest.bench.reactions [--connections 600 --seconds 20]`

Two nodes joined by Redis (jansamvad.cluster.LocalCluster), tapping citizens split over both, sending `react`
frames as fast as this machine allows (many frames per write); one listener on each node counts the `reactions`
frames it receives and checks the final totals against the taps sent. Prints one JSON object. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import msgpack
from loadtest.bench import wire
from loadtest.bench.idle import api
from loadtest.bench.rawclient import RawCitizen

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role

TAP = wire.message_frame({"t": "react", "kind": "clap"})


class Watcher(RawCitizen):
    frames = 0
    last: dict[str, int] = {}

    def on_message(self, message: dict[str, object]) -> None:
        if message.get("t") == "reactions":
            Watcher.frames += 1
            counts = message.get("c")
            if isinstance(counts, dict):
                Watcher.last = {str(k): int(v) for k, v in counts.items()}


async def run(cluster: LocalCluster, connections: int, seconds: int, rate: int) -> dict[str, object]:
    tokens = TokenService(cluster.secret)
    th = cluster.create_townhall("तालियाँ")
    api(cluster.node_procs[0].port, f"/api/townhalls/{th}/start", cluster.admin_key, {})
    loop = asyncio.get_running_loop()

    async def join(port: int, sub: str, kind: type[RawCitizen]) -> RawCitizen:
        ready: asyncio.Future[None] = loop.create_future()
        hello = msgpack.packb({"t": "hello", "token": tokens.issue(sub=sub, role=Role.CITIZEN, th=th, ttl_s=3600)[0]})
        i = abs(hash(sub)) % 60000
        source = (f"127.1.{i // 250 % 250 + 1}.{i % 250 + 1}", 0)
        _, proto = await loop.create_connection(lambda: kind(hello, ready), "127.0.0.1", port, local_addr=source)
        await asyncio.wait_for(ready, 10)
        return proto

    watchers = [await join(node.port, f"w-{node.index}", Watcher) for node in cluster.node_procs]
    tappers = [
        await join(cluster.node_procs[i % len(cluster.node_procs)].port, f"t-{i}", RawCitizen)
        for i in range(connections)
    ]
    await asyncio.sleep(1.5)
    Watcher.frames = 0
    sent = 0
    started = time.monotonic()
    # An even rate, 100 slices a second; each slice's taps are spread over the tappers, several frames per write.
    per_slice = max(1, rate // 100)
    per_tapper = max(1, per_slice // connections)
    burst = TAP * per_tapper
    slice_no = 0
    while time.monotonic() - started < seconds:
        for k in range(max(1, per_slice // per_tapper)):
            tappers[(slice_no * 7 + k) % connections].transport.write(burst)
            sent += per_tapper
        slice_no += 1
        if (delay := started + slice_no / 100 - time.monotonic()) > 0:
            await asyncio.sleep(delay)
    elapsed = time.monotonic() - started
    await asyncio.sleep(4)  # the last taps reach the store and the totals go out
    for proto in (*watchers, *tappers):
        proto.transport.abort()
    return {
        "scenario": "reactions",
        "nodes": len(cluster.node_procs),
        "tappers": connections,
        "taps_sent": sent,
        "taps_per_s": round(sent / elapsed),
        "counted_total": Watcher.last.get("clap", 0),
        "reaction_frames_per_listener_per_s": round(Watcher.frames / len(watchers) / (elapsed + 4), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=600)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=100_000, help="taps per second, all tappers together")
    args = parser.parse_args()
    extra = ["--max-connections-per-ip", "100000", "--citizen-messages-per-second", "100000"]
    cluster = LocalCluster(nodes=2, redis="standalone", balancer=False, extra_args=extra)
    cluster.start()
    try:
        print(json.dumps(asyncio.run(run(cluster, args.connections, args.seconds, args.rate))))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
