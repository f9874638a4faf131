"""The audio scenario: a leader streaming to N listeners on one node, and glass-to-ear latency under that load.

One `jansamvad serve` process on loopback. A town hall whose leader (a lean Python client) streams audio as 24 kbit/s
Opus would (900-byte chunks every 300 ms) and speaks (partial transcripts about 4 times a second, a final sentence
every 16 words), with N citizens of which a share is in audio mode (`--shares 0.3,1.0`), held by client processes
(audio_listeners.py: ≤ CLIENTS_PER_PROC sockets each, from their own loopback source addresses) of lean raw WebSocket
clients that only count bytes (and 20 probes per mode that decode every frame: audio chunks and speech events
received, speech lag, close codes). Per share: node CPU per listener-second (from /proc), node RSS, fan-out writes per
listener-second (the node's /metrics), egress bytes per second (bytes the clients received), the probes' audio and
speech deliveries against what was sent, and 10 stalled phones per mode: closed by the node (4009), resumed with
`last_seq`, speech events lost (by seq, against a healthy probe), audio chunks missed. `--send-buffer-bytes` and
`--buffer-cap` set the node's SO_SNDBUF and --max-buffered-bytes, so the slow-consumer policy acts within the run.
`--scale` is the issue's 20k point on one node: 19,500 listeners (a process may hold 20,000 open files), 150 s.

With `--browser`, during the last share's run a second town hall on the same node gets a Chromium leader with a fake
microphone (on air) and a Chromium citizen in audio mode; per chunk the glass-to-ear latency is
    300 ms (the recorder's timeslice: a chunk's first sample waited that long in the leader's phone)
    + the leader page's send -> the citizen page's receipt (one machine, one clock)
    + the audio the citizen's player had buffered ahead of its play head at that moment (it plays after that).
The Opus encoder's own look-ahead (a few ms) and the audio output device's latency are not counted.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.audio --listeners 2000 --seconds 45 [--browser]
    PYTHONPATH=. .venv/bin/python -m loadtest.bench.audio --scale       # under the bench lock: ~8 min
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from loadtest.bench.audio_listeners import Plan, listeners_main
from loadtest.bench.procstat import cpu, loadavg, rss_kb

from jansamvad.auth import TokenService
from jansamvad.localredis import free_port
from jansamvad.protocol.roles import Role

CHUNK_BYTES, CHUNK_S = 900, 0.3
CLIENTS_PER_PROC = 8000  # listener processes hold at most this many sockets each (a process has 20,000 files)
PROBES = 20
STALLED = 10  # per mode: clients that stop reading when the leader starts
BUFFER_CAP = 65536  # the node's --max-buffered-bytes here (default 512 KiB): a stalled phone meets it within the run


def node_counters(port: int) -> tuple[int, int, int]:
    """(droppable writes skipped for slow readers, 4009 closes, fan-out writes) from the node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()

    def value(name: str) -> int:
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        return int(float(m.group(1))) if m else 0

    return (
        value("jansamvad_broadcasts_skipped_total"),
        value("jansamvad_slow_consumer_disconnects_total"),
        value("jansamvad_broadcast_writes_total"),
    )


