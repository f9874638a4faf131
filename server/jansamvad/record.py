"""The record of an ended town hall (docs/protocol.md section 7, `/record/<id>`): the whole transcript with times,
the announcements, every answered question with its votes and the moment it was answered, the poll results, the
reach by region (where a region tree is used) and the leader's audio recording.

It is rendered once, when the town hall ends, into the object store (`recording_store/`): `record/<id>/index.html`
(a static page, no script), `record/<id>/record.json` and one `record/<id>/audio-<n>.<ext>` per take of the
recording (audio_recorder.py). The HTTP routes (record_http.py) serve those bytes with an ETag and Cache-Control, so
a CDN or the load balancer answers a million readers from its cache. A record asked for before it was rendered (the
node that ended the town hall died first) is rendered then, once.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from jansamvad.audio_recorder import takes
from jansamvad.export import build_unit_export
from jansamvad.journal.base import Journal
from jansamvad.models import PollState, QState, Question, Status, Townhall
from jansamvad.recording_store.base import ObjectStore
from jansamvad.regions_http import RegionDirectory
from jansamvad.rollup.base import Rollup
from jansamvad.store.base import Store

log = logging.getLogger("jansamvad.record")

# How long the node that ended a town hall waits before rendering its record: every node writes the audio it still
# holds when it sees the `status ended` event (a publication, so within milliseconds; a segment write well under this).
RECORD_SETTLE_S = 2.0
RENDERED_CACHE = 64  # records kept rendered in a node's memory (the page; audio files are read from the store)
# How long a node serves its in-memory copy before reading the store again: a record rendered anew elsewhere (after
# an erasure on request) reaches every node's readers within this (and caches in front within their max-age).
RENDERED_TTL_S = 60.0
_AUDIO_EXT = {"audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/mpeg": "mp3"}


def record_prefix(th: str) -> str:
    return f"record/{th}/"


def audio_ext(mime: str) -> str:
    return _AUDIO_EXT.get(mime.split(";")[0].strip().lower(), "webm")


def _answered_at(q: Question) -> int:
    return max((d.ts for d in q.decisions if d.action == "answer"), default=q.ts)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: str
    content_type: str


@dataclass(frozen=True, slots=True)
class StoredAudio:
    """A take of the recording in the object store, served in pieces (never read whole for one request)."""

    key: str
    size: int
    etag: str  # of its key and size: an audio file is written once, at the render, and never changed
    content_type: str


def rendered(body: bytes, content_type: str) -> Rendered:
    return Rendered(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', content_type)


class RecordKeeper:
    """Renders records into the object store and serves them, each rendered once per town hall."""

    def __init__(
        self,
        *,
        store: Store,
        journal: Journal,
        objects: ObjectStore,
        rollup: Rollup,
        regions: RegionDirectory,
    ) -> None:
        self.store = store
        self.journal = journal
        self.objects = objects
        self.rollup = rollup
        self.regions = regions
        self.renders = 0
        self._rendering: dict[str, asyncio.Task[None]] = {}
        self._later: set[asyncio.Task[None]] = set()
        self._cache: dict[str, tuple[Rendered, float]] = {}  # object key -> (page or JSON, when read)

    def render_after_end(self, th: str) -> None:
        """Called on the node that ended the town hall: render the record RECORD_SETTLE_S later, in the background."""
        task = asyncio.get_running_loop().create_task(self._render_later(th))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _render_later(self, th: str) -> None:
        await asyncio.sleep(RECORD_SETTLE_S)
        try:
            await self.ensure(th)
        except Exception as exc:  # the first request for it renders it then
            log.warning("could not render the record of %s: %s", th, exc or type(exc).__name__)

    async def close(self) -> None:
        """Stop pending renders (a node going down; the first request for such a record renders it)."""
        for task in list(self._later):
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)

    async def ensure(self, th: str) -> bool:
        """Render the record unless it exists. False when the town hall does not exist or has not ended."""
        if await self.objects.get(record_prefix(th) + "record.json") is not None:
            return True
        townhall = await self.store.get_townhall(th)
        if townhall is None or townhall.status is not Status.ENDED:
            return False
        task = self._rendering.get(th)
        if task is None:
            task = self._rendering[th] = asyncio.get_running_loop().create_task(self._render(townhall))
            task.add_done_callback(lambda _: self._rendering.pop(th, None))
        await asyncio.shield(task)
        return True

    async def invalidate(self, th: str) -> None:
        """Forget the rendered record (after a citizen's questions were deleted on request): the next request for it
        renders it again from what is stored then. The audio files stay. Other nodes' in-memory copies of the page
        go within RENDERED_TTL_S, caches in front after their max-age."""
        for name in ("index.html", "record.json"):
            self._cache.pop(record_prefix(th) + name, None)
            await self.objects.delete(record_prefix(th) + name)

    async def audio(self, th: str, name: str) -> StoredAudio | None:
        """A take of the recording (`audio-<n>.<ext>`), rendering the record first if needed."""
        key = record_prefix(th) + name
        size = await self.objects.size(key)
        if size is None and await self.objects.get(record_prefix(th) + "record.json") is None and await self.ensure(th):
            size = await self.objects.size(key)
        if size is None:
            return None
        etag = '"' + hashlib.sha256(f"{key}:{size}".encode()).hexdigest()[:32] + '"'
        content_type = next((m for m, e in _AUDIO_EXT.items() if name.endswith("." + e)), "audio/webm")
        return StoredAudio(key, size, etag, content_type)

    async def read(self, th: str, name: str) -> Rendered | None:
        """The page (`index.html`) or `record.json` of a record, rendering the record if needed."""
        key = record_prefix(th) + name
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[1] < RENDERED_TTL_S:
            return cached[0]
        data = await self.objects.get(key)
        if data is None and name in ("index.html", "record.json") and await self.ensure(th):
            data = await self.objects.get(key)
        if data is None:
            return None
        result = rendered(data, "text/html; charset=utf-8" if name.endswith(".html") else "application/json")
        self._cache.pop(key, None)
        self._cache[key] = (result, time.monotonic())
        while len(self._cache) > RENDERED_CACHE:
            self._cache.pop(next(iter(self._cache)))
        return result

    async def _render(self, townhall: Townhall) -> None:
        th = townhall.id
        if await self.objects.get(record_prefix(th) + "record.json") is not None:
            return  # rendered meanwhile (by a request that checked just before the last render finished)
        # Asked for right after the end: give every node the time to write the audio it held (RECORD_SETTLE_S).
        last = await self.journal.read(th, "notice", 1)
        if last and last[0].event.get("status") == "ended":
            wait = RECORD_SETTLE_S - (time.time() * 1000 - int(last[0].event.get("ts", 0))) / 1000
            if wait > 0:
                await asyncio.sleep(wait)
        record = await self.build(townhall)
        prefix = record_prefix(th)
        for take in record["audio"]:  # written before the page that links them
            await self.objects.put(prefix + take["file"], take.pop("_data"), take["mime"])
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        await self.objects.put(prefix + "record.json", body, "application/json")
        await self.objects.put(prefix + "index.html", render_html(record).encode(), "text/html; charset=utf-8")
        self.renders += 1
        log.info("record of %s rendered: %d lines, %d audio takes", th, len(record["transcript"]), len(record["audio"]))

    async def build(self, townhall: Townhall) -> dict[str, Any]:
        th = townhall.id
        speech = await self.journal.read(th, "speech")
        notices = await self.journal.read(th, "notice")
        # An announcement to one region unit (targeting.py) was for its subtree only: the public record leaves it out,
        # as the "what you missed" digest does.
        lines = sorted([*speech, *(e for e in notices if not e.event.get("to"))], key=lambda e: e.seq)
        transcript = [
            {
                "seq": e.seq,
                "t": e.event["t"],
                "text": str(e.event.get("text", e.event.get("status", ""))),
                "ts": int(e.event.get("ts", 0)),
            }
            for e in lines
        ]
        started = next((x["ts"] for x in transcript if x["t"] == "status" and x["text"] == "live"), 0)
        ended = next((x["ts"] for x in reversed(transcript) if x["t"] == "status" and x["text"] == "ended"), 0)
        answered = sorted(await self.store.questions(th, (QState.ANSWERED,)), key=_answered_at)
        polls = await self.store.polls(th, (PollState.CLOSED, PollState.OPEN))
        audio: list[dict[str, Any]] = []
        for n, (_, keys) in enumerate(await takes(self.objects, th), start=1):
            parts = [await self.objects.get(key) for key in keys]
            data = b"".join(p for p in parts if p)
            if data:
                mime = "audio/webm"
                audio.append({"file": f"audio-{n}.{audio_ext(mime)}", "mime": mime, "bytes": len(data), "_data": data})
        return {
            "townhall": townhall.public(),
            "started": started,
            "ended": ended,
            "rendered": int(time.time() * 1000),
            "transcript": transcript,
            "answered": [
                {
                    "qid": q.qid,
                    "text": q.text,
                    "name": q.name,
                    "region": q.region,
                    "votes": q.votes,
                    "asked": q.ts,
                    "answered": _answered_at(q),
                }
                for q in answered
            ],
            "polls": [p.public() for p in polls],
            "reach": await self._reach(townhall),
            "audio": audio,
        }

    async def _reach(self, townhall: Townhall) -> dict[str, Any] | None:
        """Sessions that joined (the roll-up's `joins`), per unit of the first level with more than one unit."""
        try:
            index = await self.regions.index()
        except OSError:
            return None
        if index is None:
            return None
        tree = index.tree
        levels = [level.id for level in tree.levels]
        level = next((lv for lv in levels if sum(1 for u in tree.units.values() if u.level == lv) > 1), levels[0])
        report = await build_unit_export(self.store, self.rollup, townhall, tree, level)
        units = [
            {"code": u["code"], "name_hi": u["name_hi"], "name_en": u["name_en"], "joins": u["joins"]}
            for u in report["units"]
            if u["joins"] > 0
        ]
        if not units:
            return None
        level_info = next(lv for lv in tree.levels if lv.id == level)
        return {"level": level, "level_hi": level_info.name_hi, "level_en": level_info.name_en, "units": units}


# The page: static HTML, Hindi first with English beside it, no script (the CSP allows none inline anyway).

_STYLE = """
body{font-family:system-ui,'Noto Sans Devanagari',sans-serif;margin:0;background:#f6f7f9;color:#1b1f24;line-height:1.5}
main{max-width:760px;margin:0 auto;padding:12px}
header{background:#0f3d6e;color:#fff;padding:12px}
header h1{margin:0;font-size:1.3rem}
section{background:#fff;border-radius:8px;padding:10px 12px;margin:10px 0}
h2{font-size:1.05rem;margin:0 0 6px}
small,.en{color:#5b6470}
ol,ul{padding-left:1.2em;margin:0}
li{margin:4px 0}
time{color:#5b6470;font-size:.85em;margin-right:6px}
li.announce{font-weight:600}
audio{width:100%}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #e3e6ea}
"""


def _clock(ts: int) -> str:
    """Indian Standard Time (UTC+5:30), shown as such: the record is read in India."""
    if not ts:
        return ""
    return time.strftime("%H:%M:%S", time.gmtime(ts / 1000 + 5.5 * 3600))


def _day(ts: int) -> str:
    return time.strftime("%d.%m.%Y", time.gmtime(ts / 1000 + 5.5 * 3600)) if ts else ""


def render_html(record: dict[str, Any]) -> str:
    e = html.escape
    townhall = record["townhall"]
    parts = [
        "<!doctype html>",
        f'<html lang="hi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
        f'initial-scale=1"><title>{e(townhall["title"])} · रिकॉर्ड · Record</title><style>{_STYLE}</style></head>',
        '<body class="record">',
        f'<header><p>जनसंवाद · रिकॉर्ड <span class="en">Record</span></p><h1 id="title">{e(townhall["title"])}</h1>',
        f"<p>{_day(record['started'])} · {_clock(record['started'])}–{_clock(record['ended'])} IST</p></header><main>",
    ]
    parts.append('<section id="recording"><h2>रिकॉर्डिंग <span class="en">Recording</span></h2>')
    if record["audio"]:
        for take in record["audio"]:
            parts.append(
                f'<audio controls preload="metadata" src="/record/{e(townhall["id"])}/{e(take["file"])}"></audio>'
            )
    else:
        parts.append("<p>इस जनसंवाद की ऑडियो रिकॉर्डिंग नहीं है। <span class='en'>No audio was recorded.</span></p>")
    parts.append("</section>")
    parts.append(
        f'<section id="answered"><h2>जिन प्रश्नों के उत्तर दिए गए <span class="en">Questions answered</span> '
        f"({len(record['answered'])})</h2><ol>"
    )
    for q in record["answered"]:
        parts.append(
            f'<li data-qid="{e(q["qid"])}"><time>{_clock(q["answered"])}</time>{e(q["text"])} '
            f"<small>— {e(q['name'])}{' · ' + e(q['region']) if q['region'] else ''} · "
            f"{q['votes']} वोट votes</small></li>"
        )
    parts.append("</ol></section>")
    if record["polls"]:
        parts.append('<section id="polls"><h2>मतदान के परिणाम <span class="en">Poll results</span></h2>')
        for poll in record["polls"]:
            total = sum(poll["counts"]) or 1
            parts.append(f"<h3>{e(poll['question'])}</h3><ul>")
            for option, count in zip(poll["options"], poll["counts"], strict=False):
                parts.append(f"<li>{e(option)}: {count} ({round(100 * count / total)}%)</li>")
            parts.append("</ul>")
        parts.append("</section>")
    reach = record["reach"]
    if reach:
        parts.append(
            f'<section id="reach"><h2>कहाँ तक पहुँचा <span class="en">Reach</span> · {e(reach["level_hi"])} '
            f'<span class="en">{e(reach["level_en"])}</span></h2><table><tr><th>{e(reach["level_hi"])}</th>'
            "<th>जुड़े लोग <span class='en'>joined</span></th></tr>"
        )
        for unit in reach["units"]:
            parts.append(
                f"<tr><td>{e(unit['name_hi'])} <small>{e(unit['name_en'])}</small></td><td>{unit['joins']}</td></tr>"
            )
        parts.append("</table></section>")
    parts.append('<section id="transcript"><h2>पूरा भाषण <span class="en">Transcript</span></h2><ol>')
    status_words = {"live": "लाइव शुरू · live", "ended": "समाप्त · ended", "scheduled": "निर्धारित · scheduled"}
    for line in record["transcript"]:
        text = status_words.get(line["text"], line["text"]) if line["t"] == "status" else line["text"]
        parts.append(f'<li class="{e(line["t"])}"><time>{_clock(line["ts"])}</time>{e(text)}</li>')
    parts.append("</ol></section>")
    parts.append(
        f"<p><small>समय भारतीय मानक समय (IST) में। <a href='/record/{e(townhall['id'])}.json'>JSON</a></small></p>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts)
