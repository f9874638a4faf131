"""The audio scenario: a leader streaming to N listeners on one node, and glass-to-ear latency under that load.

One `jansamvad serve` process on loopback. A town hall whose leader (a lean Python client) streams audio as 24 kbit/s
Opus would (900-byte chunks every 300 ms) and speaks (partial transcripts about 4 times a second, a final sentence
every 16 words), with N citizens of which a share is in audio mode (`--shares 0.3,1.0`), held by a client process of
lean raw WebSocket clients that only count bytes (and 20 probes per mode that decode every frame: audio chunks and
speech events received, close codes). Per share: node CPU per listener-second (from /proc), egress bytes per second
(bytes the clients received), the probes' audio and speech deliveries against what was sent, slow-consumer closes.

With `--browser`, during the last share's run a second town hall on the same node gets a Chromium leader with a fake
microphone (on air) and a Chromium citizen in audio mode; per chunk the glass-to-ear latency is
    300 ms (the recorder's timeslice: a chunk's first sample waited that long in the leader's phone)
    + the leader page's send -> the citizen page's receipt (one machine, one clock)
    + the audio the citizen's player had buffered ahead of its play head at that moment (it plays after that).
The Opus encoder's own look-ahead (a few ms) and the audio output device's latency are not counted.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.audio --listeners 2000 --seconds 45 [--browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import msgpack
from loadtest.bench import wire
from loadtest.bench.procstat import cpu, loadavg

from jansamvad.auth import TokenService
from jansamvad.localredis import free_port
from jansamvad.protocol.roles import Role

CHUNK_BYTES, CHUNK_S = 900, 0.3
PROBES = 20
STALLED = 10  # per mode: clients that stop reading when the leader starts
BUFFER_CAP = 65536  # the node's --max-buffered-bytes here (default 512 KiB): a stalled phone meets it within the run


def node_counters(port: int) -> tuple[int, int]:
    """(droppable writes skipped for slow readers, 4009 closes) from the node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()

    def value(name: str) -> int:
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        return int(float(m.group(1))) if m else 0

    return value("jansamvad_broadcasts_skipped_total"), value("jansamvad_slow_consumer_disconnects_total")


def start_node(secret: str, admin_key: str) -> tuple[subprocess.Popen[str], str, int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "jansamvad", "serve", "--host", "127.0.0.1", "--port", str(port), "--demo",
        "--max-connections-per-ip", "100000", "--handshakes-per-second", "100000",
        "--ip-handshakes-per-second", "1000000", "--ip-handshake-burst", "1000000", "--max-unjoined-per-ip", "1000000",
        "--joins-per-minute-per-ip", "100000", "--ping-interval", "600", "--log-level", "warning",
        "--max-buffered-bytes", str(BUFFER_CAP),
    ]  # fmt: skip
    env = {**os.environ, "JANSAMVAD_SECRET": secret, "JANSAMVAD_ADMIN_KEY": admin_key, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1):
                return proc, base, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the node did not start")


