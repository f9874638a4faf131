"""HTTP routes of programmes (issue 18): the public programme page, a programme's calendar file and facts, and the
staff API that schedules, edits and cancels programmes.

Public: `GET /programmes` (the page, server-rendered, no script: it must open on 2G), `GET /programmes/{th}.ics`,
`GET /api/programmes` and `GET /api/programmes/{th}` (the lobby reads it). The page and the list are made at most once
every PAGE_CACHE_S per language on a node, so a shared link that a whole district opens at once costs one store
read. The page itself is rendered in programmes_page.py.

Staff: scheduling a new programme creates its town hall and needs the admin key; editing or cancelling one needs the
admin key or a leader token of that town hall (a leader keeps their own programme's description and time right).
A moderator's token is refused: moderators decide questions, not the schedule.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from jansamvad.auth import InvalidToken
from jansamvad.models import Status, Townhall, now_ms
from jansamvad.programmes import (
    DEFAULT_DURATION_MIN,
    MAX_AHEAD_DAYS,
    MAX_BEHIND_DAYS,
    MAX_DESCRIPTION_CHARS,
    MAX_DURATION_MIN,
    MAX_LEADER_CHARS,
    MIN_DURATION_MIN,
    Programme,
    calendar_file,
    parse_start,
    public_json,
)
from jansamvad.programmes_page import render_page, sections
from jansamvad.protocol.roles import Role
from jansamvad.protocol.text import clean_text
from jansamvad.store.base import BadState, LimitReached

if TYPE_CHECKING:  # the node is only passed in: importing it here would make an import circle
    from jansamvad.node import Node

PAGE_CACHE_S = 5.0
RENDERED_KEYS = 16  # (page or JSON, language, origin) combinations kept
FACTS_KEYS = 4096  # (town hall, origin) combinations kept
MAX_TITLE_CHARS = 120  # as a town hall's title (http_app.MAX_TITLE_CHARS)


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the app's core lends these routes: its admin-key check (with its lockout), body reader and rate limit."""

    check_admin_key: Callable[[Request, str | None], Awaitable[bool]]
    admin_key_failed: Callable[[Request, str], Awaitable[NoReturn]]
    body: Callable[[Request], Awaitable[dict[str, Any]]]
    limit: Callable[[Request, str, int], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.response = JSONResponse({"error": code, "msg": msg}, status_code=status)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _answering(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refused as refused:
            return refused.response

    return run


def _text(data: dict[str, Any], name: str, limit: int, *, required: bool) -> str | None:
    """A cleaned text field; None when absent and not required."""
    value = data.get(name)
    if value is None:
        if required:
            raise _Refused(400, "invalid_field", f"{name}: missing")
        return None
    if not isinstance(value, str):
        raise _Refused(400, "invalid_field", f"{name}: expected a string")
    value = clean_text(value)
    if len(value) > limit:
        raise _Refused(400, "too_long", f"{name}: longer than {limit}")
    if required and not value:
        raise _Refused(400, "invalid_field", f"{name}: must not be empty")
    return value


def _start(data: dict[str, Any]) -> int | None:
    if data.get("starts_at") is None:
        return None
    try:
        starts_ms = parse_start(data["starts_at"])
    except ValueError:
        raise _Refused(
            400, "invalid_field", "starts_at: an ISO 8601 date and time, e.g. 2026-12-04T19:00+05:30"
        ) from None
    now = now_ms()
    if not now - MAX_BEHIND_DAYS * 86_400_000 <= starts_ms <= now + MAX_AHEAD_DAYS * 86_400_000:
        raise _Refused(400, "invalid_field", f"starts_at: within {MAX_BEHIND_DAYS} day back, {MAX_AHEAD_DAYS} ahead")
    return starts_ms


def _duration(data: dict[str, Any]) -> int | None:
    value = data.get("duration_min")
    if value is None:
        return None
    if type(value) is not int or not MIN_DURATION_MIN <= value <= MAX_DURATION_MIN:
        raise _Refused(400, "invalid_field", f"duration_min: minutes between {MIN_DURATION_MIN} and {MAX_DURATION_MIN}")
    return value


def programme_routes(node: Node, hooks: Hooks) -> list[Route]:
    settings = node.settings
    store = node.store
    # Rendered answers by (what, language, origin): the origin is in the share links, and without --public-url it
    # comes from the request, so one client's Host header must never end up in what others are served.
    rendered = _Rendered(RENDERED_KEYS)
    # A programme's facts by (town hall, origin): every citizen page asks once per visit, so a town hall that a whole
    # state opens at once costs one store read per node every PAGE_CACHE_S.
    facts = _Rendered(FACTS_KEYS)

    def base_of(request: Request) -> str:
        """As region links: `--public-url` when set (a calendar file and a share text outlive the request), else
        this request's origin with the scheme a trusted load balancer reports."""
        if settings.public_url:
            return settings.public_url
        base = str(request.base_url).rstrip("/")
        proto = request.headers.get("x-forwarded-proto", "").strip().lower()
        if proto in ("http", "https") and request.client is not None and node.trusts(request.client.host):
            base = proto + base[base.index(":") :]
        return base

    def bearer(request: Request) -> str | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return credential.strip() if scheme.lower() == "bearer" else None

    async def require_admin(request: Request) -> None:
        if not await hooks.check_admin_key(request, bearer(request)):
            await hooks.admin_key_failed(request, "admin key required: Authorization: Bearer <admin key>")

    async def require_leader_of(request: Request, th: str) -> str:
        """The admin key, or a leader token of this town hall; returns who (for the audit of a cancel)."""
        credential = bearer(request)
        if await hooks.check_admin_key(request, credential):
            return "admin"
        if credential is not None:
            try:
                claims = node.tokens.verify(credential)
            except InvalidToken:
                claims = None
            if claims is not None and claims.allows_townhall(th) and claims.role in (Role.LEADER, Role.ADMIN):
                return claims.sub
        await hooks.admin_key_failed(request, "the admin key, or a leader token of this town hall")

    async def townhall_or_404(th: str) -> Townhall:
        townhall = await store.get_townhall(th)
        if townhall is None:
            raise _Refused(404, "not_found", "no such town hall")
        return townhall

    async def with_programme(th: str) -> tuple[Townhall, Programme]:
        townhall, programme = await asyncio.gather(townhall_or_404(th), store.programme(th))
        if programme is None:
            raise _Refused(404, "not_found", "this town hall has no programme")
        return townhall, programme

    async def save(programme: Programme) -> None:
        try:
            await store.put_programme(programme)
        except BadState:
            raise _Refused(409, "bad_state", "the town hall has ended") from None
        rendered.clear()  # this node shows the change at once; other nodes within PAGE_CACHE_S
        facts.clear()

    # Public

    async def listed() -> list[tuple[Townhall, Programme]]:
        programmes = await store.programmes()
        townhalls = await asyncio.gather(*(store.get_townhall(p.th) for p in programmes))
        return [(t, p) for t, p in zip(townhalls, programmes, strict=True) if t is not None]

    async def list_json(request: Request) -> Response:
        base = base_of(request)

        async def make() -> str:
            groups = sections(await listed())
            body = {name: [public_json(t, p, base) for t, p in items] for name, items in groups.items()}
            return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

        body = await rendered.get(("json", base), make)
        return Response(
            body,
            media_type="application/json",
            headers={"Cache-Control": f"public, max-age={int(PAGE_CACHE_S)}"},
        )

    async def one_json(request: Request) -> Response:
        th = request.path_params["th"]
        base = base_of(request)

        async def make() -> str:
            townhall, programme = await asyncio.gather(townhall_or_404(th), store.programme(th))
            if programme is None:
                return ""
            return json.dumps(public_json(townhall, programme, base), ensure_ascii=False, separators=(",", ":"))

        body = await facts.get((th, base), make)
        if not body:
            # A town hall without a programme is the usual case, not an error: the citizen page asks on every
            # visit, and a 404 would be an error in every visitor's console.
            return Response(status_code=204, headers={"Cache-Control": "no-cache"})
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    async def ics(request: Request) -> Response:
        townhall, programme = await with_programme(request.path_params["th"])
        return Response(
            calendar_file(townhall, programme, base_of(request)),
            media_type="text/calendar; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="jansamvad-{townhall.id}.ics"',
                "Cache-Control": "no-cache",
            },
        )

    async def page(request: Request) -> Response:
        lang = "en" if request.query_params.get("lang") == "en" else "hi"
        base = base_of(request)

        async def make() -> str:
            return render_page(sections(await listed()), lang, base)

        html = await rendered.get((lang, base), make)
        return HTMLResponse(html, headers={"Cache-Control": f"public, max-age={int(PAGE_CACHE_S)}"})

    # Staff

    async def schedule(request: Request) -> Response:
        """A new programme: its town hall is created here, scheduled, with the programme's facts."""
        await require_admin(request)
        data = await hooks.body(request)
        title = _text(data, "title", MAX_TITLE_CHARS, required=True)
        lang = data.get("lang", "hi")
        if lang not in ("hi", "en"):
            raise _Refused(400, "invalid_field", "lang: expected hi or en")
        leader = _text(data, "leader", MAX_LEADER_CHARS, required=True)
        description = _text(data, "description", MAX_DESCRIPTION_CHARS, required=False) or ""
        starts_ms = _start(data)
        if starts_ms is None:
            raise _Refused(400, "invalid_field", "starts_at: missing")
        duration = _duration(data) or DEFAULT_DURATION_MIN
        await hooks.limit(request, "create", settings.townhall_creates_per_minute)
        assert title is not None and leader is not None
        try:
            townhall = await store.create_townhall(title, lang, max_open=settings.max_open_townhalls)
        except LimitReached as exc:
            raise _Refused(409, "limit_reached", f"{exc}; end one first (--max-open-townhalls)") from None
        programme = Programme(townhall.id, starts_ms, leader, description, duration)
        await save(programme)
        return JSONResponse(public_json(townhall, programme, base_of(request)), status_code=201)

    async def edit(request: Request) -> Response:
        """Change a programme's facts, or give an existing town hall its programme (then starts_at and leader are
        required). Only fields sent change."""
        th = request.path_params["th"]
        await require_leader_of(request, th)
        data = await hooks.body(request)
        unknown = set(data) - {"starts_at", "leader", "description", "duration_min"}
        if unknown:
            raise _Refused(400, "invalid_field", f"{sorted(unknown)[0]}: not a programme field")
        townhall = await townhall_or_404(th)
        if townhall.status is Status.ENDED:
            raise _Refused(409, "bad_state", "the town hall has ended")
        current = await store.programme(th)
        starts_ms = _start(data)
        leader = _text(data, "leader", MAX_LEADER_CHARS, required=current is None)
        description = _text(data, "description", MAX_DESCRIPTION_CHARS, required=False)
        duration = _duration(data)
        if current is None:
            if starts_ms is None:
                raise _Refused(400, "invalid_field", "starts_at: missing")
            assert leader is not None
            programme = Programme(th, starts_ms, leader, description or "", duration or DEFAULT_DURATION_MIN)
        else:
            if current.cancelled:
                raise _Refused(409, "bad_state", "the programme was cancelled")
            programme = current
            programme.starts_ms = current.starts_ms if starts_ms is None else starts_ms
            programme.leader = leader or current.leader
            programme.description = current.description if description is None else description
            programme.duration_min = duration or current.duration_min
            programme.version += 1
            programme.updated_ms = now_ms()
        await save(programme)
        return JSONResponse(public_json(townhall, programme, base_of(request)))

    async def cancel(request: Request) -> Response:
        """Cancel a programme that has not begun: marked cancelled, then its town hall ends (lobby sessions are
        closed with 4005, nobody can join)."""
        th = request.path_params["th"]
        by = await require_leader_of(request, th)
        townhall, programme = await with_programme(th)
        if townhall.status is not Status.SCHEDULED:
            raise _Refused(409, "bad_state", f"only a scheduled programme can be cancelled; it is {townhall.status}")
        programme.cancelled = True
        programme.version += 1
        programme.updated_ms = now_ms()
        await save(programme)
        townhall, _ = await node.end_townhall(th, by)
        rendered.clear()
        facts.clear()
        return JSONResponse(public_json(townhall, programme, base_of(request)))

    return [
        Route("/programmes", _answering(page), methods=["GET"]),
        Route("/programmes/{th}.ics", _answering(ics), methods=["GET"]),
        Route("/api/programmes", _answering(list_json), methods=["GET"]),
        Route("/api/programmes", _answering(schedule), methods=["POST"]),
        Route("/api/programmes/{th}", _answering(one_json), methods=["GET"]),
        Route("/api/programmes/{th}", _answering(edit), methods=["POST"]),
        Route("/api/programmes/{th}/cancel", _answering(cancel), methods=["POST"]),
    ]


class _Rendered:
    """Answers kept for PAGE_CACHE_S, each made once however many requests wait for it; at most `max_keys` kept (a
    client sending many Host headers or town hall ids only empties it)."""

    def __init__(self, max_keys: int) -> None:
        self._max_keys = max_keys
        self._kept: dict[tuple[str, str], tuple[float, str]] = {}
        self._making: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def get(self, key: tuple[str, str], make: Callable[[], Awaitable[str]]) -> str:
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < PAGE_CACHE_S:
            return kept[1]
        making = self._making.get(key)
        if making is not None:
            return await asyncio.shield(making)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._making[key] = future
        try:
            value = await make()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting for it
            raise
        finally:
            del self._making[key]
        future.set_result(value)
        if len(self._kept) >= self._max_keys:
            self._kept.clear()
        self._kept[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        self._kept.clear()