def start_node(
    secret: str, admin_key: str, send_buffer_bytes: int = 0, buffer_cap: int = BUFFER_CAP
) -> tuple[subprocess.Popen[str], str, int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "jansamvad", "serve", "--host", "127.0.0.1", "--port", str(port), "--demo",
        "--max-connections-per-ip", "100000", "--handshakes-per-second", "100000",
        "--ip-handshakes-per-second", "1000000", "--ip-handshake-burst", "1000000", "--max-unjoined-per-ip", "1000000",
        "--joins-per-minute-per-ip", "100000", "--ping-interval", "600", "--log-level", "warning",
        "--max-buffered-bytes", str(buffer_cap), "--send-buffer-bytes", str(send_buffer_bytes),
        "--max-connections", "25000",
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
        # What keeping near the live edge cost the listener: buffer run dry (a gap heard), skips forward.
        player = citizen.evaluate("(({ stalls, jumps }) => ({ stalls, jumps }))(globalThis.jansamvadDebug.player)")
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

    out.update(
        {
            "chunks": len(totals),
            "glass_to_ear_ms": {"p50": pct(totals, 0.5), "p95": pct(totals, 0.95), "max": pct(totals, 1.0)},
            "send_to_receipt_ms": {"p50": pct(nets, 0.5), "p95": pct(nets, 0.95)},
            "buffered_ahead_ms": {"p50": pct(aheads, 0.5), "p95": pct(aheads, 0.95)},
            "player_stalls": player["stalls"],
            "player_jumps": player["jumps"],
        }
    )


# ---------------------------------------------------------------- one share


@dataclass(frozen=True)
class Options:
    """How a run is set up besides N and the seconds (each is a flag of `main`)."""

    client_procs: int = 0  # 0: one per CLIENTS_PER_PROC listeners
    stall_rcvbuf: int = 4096
    stall_s: float = 30.0
    send_buffer_bytes: int = 0  # the node's --send-buffer-bytes (0: the kernel's autotuning)
    buffer_cap: int = BUFFER_CAP  # the node's --max-buffered-bytes


def plans(port: int, tokens: TokenService, th: str, n: int, share: float, options: Options) -> list[Plan]:
    """The citizens spread over the client processes (≤ CLIENTS_PER_PROC each), the stalled phones in the first."""
    listening = int(n * share)
    procs = options.client_procs or max(1, -(-n // CLIENTS_PER_PROC))
    out = [Plan(port, group, [], stall_rcvbuf=options.stall_rcvbuf, stall_s=options.stall_s) for group in range(procs)]
    for i in range(n):
        mode = "audio" if i < listening else "captions"
        token = tokens.issue(sub=f"c-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name=f"c{i}")[0]
        probe = i < PROBES or listening <= i < listening + PROBES
        out[i % procs].citizens.append((token, mode, probe))
    for mode in ("audio", "captions") if listening < n else ("audio",):
        for i in range(STALLED):
            token = tokens.issue(sub=f"s-{mode}-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name="धीमा")[0]
            out[0].stalled.append((token, mode))
    return out


def stalled_summary(stalled: list[dict[str, Any]], probes: dict[str, Any], chunks: int) -> dict[str, Any]:
    """Per mode: what the slow-consumer policy did to the stalled phones, and speech lost after their resume."""
    out: dict[str, Any] = {}
    for phone in stalled:
        mode = phone["mode"]
        row = out.setdefault(
            mode,
            {"phones": 0, "closed_by_node": 0, "resumed": 0, "audio_received": [], "speech_lost": 0, "speech_seen": 0},
        )
        row["phones"] += 1
        # The node aborts a 4009'd socket (what it had queued is dropped), so the phone may see the cut, not the frame.
        row["closed_by_node"] += phone["close_code"] in (4009, -1)
        row["resumed"] += phone["resumed"]
        row["audio_received"].append(phone["audio_total"])
        reference = set(probes.get(mode, {}).get("speech_seqs", []))  # a healthy probe of the same mode
        row["speech_seen"] = len(reference)
        row["speech_lost"] += len(reference - set(phone["speech_seqs"]))
    for row in out.values():
        got = row.pop("audio_received")
        row["audio_received_min"], row["audio_received_max"] = min(got), max(got)
        if row["audio_received_max"]:  # audio is live only: what a phone missed is not replayed (of chunks + init)
            row["audio_missed_min"], row["audio_missed_max"] = chunks + 1 - max(got), chunks + 1 - min(got)
    return out


def pct(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(len(values) * q))]) if values else -1


async def one_share(
    port: int,
    pid: int,
    secret: str,
    th: str,
    n: int,
    share: float,
    seconds: float,
    browser: dict[str, Any] | None,
    options: Options = Options(),
) -> dict[str, Any]:
    tokens = TokenService(secret)
    counters0 = await asyncio.to_thread(node_counters, port)
    pipes, procs = [], []
    for plan in plans(port, tokens, th, n, share, options):
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.Process(target=listeners_main, args=(plan, child, seconds), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    joined = [await asyncio.to_thread(p.recv) for p in pipes]
    leader_token = tokens.issue(sub=f"l-{share}", role=Role.LEADER, th=th, ttl_s=3600, name="नेता")[0]
    rss_joined = rss_kb(pid)
    idle0, t0 = cpu(pid), time.monotonic()
    await asyncio.sleep(2)
    idle_rate = (cpu(pid) - idle0).seconds / (time.monotonic() - t0)
    ear_thread = None
    if browser is not None:
        ear_thread = threading.Thread(
            target=glass_to_ear, args=(browser["base"], secret, browser["admin_key"], seconds - 10, browser["out"])
        )
        ear_thread.start()
    for p in pipes:
        p.send("go")
    before, started = cpu(pid), time.monotonic()
    writes0 = (await asyncio.to_thread(node_counters, port))[2]
    sent = await stream(port, leader_token, seconds)
    used = cpu(pid) - before
    elapsed = time.monotonic() - started
    writes1 = (await asyncio.to_thread(node_counters, port))[2]
    rss_end = rss_kb(pid)
    for p in pipes:
        p.send("stop")
    got = [await asyncio.to_thread(p.recv) for p in pipes]
    for proc in procs:
        proc.join(30)
    if ear_thread is not None:
        ear_thread.join(120)
    skipped1, drops1, _ = await asyncio.to_thread(node_counters, port)
    net_cpu = used.seconds - idle_rate * elapsed
    received = sum(g["bytes"] for g in got)
    client_s = max(g["seconds"] for g in got)
    probes: dict[str, Any] = {}
    for g in got:
        for mode, p in g["probes"].items():
            row = probes.setdefault(mode, {"audio": [], "speech": [], "lags_ms": [], "closed": [], "speech_seqs": []})
            for key in ("audio", "speech", "lags_ms", "closed"):
                row[key] += p[key]
            row["speech_seqs"] = row["speech_seqs"] or p["speech_seqs"]
    result: dict[str, Any] = {
        "listeners": n,
        "joined": sum(j["joined"] for j in joined),
        "connect_failed": sum(j["failed"] for j in joined),
        "client_procs": len(procs),
        "audio_share": share,
        "seconds": round(elapsed, 1),
        "sent": sent,
        "node_cpu_share_of_a_core": round(used.seconds / elapsed, 3),
        "node_cpu_us_per_listener_second": round(net_cpu / elapsed / n * 1e6, 2),
        "node_rss_mb": {"joined": round(rss_joined / 1024), "end": round(rss_end / 1024)},
        "node_send_buffer_bytes": options.send_buffer_bytes,
        "node_max_buffered_bytes": options.buffer_cap,
        "writes_per_listener_s": round((writes1 - writes0) / elapsed / n, 2),
        "egress_bytes_per_s": round(received / client_s),
        "egress_bytes_per_listener_s": round(received / client_s / n),
        "probes": {},
        "stalled": stalled_summary([s for g in got for s in g["stalled"]], probes, sent["chunks"]),
        "node_broadcasts_skipped": skipped1 - counters0[0],
        "node_slow_consumer_closes": drops1 - counters0[1],
    }
    for mode, p in probes.items():
        result["probes"][mode] = {
            "audio_received_min": min(p["audio"]),
            "audio_received_max": max(p["audio"]),
            "speech_received_min": min(p["speech"]),
            "speech_received_max": max(p["speech"]),
            "speech_lag_ms": {
                "p50": pct(p["lags_ms"], 0.5),
                "p95": pct(p["lags_ms"], 0.95),
                "max": pct(p["lags_ms"], 1.0),
            },
            "closed": p["closed"],
        }
    return result


async def measure(
    listeners: int,
    seconds: float,
    shares: list[float],
    browser: bool = False,
    options: Options = Options(),
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The scenario (`make bench --scenarios audio`, `make bench-audio`): one node, one run per share, each run's
    result also handed to `report` as soon as it is in."""
    secret, admin_key = secrets.token_urlsafe(32), secrets.token_urlsafe(18)
    proc, base, port = await asyncio.to_thread(
        start_node, secret, admin_key, options.send_buffer_bytes, options.buffer_cap
    )
    out: dict[str, Any] = {"load_before": loadavg(), "runs": []}
    try:
        for i, share in enumerate(shares):
            th = await asyncio.to_thread(create_townhall, base, admin_key, f"ऑडियो {share}")
            ear: dict[str, Any] | None = None
            if browser and i == len(shares) - 1:
                ear = {"base": base, "admin_key": admin_key, "out": {}}
            result = await one_share(port, proc.pid, secret, th, listeners, share, seconds, ear, options)
            if ear is not None:
                result["glass_to_ear"] = ear["out"]
            out["runs"].append(result)
            if report is not None:
                report(result)
        out["load_after"] = loadavg()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
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


SCALE = {"listeners": 19_500, "seconds": 150.0, "send_buffer_bytes": 16_384}  # --scale: the issue's 20k on one node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--shares", default="0.3,1.0")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="the 20k point: 19,500 listeners (one node process holds < 20,000 files), 150 s per share, "
        "--send-buffer-bytes 16384; the flags below still win",
    )
    parser.add_argument("--client-procs", type=int, default=0, help=f"default: one per {CLIENTS_PER_PROC} listeners")
    parser.add_argument("--send-buffer-bytes", type=int, default=None, help="the node's SO_SNDBUF (0: autotuning)")
    parser.add_argument("--buffer-cap", type=int, default=BUFFER_CAP, help="the node's --max-buffered-bytes")
    parser.add_argument("--stall-rcvbuf", type=int, default=4096, help="the stalled phones' receive buffer")
    parser.add_argument("--stall-seconds", type=float, default=30.0, help="how long the stalled phones stop reading")
    parser.add_argument("--browser", action="store_true", help="glass-to-ear latency during the last share's run")
    parser.add_argument("--cluster", action="store_true", help="only glass to ear across 2 nodes joined by Redis")
    args = parser.parse_args()
    if args.cluster:
        print(json.dumps({"glass_to_ear_across_nodes": across_nodes(args.seconds)}), flush=True)
        return
    given = {a.lstrip("-").replace("-", "_") for a in sys.argv[1:] if a.startswith("--")}
    if args.scale:
        for name, value in SCALE.items():
            if name not in given:
                setattr(args, name, value)
    options = Options(
        args.client_procs, args.stall_rcvbuf, args.stall_seconds, args.send_buffer_bytes or 0, args.buffer_cap
    )
    shares = [float(s) for s in args.shares.split(",")]
    print(json.dumps({"load_before": loadavg(), "listeners": args.listeners, "options": vars(options)}), flush=True)
    out = asyncio.run(
        measure(
            args.listeners,
            args.seconds,
            shares,
            args.browser,
            options,
            report=lambda r: print(json.dumps(r, ensure_ascii=False), flush=True),
        )
    )
    print(json.dumps({"load_after": out.get("load_after")}), flush=True)


if __name__ == "__main__":
    if re.search(r"fork", multiprocessing.get_start_method(allow_none=True) or "fork"):
        multiprocessing.set_start_method("fork", force=True)
    main()
