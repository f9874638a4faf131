"""HTTP routes of the region tree: unit search, a unit's join link, QR code and print sheet, and the link page.

The node keeps the tree and its search index in memory (`RegionDirectory`) and checks the store's tree version at
most every REGION_CHECK_S, so a search or a join by link costs no store round trip; an import reaches every node
within that time. All routes are public: units' names and codes are what booths show on their screens, and a link
names only what the town hall's own citizen link names. The two that render QR codes (CPU work) are rate-limited
per IP.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from jansamvad.models import Townhall
from jansamvad.region_links import (
    SHEET_PER_PAGE,
    link_page,
    link_path,
    qr_png,
    qr_svg,
    share_text,
    sheet_page,
    whatsapp_url,
)
from jansamvad.region_search import MAX_LIMIT, MAX_QUERY_CHARS, RegionIndex
from jansamvad.regions import CODE_RE, RegionTree, Unit
from jansamvad.store.base import Store

log = logging.getLogger("jansamvad.regions")

REGION_CHECK_S = 2.0
DEFAULT_LIMIT = 10
# QR images per IP a minute: a chat app's preview fetcher asks for one per link shared, from few addresses (a
# rendering costs ~5 ms of CPU; the same link again comes from a cache).
QR_PER_MINUTE = 600
SHEETS_PER_MINUTE = 30  # sheet pages per IP a minute (each renders up to SHEET_PER_PAGE QR codes)

Limit = Callable[[Request, str, int], Awaitable[None]]


class RegionDirectory:
    """This node's copy of the region tree and its search index, refreshed when the store's version changes."""

    def __init__(self, store: Store, *, check_interval_s: float = REGION_CHECK_S) -> None:
        self._store = store
        self._interval = check_interval_s
        self._checked = -math.inf
        self._version = 0
        self._index: RegionIndex | None = None
        self._lock = asyncio.Lock()

    @property
    def tree(self) -> RegionTree | None:
        """The copy loaded last (no store call): for code that cannot wait, such as the fan-out's targeting."""
        return self._index.tree if self._index is not None else None

    async def current_tree(self) -> RegionTree | None:
        """The current tree, or the copy we have when the store cannot be reached (None: none at all)."""
        try:
            index = await self.index()
        except OSError:
            return self.tree
        return index.tree if index is not None else None

    async def index(self) -> RegionIndex | None:
        if time.monotonic() - self._checked < self._interval:
            return self._index
        if self._lock.locked() and self._version:
            return self._index  # another request is loading a newer tree: answer from the one we have
        async with self._lock:
            if time.monotonic() - self._checked >= self._interval:
                try:
                    version = await self._store.region_tree_version()
                    if version != self._version:
                        tree = await self._store.region_tree()
                        # Building the index of a lakh of units takes seconds of CPU: off the event loop.
                        self._index = await asyncio.to_thread(RegionIndex, tree) if tree is not None else None
                        self._version = version
                except OSError:  # the store is unreachable (RedisUnavailable): keep answering from our copy
                    if self._index is None:
                        raise
                    log.warning("region tree: store unreachable, still using version %d", self._version)
                self._checked = time.monotonic()
        return self._index

    async def unit(self, code: str) -> Unit | None:
        index = await self.index()
        return index.tree.get(code) if index is not None else None


def unit_json(tree: RegionTree, unit: Unit) -> dict[str, Any]:
    ancestors = [tree.units[code] for code in tree.path(unit.code)[:-1]]
    return {
        "code": unit.code,
        "level": unit.level,
        "name_hi": unit.name_hi,
        "name_en": unit.name_en,
        "parent": unit.parent,
        "path": [{"code": a.code, "level": a.level, "name_hi": a.name_hi, "name_en": a.name_en} for a in ancestors],
    }


