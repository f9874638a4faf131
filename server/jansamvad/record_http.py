"""HTTP routes of the record (record.py): `/record/<id>` (the page), `/record/<id>.json` and
`/record/<id>/audio-<n>.<ext>`.

Every answer carries an ETag and Cache-Control, and answers `If-None-Match` with 304, so a CDN or the load balancer
serves the readers. The audio answers a single `Range` (the player asks for pieces, and seeks) and is read from the
object store piece by piece, never whole for one request.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from jansamvad.record import RecordKeeper, Rendered, StoredAudio

# An ended town hall's record changes only when a citizen's questions are deleted on request: caches keep it ten
# minutes and may serve a stale copy for a day while they fetch the new one.
RECORD_CACHE_CONTROL = "public, max-age=600, stale-while-revalidate=86400"
_AUDIO_NAME = re.compile(r"audio-[0-9]{1,4}\.(webm|ogg|m4a|mp3)")
_TH = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")

NOT_READY_PAGE = (
    '<!doctype html><html lang="hi"><head><meta charset="utf-8"><meta name="viewport" '
    'content="width=device-width, initial-scale=1"><title>रिकॉर्ड · Record</title></head><body>'
    "<p>इस जनसंवाद का रिकॉर्ड इसके समाप्त होने के बाद यहाँ मिलेगा।</p>"
    "<p>The record of this town hall appears here once it has ended.</p></body></html>"
)


AUDIO_TYPES = ("text/event-stream", "audio/webm", "audio/ogg", "audio/mp4", "audio/mpeg")  # never gzipped
AUDIO_PIECE_BYTES = 256 * 1024  # a whole recording goes out in pieces of this size, read one at a time


def _answer(request: Request, item: Rendered) -> Response:
    headers = {"ETag": item.etag, "Cache-Control": RECORD_CACHE_CONTROL}
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.content_type, headers=headers)


def _byte_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end) of a single `Range: bytes=a-b`, None without one, False when it cannot be satisfied."""
    match = _RANGE.fullmatch(header.strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:  # the last n bytes
        start, end = max(0, size - int(match.group(2))), size - 1
    return (start, end) if start < size and start <= end else False


async def _audio(request: Request, records: RecordKeeper, audio: StoredAudio) -> Response:
    headers = {"ETag": audio.etag, "Cache-Control": RECORD_CACHE_CONTROL, "Accept-Ranges": "bytes"}
    if request.headers.get("if-none-match") == audio.etag:
        return Response(status_code=304, headers=headers)
    wanted = _byte_range(request.headers.get("range", ""), audio.size)
    if wanted is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{audio.size}"})
    if isinstance(wanted, tuple):
        start, end = wanted
        body = await records.objects.read_range(audio.key, start, end) or b""
        headers["Content-Range"] = f"bytes {start}-{end}/{audio.size}"
        return Response(body, status_code=206, media_type=audio.content_type, headers=headers)
    headers["Content-Length"] = str(audio.size)
    if request.method == "HEAD":
        return Response(status_code=200, media_type=audio.content_type, headers=headers)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, audio.size, AUDIO_PIECE_BYTES):
            end = min(start + AUDIO_PIECE_BYTES, audio.size) - 1
            yield await records.objects.read_range(audio.key, start, end) or b""

    return StreamingResponse(pieces(), media_type=audio.content_type, headers=headers)


def _not_found(page: bool) -> Response:
    headers = {"Cache-Control": "no-store"}
    if page:
        return HTMLResponse(NOT_READY_PAGE, status_code=404, headers=headers)
    return Response(b'{"error":"not_found","msg":"no record (yet)"}', 404, headers, "application/json")


def record_routes(records: RecordKeeper) -> list[Route]:
    async def page(request: Request) -> Response:
        th = request.path_params["th"]
        if th.endswith(".json"):
            th, name = th[:-5], "record.json"
        else:
            name = "index.html"
        if not _TH.fullmatch(th):
            return _not_found(name == "index.html")
        item = await records.read(th, name)
        return _answer(request, item) if item is not None else _not_found(name == "index.html")

    async def audio(request: Request) -> Response:
        th, name = request.path_params["th"], request.path_params["name"]
        if not _TH.fullmatch(th) or not _AUDIO_NAME.fullmatch(name):
            return _not_found(False)
        audio = await records.audio(th, name)
        return await _audio(request, records, audio) if audio is not None else _not_found(False)

    return [
        Route("/record/{th}", page, methods=["GET", "HEAD"]),
        Route("/record/{th}/{name}", audio, methods=["GET", "HEAD"]),
    ]
