"""Bytes per minute of a typical town hall on the citizen page, per rung of the data ladder (docs/benchmarks.md).

One `jansamvad serve --demo` node on loopback; a scripted town hall driven from Python for `--seconds` (default 60):
the leader's partial transcripts 4 times a second and a final sentence every 4 s, audio chunks of the size 24 kbit/s
Opus gives (900 bytes every 300 ms), 20 bot citizens who ask, upvote and react (so viewers, votes and reactions
change every second), a moderator who approves a question every 10 s. Three headless Chromium citizen pages, one per
rung (audio + captions, captions only, text-light), count every WebSocket frame Chromium's network layer reports
(CDP `Network.webSocketFrameReceived`: payload plus the 2 or 4 bytes of frame header). Then a fourth page on a
throttled 2G link (20 kbit/s, 600 ms) that chose audio: which rung it ends on, and how late the final sentences
reach it.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.ladder [--seconds 60]

Needs /usr/bin/chromium and playwright (the dev extra), like tests/browser.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import secrets
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from tests.browser.harness import Server, demo_server, join_as_citizen, launch
from websockets.asyncio.client import connect

CHUNK_BYTES = 900  # 24 kbit/s x 300 ms
CHUNK_S = 0.3
MODES = ("audio", "captions", "light")
TWO_G = {"offline": False, "latency": 600, "downloadThroughput": 20_000 / 8, "uploadThroughput": 16_000 / 8}
SENTENCES = [
    "आज हम गाँव की सड़कों के बारे में बात करेंगे और यह भी कि बारिश से पहले क्या होगा।",
    "बिजली की आपूर्ति अगले महीने से हर पंचायत में बारह घंटे से बढ़कर अठारह घंटे होगी।",
    "स्कूलों में शिक्षकों की भर्ती की प्रक्रिया इसी सत्र में पूरी कर ली जाएगी।",
    "किसानों के लिए नई बीमा योजना में पंजीकरण की अंतिम तिथि बढ़ा दी गई है।",
]


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).fragment)["token"][0]


def townhall_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["th"][0]


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        result: dict[str, Any] = json.loads(r.read())
        return result


class Ws:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 1

    @classmethod
    async def join(cls, base: str, token: str, staff: bool = False) -> Ws:
        url = base.replace("http://", "ws://") + "/ws" + ("?lane=staff" if staff else "")
        ws = await connect(url, subprotocols=["jansamvad.v1.msgpack"], max_size=2**22)  # type: ignore[list-item]
        self = cls(ws)
        await self.send({"t": "hello", "token": token, "mode": "captions"})
        self.reader = asyncio.get_running_loop().create_task(self._drain())
        return self

    async def _drain(self) -> None:
        self.seen: list[dict[str, Any]] = []
        async for data in self.ws:
            message = msgpack.unpackb(data)
            if message.get("t") in ("ack", "queue_add"):
                self.seen.append(message)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(message, use_bin_type=True))

    async def request(self, message: dict[str, Any]) -> None:
        self.next_id += 1
        await self.send({**message, "id": self.next_id})


async def town_hall(server: Server, seconds: float, stop: threading.Event) -> dict[str, int]:
    """The scripted town hall; returns what it sent."""
    base, th = server.base, townhall_of(server.links["citizen"])
    leader = await Ws.join(base, token_of(server.links["leader"]), staff=True)
    moderator = await Ws.join(base, token_of(server.links["moderator"]), staff=True)
    await leader.request({"t": "go_live"})
    bots = []
    for i in range(20):
        joined = await asyncio.to_thread(post, f"{base}/api/townhalls/{th}/join", {"name": f"बॉट {i}"})
        bots.append(await Ws.join(base, joined["token"]))
    sent = {"partials": 0, "finals": 0, "chunks": 0, "questions": 0, "approved": 0}
    for i, bot in enumerate(bots):
        await bot.request({"t": "ask", "key": secrets.token_hex(8), "text": f"प्रश्न {i}: हमारे इलाके में पानी कब आएगा?"})
        sent["questions"] += 1
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_chunk = next_partial = start
    next_tick = start + 1
    sentence, words = 0, 0
    await leader.send({"t": "audio", "data": b"\x1aE\xdf\xa3" + bytes(200), "init": True, "mime": "audio/webm"})
    qids: list[str] = []
    while loop.time() - start < seconds and not stop.is_set():
        now = loop.time()
        if now >= next_chunk:
            await leader.send({"t": "audio", "data": random.randbytes(CHUNK_BYTES)})
            sent["chunks"] += 1
            next_chunk += CHUNK_S
        if now >= next_partial:
            text = SENTENCES[sentence % len(SENTENCES)].split()
            words += 1
            final = words >= len(text) or words >= 16
            await leader.request({"t": "speech", "text": " ".join(text[:words]), "final": final})
            sent["finals" if final else "partials"] += 1
            if final:
                sentence, words = sentence + 1, 0
            next_partial += 0.25
        if now >= next_tick:
            second = int(now - start)
            for bot in random.sample(bots, 5):
                await bot.send({"t": "react", "kind": random.choice(["clap", "heart", "thumbs_up"])})
            if qids:
                for bot in random.sample(bots, 3):
                    await bot.request({"t": "upvote", "qid": random.choice(qids), "key": secrets.token_hex(8)})
            if second % 10 == 0:
                pending = [m["q"]["qid"] for m in moderator.seen if m.get("t") == "queue_add"]
                todo = [q for q in pending if q not in qids]
                if todo:
                    await moderator.request({"t": "moderate", "qid": todo[0], "action": "approve"})
                    qids.append(todo[0])
                    sent["approved"] += 1
            next_tick += 1
        await asyncio.sleep(0.01)
    for ws in [leader, moderator, *bots]:
        await ws.ws.close()
    return sent


class Counter:
    def __init__(self, page: Any) -> None:
        self.bytes = 0
        self.by_type: dict[str, int] = {}
        self.finals: list[tuple[float, int]] = []  # (receipt time, ts of the final sentence)
        self.counting = False
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")
        self.cdp = cdp

    def _frame(self, event: dict[str, Any]) -> None:
        if not self.counting:
            return
        response = event["response"]
        raw = base64.b64decode(response["payloadData"]) if response["opcode"] == 2 else b""
        size = len(raw) + (2 if len(raw) < 126 else 4)
        self.bytes += size
        t = msgpack.unpackb(raw).get("t", "?") if raw else "?"
        self.by_type[t] = self.by_type.get(t, 0) + size
        if t == "speech":
            message = msgpack.unpackb(raw)
            if message.get("final"):
                # CDP's timestamp is Chromium's monotonic clock, CLOCK_MONOTONIC on Linux like time.monotonic().
                wall = event["timestamp"] + time.time() - time.monotonic()
                self.finals.append((wall, message.get("ts", 0)))


def measure(seconds: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="jansamvad-ladder-"))
    with demo_server(tmp / "node.log") as server, sync_playwright() as pw:
        browser = launch(pw)
        pages: dict[str, Any] = {}
        counters: dict[str, Counter] = {}
        for mode in (*MODES, "2g"):
            ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="hi-IN")
            page = ctx.new_page()
            join_as_citizen(page, server.links["citizen"], name=f"माप {mode}")
            counters[mode] = Counter(page)
            pages[mode] = page
        stop = threading.Event()
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.update(asyncio.run(town_hall(server, seconds, stop))))
        runner.start()
        time.sleep(2)  # the leader is live and on air
        for mode, page in pages.items():
            page.click(f"#ladder button[data-mode={'audio' if mode == '2g' else mode}]")
        time.sleep(1)
        counters["2g"].cdp.send("Network.emulateNetworkConditions", TWO_G)
        for counter in counters.values():
            counter.counting = True
        started = time.monotonic()
        deadline = started + seconds + 30
        while runner.is_alive() and time.monotonic() < deadline:
            pages["audio"].wait_for_timeout(250)  # sync Playwright hands CDP events over only while it is called
        elapsed = time.monotonic() - started
        stop.set()
        for page in pages.values():
            page.wait_for_timeout(100)
        out: dict[str, Any] = {"seconds": round(elapsed, 1), "sent": result}
        for mode, counter in counters.items():
            per_min = counter.bytes * 60 / elapsed / 1000
            out[mode] = {
                "kb_per_min": round(per_min, 1),
                "audio_vs_bitrate": round(counter.by_type.get("audio", 0) / elapsed / (CHUNK_BYTES / CHUNK_S), 3),
                "by_type_kb_per_min": {
                    t: round(b * 60 / elapsed / 1000, 1) for t, b in sorted(counter.by_type.items())
                },
                "final_mode": pages[mode].evaluate("document.body.dataset.mode"),
                "finals": len(counter.finals),
            }
            if counter.finals:
                lags = sorted(at * 1000 - ts for at, ts in counter.finals)
                out[mode]["final_lag_ms_p50"] = round(lags[len(lags) // 2])
                out[mode]["final_lag_ms_max"] = round(lags[-1])
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