def _error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"error": code, "msg": msg}, status_code=status)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def region_routes(
    store: Store,
    directory: RegionDirectory,
    limit: Limit,
    trusts: Callable[[str], bool] = lambda peer: False,
    public_url: str = "",
) -> list[Route]:
    def _base(request: Request) -> str:
        """The origin links are made of: `--public-url` when set (links, QR codes and sheets are cached and printed,
        so they must not carry whatever Host header a client sent); else this request's, with the scheme our own load
        balancer says the client used (`X-Forwarded-Proto` from a `--trusted-proxy` only: a printed link must be the
        https one)."""
        if public_url:
            return public_url
        base = str(request.base_url).rstrip("/")
        proto = request.headers.get("x-forwarded-proto", "").strip().lower()
        if proto in ("http", "https") and request.client is not None and trusts(request.client.host):
            base = proto + base[base.index(":") :]
        return base

    async def tree_and_unit(request: Request) -> tuple[RegionTree, Unit]:
        code = request.path_params["code"]
        index = await directory.index()
        unit = index.tree.get(code) if index is not None else None
        if index is None or unit is None:
            raise _Refused(_error(404, "not_found", "no such region unit"))
        return index.tree, unit

    async def townhall_of(request: Request) -> Townhall:
        th = request.query_params.get("th", "")
        if not th:
            raise _Refused(_error(400, "invalid_field", "th: the town hall id is required"))
        townhall = await store.get_townhall(th)
        if townhall is None:
            raise _Refused(_error(404, "not_found", "no such town hall"))
        return townhall

    def refusable(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refused as refused:
                return refused.response

        return wrapped

    async def search(request: Request) -> Response:
        params = request.query_params
        q = params.get("q", "")
        level = params.get("level") or None
        within = params.get("within") or None
        if len(q) > MAX_QUERY_CHARS:
            return _error(400, "too_long", f"q: longer than {MAX_QUERY_CHARS}")
        raw_limit = params.get("limit", str(DEFAULT_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return _error(400, "invalid_field", f"limit: a whole number from 1 to {MAX_LIMIT}")
        if not q.strip() and not within:
            return _error(400, "invalid_field", "q: type at least one letter (or give within=<unit code>)")
        index = await directory.index()
        if index is None:
            return JSONResponse({"units": []})
        tree = index.tree
        if level is not None and level not in tree.depth_of_level:
            return _error(400, "invalid_field", f"level: one of {', '.join(tree.depth_of_level)}")
        if within is not None and within not in tree.units:
            return _error(400, "invalid_field", "within: no such region unit")
        units = index.search(q, level=level, within=within, limit=int(raw_limit))
        return JSONResponse({"units": [unit_json(tree, u) for u in units]}, headers={"Cache-Control": "max-age=60"})

    async def levels(request: Request) -> Response:
        index = await directory.index()
        levels = index.tree.levels if index is not None else ()
        return JSONResponse({"levels": [{"id": lv.id, "name_hi": lv.name_hi, "name_en": lv.name_en} for lv in levels]})

    async def get_unit(request: Request) -> Response:
        tree, unit = await tree_and_unit(request)
        return JSONResponse(unit_json(tree, unit))

    async def link(request: Request) -> Response:
        tree, unit = await tree_and_unit(request)
        townhall = await townhall_of(request)
        url = _base(request) + link_path(unit.code, townhall.id)
        text = share_text(tree, unit, townhall, url)
        th_query = f"?th={townhall.id}"
        return JSONResponse(
            {
                "unit": unit_json(tree, unit),
                "th": townhall.id,
                "url": url,
                "share_text": text,
                "whatsapp_url": whatsapp_url(text),
                "qr_svg": f"/api/regions/{unit.code}/qr.svg{th_query}",
                "qr_png": f"/api/regions/{unit.code}/qr.png{th_query}",
                "sheet": f"/api/regions/{unit.code}/sheet{th_query}",
            }
        )

    async def qr(request: Request) -> Response:
        if request.path_params["kind"] not in ("svg", "png"):
            return _error(404, "not_found", "QR codes are qr.svg or qr.png")
        tree, unit = await tree_and_unit(request)
        townhall = await townhall_of(request)
        await limit(request, "region-qr", QR_PER_MINUTE)
        url = _base(request) + link_path(unit.code, townhall.id)
        headers = {"Cache-Control": "public, max-age=86400"}
        if request.path_params["kind"] == "png":
            return Response(await asyncio.to_thread(qr_png, url), media_type="image/png", headers=headers)
        return Response(await asyncio.to_thread(qr_svg, url), media_type="image/svg+xml", headers=headers)

    async def sheet(request: Request) -> Response:
        # Counted first: listing the booths (a lakh under a state) is the cost, whatever `page` turns out to be.
        await limit(request, "region-sheet", SHEETS_PER_MINUTE)
        tree, unit = await tree_and_unit(request)
        townhall = await townhall_of(request)
        raw_page = request.query_params.get("page", "1")
        leaf = tree.levels[-1].id
        units = [unit] if unit.level == leaf else tree.descendants(unit.code, leaf)
        pages = max(1, -(-len(units) // SHEET_PER_PAGE))
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= pages:
            return _error(400, "invalid_field", f"page: a whole number from 1 to {pages}")
        page = int(raw_page)
        chunk = units[(page - 1) * SHEET_PER_PAGE : page * SHEET_PER_PAGE]
        html = await asyncio.to_thread(sheet_page, tree, unit, townhall, _base(request), chunk, page, pages, len(units))
        return HTMLResponse(html)

    async def join_link(request: Request) -> Response:
        tree, unit = await tree_and_unit(request)
        townhall = await townhall_of(request)
        return HTMLResponse(link_page(tree, unit, townhall, _base(request)))

    return [
        Route("/api/regions", refusable(search), methods=["GET"]),
        Route("/api/regions/levels", refusable(levels), methods=["GET"]),
        Route("/api/regions/{code}", refusable(get_unit), methods=["GET"]),
        Route("/api/regions/{code}/link", refusable(link), methods=["GET"]),
        Route("/api/regions/{code}/qr.{kind:str}", refusable(qr), methods=["GET"]),
        Route("/api/regions/{code}/sheet", refusable(sheet), methods=["GET"]),
        Route("/j/{code}", refusable(join_link), methods=["GET"]),
    ]


def valid_unit_code(value: object) -> bool:
    return isinstance(value, str) and CODE_RE.fullmatch(value) is not None