def create_townhall(base: str, admin_key: str, title: str) -> str:
    req = urllib.request.Request(
        base + "/api/townhalls",
        data=json.dumps({"title": title}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {admin_key}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return str(json.loads(r.read())["id"])


# ---------------------------------------------------------------- the listeners' process


class Counting(asyncio.Protocol):
    """A citizen that upgrades, says hello, and then only counts what it receives (a probe also decodes it)."""

    def __init__(self, hello: bytes, probe: bool, totals: dict[str, int]) -> None:
        self.hello, self.probe, self.totals = hello, probe, totals
        self.buf, self.upgraded = b"", False
        self.audio = self.speech = 0
        self.close_code = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        transport.write(wire.upgrade_request(host, port))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def data_received(self, data: bytes) -> None:
        self.totals["bytes"] += len(data)
        if not self.upgraded:
            self.buf += data
            end = self.buf.find(wire.HEAD_END)
            if end < 0:
                return
            self.upgraded, self.buf = True, self.buf[end + 4 :] if self.probe else b""
            self.transport.write(wire.client_frame(wire.OP_BINARY, self.hello))
            return
        if not self.probe:
            return
        self.buf += data
        frames, self.buf = wire.split_frames(self.buf)
        for first, payload in frames:
            if first & 0x0F == wire.OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big")
                continue
            message = msgpack.unpackb(payload)
            t = message.get("t")
            if t == "audio":
                self.audio += 1
            elif t == "speech":
                self.speech += 1


async def _stalled_client(port: int, hello: bytes, totals: dict[str, int]) -> Counting:
    """A probe with a 4 KiB receive buffer, which stops reading when the leader starts (a phone that stalls)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    _, proto = await loop.create_connection(lambda: Counting(hello, True, totals), sock=sock)
    return proto


def listeners_main(
    port: int, hellos: list[tuple[bytes, bool, str]], conn: Any, seconds: float, stalled: list[tuple[bytes, str]]
) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        totals = {"bytes": 0}
        stalls = [(await _stalled_client(port, h, {"bytes": 0}), mode) for h, mode in stalled]
        clients: list[tuple[Counting, str]] = []
        for i in range(0, len(hellos), 200):
            batch = hellos[i : i + 200]
            made = await asyncio.gather(
                *(
                    loop.create_connection(lambda h=h, p=p: Counting(h, p, totals), "127.0.0.1", port)
                    for h, p, _ in batch
                )
            )
            clients += [(proto, mode) for (_, proto), (_, _, mode) in zip(made, batch, strict=True)]
        await asyncio.sleep(2)
        conn.send("joined")
        await loop.run_in_executor(None, conn.recv)  # go: the leader starts
        for proto, _ in stalls:
            proto.transport.pause_reading()
        start_bytes = totals["bytes"]
        started = loop.time()
        await loop.run_in_executor(None, conn.recv)  # stop
        elapsed = loop.time() - started
        for proto, _ in stalls:  # read what the node queued for them: how far they got, and a close frame
            if not proto.lost:
                proto.transport.resume_reading()
        await asyncio.sleep(3)
        stalled_out: dict[str, dict[str, Any]] = {}
        for proto, mode in stalls:
            row = stalled_out.setdefault(mode, {"closed_4009": 0, "cut": 0, "open": 0, "audio": [], "speech": []})
            row["closed_4009" if proto.close_code == 4009 else "cut" if proto.lost else "open"] += 1
            row["audio"].append(proto.audio)
            row["speech"].append(proto.speech)
        probes: dict[str, list[Counting]] = {}
        for proto, mode in clients:
            if proto.probe:
                probes.setdefault(mode, []).append(proto)
        conn.send(
            {
                "bytes": totals["bytes"] - start_bytes,
                "stalled": stalled_out,
                "seconds": elapsed,
                "probes": {
                    mode: {
                        "audio": [p.audio for p in group],
                        "speech": [p.speech for p in group],
                        "closed": [p.close_code for p in group if p.close_code],
                    }
                    for mode, group in probes.items()
                },
            }
        )
        for proto, _ in clients + stalls:
            proto.transport.abort()

    asyncio.run(asyncio.wait_for(run(), seconds + 120))


# ---------------------------------------------------------------- the leader


async def stream(port: int, token: str, seconds: float) -> dict[str, int]:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws?lane=staff"
    sent = {"chunks": 0, "speech": 0}
    async with connect(url, subprotocols=["jansamvad.v1.msgpack"]) as ws:  # type: ignore[list-item]
        await ws.send(msgpack.packb({"t": "hello", "token": token}))
        reader = asyncio.get_running_loop().create_task(_discard(ws))
        await ws.send(msgpack.packb({"t": "go_live", "id": 1}))
        await ws.send(msgpack.packb({"t": "audio", "data": bytes(200), "init": True, "mime": "audio/webm"}))
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_chunk = next_word = start
        words, n = 0, 2
        while loop.time() - start < seconds:
            now = loop.time()
            if now >= next_chunk:
                await ws.send(msgpack.packb({"t": "audio", "data": os.urandom(CHUNK_BYTES)}))
                sent["chunks"] += 1
                next_chunk += CHUNK_S
            if now >= next_word:
                words += 1
                final = words == 16
                n += 1
                text = "शब्द " * words
                await ws.send(msgpack.packb({"t": "speech", "id": n, "text": text, "final": final}))
                sent["speech"] += 1
                words = 0 if final else words
                next_word += 0.25
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)
        reader.cancel()
    return sent


async def _discard(ws: Any) -> None:
    async for _ in ws:
        pass


# ---------------------------------------------------------------- glass to ear


def glass_to_ear(
    base: str, secret: str, admin_key: str, seconds: float, out: dict[str, Any], listener_base: str = ""
) -> None:
    """The leader's page on `base`, the listener's on `listener_base` (another node of a cluster) or the same."""
    from playwright.sync_api import sync_playwright
    from tests.browser.harness import launch

    th = create_townhall(base, admin_key, "कान तक")
    listener_base = listener_base or base
    tokens = TokenService(secret)
    leader_token = tokens.issue(sub="l-ear", role=Role.LEADER, th=th, ttl_s=3600, name="नेता")[0]
    with sync_playwright() as pw:
        browser = launch(pw)
        leader = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
        citizen = browser.new_context(viewport={"width": 360, "height": 740}, locale="hi-IN").new_page()
        leader.goto(f"{base}/leader.html?th={th}#token={leader_token}")
        leader.wait_for_selector("#conn[data-state=live]")
        leader.click("#go-live")
        leader.wait_for_selector("#status[data-status=live]")
        citizen.goto(f"{listener_base}/?th={th}")
        citizen.fill("#name", "श्रोता")
        citizen.click("#join-btn")
        citizen.wait_for_selector("#conn[data-state=live]")
        citizen.click("#ladder button[data-mode=audio]")
        leader.click("#onair")
        citizen.wait_for_timeout(int(seconds * 1000))
        sent = dict(leader.evaluate("globalThis.jansamvadDebug.mic.sentAt"))
        timeline = citizen.evaluate("globalThis.jansamvadDebug.player.timeline")
        totals, nets, aheads = [], [], []
        for entry in timeline:
            at_sent = sent.get(entry["n"])
            if at_sent is None or entry["ahead"] is None:
                continue  # the init chunk, or before playback started
            net = entry["at"] - at_sent
            nets.append(net)
            aheads.append(entry["ahead"] * 1000)
            totals.append(CHUNK_S * 1000 + net + entry["ahead"] * 1000)
        browser.close()

    def pct(values: list[float], q: float) -> float:
        return round(sorted(values)[min(len(values) - 1, int(len(values) * q))]) if values else -1

    out.update(
        {
            "chunks": len(totals),
            "glass_to_ear_ms": {"p50": pct(totals, 0.5), "p95": pct(totals, 0.95), "max": pct(totals, 1.0)},
            "send_to_receipt_ms": {"p50": pct(nets, 0.5), "p95": pct(nets, 0.95)},
            "buffered_ahead_ms": {"p50": pct(aheads, 0.5), "p95": pct(aheads, 0.95)},
        }
    )


# ---------------------------------------------------------------- one share


async def one_share(
    port: int, pid: int, secret: str, th: str, n: int, share: float, seconds: float, browser: dict[str, Any] | None
) -> dict[str, Any]:
    tokens = TokenService(secret)
    hellos = []
    listening = int(n * share)
    for i in range(n):
        mode = "audio" if i < listening else "captions"
        token = tokens.issue(sub=f"c-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name=f"c{i}")[0]
        hello = msgpack.packb({"t": "hello", "token": token, "mode": mode})
        probe = i < PROBES or listening <= i < listening + PROBES
        hellos.append((hello, probe, mode))
    stalled = []
    for mode in ("audio", "captions") if listening < n else ("audio",):
        for i in range(STALLED):
            token = tokens.issue(sub=f"s-{mode}-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name="धीमा")[0]
            stalled.append((msgpack.packb({"t": "hello", "token": token, "mode": mode}), mode))
    skipped0, drops0 = await asyncio.to_thread(node_counters, port)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=listeners_main, args=(port, hellos, child, seconds, stalled), daemon=True)
    proc.start()
    parent.recv()  # joined
    leader_token = tokens.issue(sub=f"l-{share}", role=Role.LEADER, th=th, ttl_s=3600, name="नेता")[0]
    idle0, t0 = cpu(pid), time.monotonic()
    await asyncio.sleep(2)
    idle_rate = (cpu(pid) - idle0).seconds / (time.monotonic() - t0)
    ear_thread = None
    if browser is not None:
        ear_thread = threading.Thread(
            target=glass_to_ear, args=(browser["base"], secret, browser["admin_key"], seconds - 10, browser["out"])
        )
        ear_thread.start()
    parent.send("go")
    before, started = cpu(pid), time.monotonic()
    sent = await stream(port, leader_token, seconds)
    used = cpu(pid) - before
    elapsed = time.monotonic() - started
    parent.send("stop")
    got = parent.recv()
    proc.join(30)
    if ear_thread is not None:
        ear_thread.join(120)
    skipped1, drops1 = await asyncio.to_thread(node_counters, port)
    net_cpu = used.seconds - idle_rate * elapsed
    result: dict[str, Any] = {
        "listeners": n,
        "audio_share": share,
        "seconds": round(elapsed, 1),
        "sent": sent,
        "node_cpu_share_of_a_core": round(used.seconds / elapsed, 3),
        "node_cpu_us_per_listener_second": round(net_cpu / elapsed / n * 1e6, 2),
        "egress_bytes_per_s": round(got["bytes"] / got["seconds"]),
        "egress_bytes_per_listener_s": round(got["bytes"] / got["seconds"] / n),
        "probes": {},
        "stalled": got["stalled"],
        "node_broadcasts_skipped": skipped1 - skipped0,
        "node_slow_consumer_closes": drops1 - drops0,
    }
    for mode, p in got["probes"].items():
        result["probes"][mode] = {
            "audio_received_min": min(p["audio"]),
            "audio_received_max": max(p["audio"]),
            "speech_received_min": min(p["speech"]),
            "speech_received_max": max(p["speech"]),
            "closed": p["closed"],
        }
    return result


async def measure(listeners: int, seconds: float, shares: list[float], browser: bool = False) -> dict[str, Any]:
    """The scenario as `make bench` runs it (`--scenarios audio`): one node, one run per share."""
    secret, admin_key = secrets.token_urlsafe(32), secrets.token_urlsafe(18)
    proc, base, port = await asyncio.to_thread(start_node, secret, admin_key)
    out: dict[str, Any] = {"load_before": loadavg(), "runs": []}
    try:
        for i, share in enumerate(shares):
            th = await asyncio.to_thread(create_townhall, base, admin_key, f"ऑडियो {share}")
            ear: dict[str, Any] | None = None
            if browser and i == len(shares) - 1:
                ear = {"base": base, "admin_key": admin_key, "out": {}}
            result = await one_share(port, proc.pid, secret, th, listeners, share, seconds, ear)
            if ear is not None:
                result["glass_to_ear"] = ear["out"]
            out["runs"].append(result)
        out["load_after"] = loadavg()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def across_nodes(seconds: float) -> dict[str, Any]:
    """Glass to ear with the leader on one node and the listener on another, joined by Redis (`--cluster`)."""
    from jansamvad.cluster import LocalCluster

    cluster = LocalCluster(nodes=2, redis="standalone", balancer=False)
    cluster.start()
    try:
        out: dict[str, Any] = {"nodes": 2, "redis": "standalone valkey"}
        a, b = cluster.node_procs
        glass_to_ear(a.url, cluster.secret, cluster.admin_key, seconds, out, listener_base=b.url)
        return out
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--shares", default="0.3,1.0")
    parser.add_argument("--browser", action="store_true", help="glass-to-ear latency during the last share's run")
    parser.add_argument("--cluster", action="store_true", help="only glass to ear across 2 nodes joined by Redis")
    args = parser.parse_args()
    if args.cluster:
        print(json.dumps({"glass_to_ear_across_nodes": across_nodes(args.seconds)}), flush=True)
        return
    secret, admin_key = secrets.token_urlsafe(32), secrets.token_urlsafe(18)
    proc, base, port = start_node(secret, admin_key)
    try:
        print(json.dumps({"load_before": loadavg()}), flush=True)
        shares = [float(s) for s in args.shares.split(",")]
        for i, share in enumerate(shares):
            th = create_townhall(base, admin_key, f"ऑडियो {share}")
            ear: dict[str, Any] | None = None
            if args.browser and i == len(shares) - 1:
                ear = {"base": base, "admin_key": admin_key, "out": {}}
            result = asyncio.run(one_share(port, proc.pid, secret, th, args.listeners, share, args.seconds, ear))
            if ear is not None:
                result["glass_to_ear"] = ear["out"]
            print(json.dumps(result, ensure_ascii=False), flush=True)
        print(json.dumps({"load_after": loadavg()}), flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    if re.search(r"fork", multiprocessing.get_start_method(allow_none=True) or "fork"):
        multiprocessing.set_start_method("fork", force=True)
    main()
