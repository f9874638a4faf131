"""A client worker process: holds up to ~19k citizen connections and answers the orchestrator's commands.

Commands arrive as JSON lines on stdin and each gets one JSON line on stdout (logs go to stderr):

  open      {host, port, secret, th, count, group, concurrency, timeout}  open and join `count` more citizens
  wait      {seq, timeout}     until every joined connection here has received event `seq`
  collect   {reset}            counts per seq, worst latency per seq, latency histogram, gaps, duplicates, closes
  close     {}                 close every connection (close frame, then drop the socket)
  exit      {}

The process ends by itself on `exit`, when stdin closes (the orchestrator is gone) or after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import uvloop

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role

from . import wire
from .children import stdin_commands
from .conn import BenchConn, Recorder
from .connect import open_many, source_ip
from .procstat import rss_kb


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.recorder = Recorder()
        self.conns: list[BenchConn] = []
        self.opened = 0  # connections opened so far: the next one's source address slot

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.pop("op")
        if op == "open":
            return await self.open(**cmd)
        if op == "wait":
            ok = await self.recorder.wait_for(int(cmd["seq"]), float(cmd["timeout"]))
            return {"ok": ok, "joined": self.recorder.open_joined}
        if op == "collect":
            return self.collect(bool(cmd.get("reset", True)))
        if op == "close":
            return await self.close()
        raise ValueError(f"unknown op {op!r}")

    async def open(
        self, host: str, port: int, secret: str, th: str, count: int, concurrency: int, timeout: float
    ) -> dict[str, Any]:
        tokens = TokenService(secret)
        first = self.opened
        self.opened += count
        hellos = [
            wire.message_frame(
                {
                    "t": "hello",
                    "token": tokens.issue(
                        sub=f"c-bench-{self.index}-{first + i}", role=Role.CITIZEN, th=th, ttl_s=7200, name="नागरिक"
                    )[0],
                }
            )
            for i in range(count)
        ]
        ips = [source_ip(self.index, first + i) for i in range(count)]
        request = wire.upgrade_request(host, port)
        recorder = self.recorder

        def factory(i: int, joined: asyncio.Future[dict[str, Any]]) -> BenchConn:
            return BenchConn(request, hellos[i], recorder, joined)

        result = await open_many(count, factory, host, port, ips, concurrency=concurrency, timeout=timeout)
        self.conns.extend(result.conns)
        return {
            "joined": len(result.conns),
            "failed": dict(result.failed),
            "retries": result.retries,
            "started_ns": result.started_ns,
            "finished_ns": result.finished_ns,
            "connect_ms": sorted(result.connect_ms),
            "open_joined": self.recorder.open_joined,
            "client_rss_kb": rss_kb(os.getpid()),
        }

    def collect(self, reset: bool) -> dict[str, Any]:
        r = self.recorder
        out = {
            "counts": r.counts,
            "max_lat_ns": r.max_lat_ns,
            "min_lat_ns": r.min_lat_ns,
            "hist": r.hist,
            "gaps": r.gaps,
            "dups": r.dups,
            "bad_frames": r.bad_frames,
            "other": dict(r.other),
            "closes": dict(r.closes),
            "open_joined": r.open_joined,
        }
        if reset:
            r.reset()
        return out

    async def close(self) -> dict[str, Any]:
        conns, self.conns = self.conns, []
        for conn in conns:
            conn.close()
        await asyncio.sleep(0.2)  # let the transports finish closing
        return {"closed": len(conns), "open_joined": self.recorder.open_joined}


async def serve(index: int, lifetime: float) -> None:
    worker = Worker(index)
    async for cmd in stdin_commands(lifetime, limit=1 << 24, name=f"worker {index}"):
        try:
            reply = await worker.handle(cmd)
        except Exception as exc:  # report, do not die: the orchestrator decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=int, required=True, help="worker number: picks its source address block")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="exit after this many seconds regardless")
    args = parser.parse_args()
    uvloop.run(serve(args.index, args.lifetime))


if __name__ == "__main__":
    main()
