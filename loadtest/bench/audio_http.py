"""The HTTP edge stand-in for audio: what a cache costs per listener when audio is served as segments, not pushed.

A local stand-in for a CDN edge or an HTTP cache in front of the nodes (LL-HLS / chunked-segment style): HAProxy (one
thread, C, the project's own load balancer) answers every request from memory (`http-request return ... file`, a
cache hit) with a segment of the same 24 kbit/s audio the WebSocket bench streams: `--segment-s` seconds of it
(3,000 bytes a second) plus a small playlist. N listeners on keep-alive HTTP/1.1 connections each fetch the
playlist and then the segment once per segment duration, at a random phase (listeners are not in lockstep). Per
listener-second: the edge's CPU (from /proc, as for the node) and its egress (bytes the clients received).

What it does not model: TLS (a CDN terminates it; so would the nodes' load balancer), a real CDN's larger response
headers (~300-500 bytes: date, age, etag, via), and the origin's cost (one request per segment per edge, not per
listener). The WebSocket side's TLS is not in the node's figures either.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.audio_http --listeners 4000 --seconds 60 --segment-s 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from jansamvad.localredis import free_port

from .connect import source_ip
from .procstat import cpu, loadavg, rss_kb

AUDIO_BYTES_PER_S = 3000  # 24 kbit/s, as the WebSocket scenario's 900-byte chunks every 300 ms
PLAYLIST_BYTES = 400  # an LL-HLS media playlist of a few parts
PER_PROC = 5000
MAX_LISTENERS = 9800  # HAProxy needs 2 files per connection and this process may have 20,000
CONTENT_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


def config(port: int, segment: Path, playlist: Path) -> str:
    return f"""global
    maxconn 9900
    nbthread 1
defaults
    mode http
    timeout client 60s
    timeout connect 5s
    timeout server 5s
    timeout http-keep-alive 60s
frontend edge
    bind 127.0.0.1:{port}
    acl seg path_beg /seg
    acl live path_beg /live
    http-request return status 200 content-type audio/webm file {segment} hdr cache-control max-age=1 if seg
    http-request return status 200 content-type application/vnd.apple.mpegurl file {playlist} if live
    http-request return status 404
"""


class Poller(asyncio.Protocol):
    """A listener's player: playlist, then segment, once per segment duration; counts bytes and responses."""

    def __init__(self, host: str, period: float, totals: dict[str, int]) -> None:
        self.period, self.totals = period, totals
        self.requests = [
            f"GET /live.m3u8 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
            f"GET /seg.webm HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
        ]
        self.buf, self.need, self.step = b"", -1, 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        asyncio.get_running_loop().call_later(random.uniform(0, self.period), self.fetch)

    def fetch(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.step = 0
            self.transport.write(self.requests[0])

    def data_received(self, data: bytes) -> None:
        self.totals["bytes"] += len(data)
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                length = CONTENT_LENGTH.search(self.buf[:end])
                self.need = int(length.group(1)) if length else 0
                self.buf = self.buf[end + 4 :]
            if len(self.buf) < self.need:
                return
            self.buf, self.need = self.buf[self.need :], -1
            self.totals["responses"] += 1
            self.step += 1
            if self.step == 1:
                self.transport.write(self.requests[1])
            else:
                asyncio.get_running_loop().call_later(self.period, self.fetch)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.totals["lost"] += 1


def clients_main(group: int, count: int, port: int, period: float, conn: Any) -> None:
    import socket

    import uvloop

    async def run() -> None:
        loop = asyncio.get_running_loop()
        totals = {"bytes": 0, "responses": 0, "lost": 0}
        pollers: list[Poller] = []
        for start in range(0, count, 200):
            batch = []
            for i in range(start, min(count, start + 200)):
                sock = socket.socket()
                sock.bind((source_ip(group, i), 0))
                sock.setblocking(False)
                batch.append(sock)
            await asyncio.gather(*(loop.sock_connect(s, ("127.0.0.1", port)) for s in batch))
            for sock in batch:
                poller = Poller(f"127.0.0.1:{port}", period, totals)
                await loop.create_connection(lambda poller=poller: poller, sock=sock)
                pollers.append(poller)
        await asyncio.sleep(period + 1)  # every poller is in its rhythm
        conn.send("ready")
        await loop.run_in_executor(None, conn.recv)
        b0, r0, t0 = totals["bytes"], totals["responses"], loop.time()
        await loop.run_in_executor(None, conn.recv)
        conn.send({"bytes": totals["bytes"] - b0, "responses": totals["responses"] - r0, "seconds": loop.time() - t0,
                   "lost": totals["lost"]})  # fmt: skip
        for poller in pollers:
            if poller.transport is not None:
                poller.transport.abort()
        await asyncio.sleep(0.2)

    uvloop.run(asyncio.wait_for(run(), 900))


def measure(listeners: int, seconds: float, segment_s: float) -> dict[str, Any]:
    if listeners > MAX_LISTENERS:
        raise SystemExit(f"at most {MAX_LISTENERS} listeners: the edge is one process")
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise SystemExit("haproxy is not installed (Debian package haproxy)")
    with tempfile.TemporaryDirectory() as tmp:
        segment, playlist = Path(tmp, "seg.webm"), Path(tmp, "live.m3u8")
        segment.write_bytes(random.randbytes(int(AUDIO_BYTES_PER_S * segment_s)))
        playlist.write_bytes(b"#EXTM3U\n" + b"#" * (PLAYLIST_BYTES - 8))
        port = free_port()
        cfg = Path(tmp, "edge.cfg")
        cfg.write_text(config(port, segment, playlist))
        edge = subprocess.Popen([haproxy, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1)
            if edge.poll() is not None:
                raise SystemExit(f"haproxy did not start: {edge.stderr.read().decode() if edge.stderr else ''}")
            procs, pipes = [], []
            for group in range(-(-listeners // PER_PROC)):
                count = min(PER_PROC, listeners - group * PER_PROC)
                parent, child = multiprocessing.Pipe()
                proc = multiprocessing.Process(target=clients_main, args=(group, count, port, segment_s, child))
                proc.daemon = True
                proc.start()
                procs.append(proc)
                pipes.append(parent)
            for p in pipes:
                p.recv()
            for p in pipes:
                p.send("go")
            before, started = cpu(edge.pid), time.monotonic()
            time.sleep(seconds)
            used, elapsed = (cpu(edge.pid) - before).seconds, time.monotonic() - started
            for p in pipes:
                p.send("stop")
            got = [p.recv() for p in pipes]
            edge_rss = rss_kb(edge.pid)
            for proc in procs:
                proc.join(10)
        finally:
            edge.terminate()
            edge.wait(10)
            if edge.stderr is not None:
                edge.stderr.close()
    received = sum(g["bytes"] for g in got)
    responses = sum(g["responses"] for g in got)
    return {
        "listeners": listeners,
        "segment_s": segment_s,
        "seconds": round(elapsed, 1),
        "edge": "haproxy 1 thread, http-request return from memory",
        "edge_cpu_share_of_a_core": round(used / elapsed, 3),
        "edge_cpu_us_per_listener_second": round(used / elapsed / listeners * 1e6, 2),
        "edge_cpu_us_per_response": round(used / max(1, responses) * 1e6, 2),
        "responses_per_listener_s": round(responses / elapsed / listeners, 2),
        "egress_bytes_per_listener_s": round(received / elapsed / listeners),
        "audio_bytes_per_listener_s": AUDIO_BYTES_PER_S,
        "edge_rss_mb": round(edge_rss / 1024),
        "connections_lost": sum(g["lost"] for g in got),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--segment-s", default="1,2", help="segment durations to run, seconds (comma-separated)")
    args = parser.parse_args()
    print(json.dumps({"load_before": loadavg()}), flush=True)
    for segment_s in (float(s) for s in args.segment_s.split(",")):
        print(json.dumps(measure(args.listeners, args.seconds, segment_s)), flush=True)
    print(json.dumps({"load_after": loadavg()}), flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method("fork", force=True)
    main()
