"""The HTTP side of the one port: health, readiness, the REST API and the static pages (Starlette)."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NoReturn

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jansamvad.auth import InvalidToken
from jansamvad.dashboard import war_room
from jansamvad.export import build_export, build_unit_export, export_csv, unit_export_csv
from jansamvad.http_errors import EXCEPTION_HANDLERS
from jansamvad.http_request import ApiError, json_body, text_field
from jansamvad.models import Status, Townhall
from jansamvad.moderation import scope as moderation_scope
from jansamvad.node import Node
from jansamvad.privacy import erase_route
from jansamvad.programmes_http import Hooks as ProgrammeHooks, programme_routes
from jansamvad.protocol.roles import Role
from jansamvad.record_http import AUDIO_TYPES, record_routes
from jansamvad.regions import RegionTree
from jansamvad.regions_http import region_routes, valid_unit_code
from jansamvad.rollup.view import rollup_view
from jansamvad.scope_http import Hooks as ScopeHooks, scope_routes, token_scope
from jansamvad.screens_http import screen_page_path, screen_routes, screen_unit
from jansamvad.settings import Settings
from jansamvad.store.base import BadState, LimitReached
from jansamvad.targeting import unit_path

log = logging.getLogger("jansamvad.http")

ADMIN_FAILURES_PER_MINUTE = 10
# What the pages may load: only this origin (no CDN, no inline script); WebSockets to this host; audio from blob:
# URLs (Media Source Extensions); styles may be inline (small per-page style blocks).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_NAME_CHARS = 40
MAX_REGION_CHARS = 40
MAX_TITLE_CHARS = 120
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_TTL_MAX_S = 7 * 24 * 3600


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every HTTP response (pure ASGI: no per-request task, streaming untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def health_routes(node: Node) -> list[Route]:
    """Liveness, readiness and metrics: on the main port, and alone on `--health-port` when one is set."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def readyz(request: Request) -> Response:
        # Ready: started, not draining, and Redis reachable as a whole. One shard down or failing over does not count
        # (broker/redis.py, `healthy`); "redis_shards" [primaries, subscribed] shows it to an operator.
        ready = node.ready and node.broker.healthy
        body: dict[str, Any] = {"ready": ready, **node.stats()}
        shards = getattr(node.broker, "shards", None)
        if shards is not None:
            body["redis_shards"] = list(shards())
        return JSONResponse(body, status_code=200 if ready else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def create_health_app(node: Node) -> Starlette:
    """The app on the health port: nothing but probes and metrics (no API, no pages, no WebSockets)."""
    return Starlette(routes=health_routes(node))


def bearer(request: Request) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, if there is one."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


class Guard:
    """Who may call the REST API, and how often: per-IP rate limits, the admin key, staff tokens."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.admin_key = node.settings.admin_key.encode()

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        return self.node.client_ip(peer, request.headers.getlist("x-forwarded-for"))

    async def limit(self, request: Request, what: str, per_minute: int, cost: int = 1) -> None:
        key = f"http-{what}:{self.client_ip(request)}"
        retry_ms = await self.node.limiter.hit(key, per_minute / 60.0, per_minute, cost)
        if retry_ms:
            self.node.metrics.rate_limited[f"http_{what}"] += 1
            raise ApiError(429, "rate_limited", f"too many requests; retry in {retry_ms} ms", retry_ms)

    async def check_admin_key(self, request: Request, credential: str | None) -> bool:
        """Whether `credential` is the admin key. An address that failed too often is locked out before any key is
        compared, so a right guess gets in no sooner than a wrong one; a wrong key takes a token of its bucket.
        With the Redis limiter the look, the comparison and the charge are separate round trips, so guesses sent at
        the same instant are all compared before the first is charged: a burst gets as many tries as it sends at
        once. The key has at least 16 characters (settings.py), which keeps guessing hopeless either way."""
        await self.limit(request, "admin-failures", ADMIN_FAILURES_PER_MINUTE, cost=0)
        # Constant-time comparison: the time taken says nothing about how much of the key was right.
        return credential is not None and hmac.compare_digest(credential.encode(), self.admin_key)

    async def admin_key_failed(self, request: Request, message: str) -> NoReturn:
        await self.limit(request, "admin-failures", ADMIN_FAILURES_PER_MINUTE)  # may answer 429 itself: locked out
        raise ApiError(401, "unauthorized", message)

    async def require_admin(self, request: Request) -> None:
        if not await self.check_admin_key(request, bearer(request)):
            await self.admin_key_failed(request, "admin key required: Authorization: Bearer <admin key>")

    async def require_staff_of(self, request: Request, th: str) -> str:
        """The admin key, or a moderator's or leader's token of this town hall. Returns a local moderator's scope
        (moderation/scope.py), "" for everyone else."""
        credential = bearer(request)
        allowed = await self.check_admin_key(request, credential)
        claims = None
        if not allowed and credential is not None:
            try:
                claims = self.node.tokens.verify(credential)
            except InvalidToken:
                claims = None
            allowed = claims is not None and claims.allows_townhall(th) and claims.role is not Role.CITIZEN
        if not allowed:
            await self.admin_key_failed(request, "the admin key, or a moderator or leader token of this town hall")
        return claims.scope if claims is not None else ""


class TownhallApi:
    """The REST API of town halls (docs/protocol.md, section 7): one method per route, the node as explicit state."""

    def __init__(self, node: Node, guard: Guard) -> None:
        self.node = node
        self.guard = guard
        self.settings = node.settings

    def routes(self) -> list[Route]:
        return [
            Route("/api/townhalls", self.list_townhalls, methods=["GET"]),
            Route("/api/townhalls", self.create_townhall, methods=["POST"]),
            Route("/api/townhalls/{th}", self.get_townhall, methods=["GET"]),
            Route("/api/townhalls/{th}/start", self.start_townhall, methods=["POST"]),
            Route("/api/townhalls/{th}/end", self.end_townhall, methods=["POST"]),
            Route("/api/townhalls/{th}/tokens", self.issue_token, methods=["POST"]),
            Route("/api/townhalls/{th}/join", self.join, methods=["POST"]),
            Route("/api/townhalls/{th}/export", self.export, methods=["GET"]),
            Route("/api/townhalls/{th}/rollup", self.rollup, methods=["GET"]),
            Route("/api/dashboard", self.dashboard, methods=["GET"]),
            *scope_routes(
                self.settings, self.node.store, self.node.regions, self.node.publish_event_once, self.hooks()
            ),
        ]

    def hooks(self) -> ScopeHooks:
        return ScopeHooks(self.guard.require_admin, self.guard.require_staff_of, self.townhall_or_404)

    async def townhall_or_404(self, th: str) -> Townhall:
        townhall = await self.node.store.get_townhall(th)
        if townhall is None:
            raise ApiError(404, "not_found", "no such town hall")
        return townhall

    async def region_tree_or_400(self, field: str) -> RegionTree:
        index = await self.node.regions.index()
        if index is None:
            raise ApiError(400, "invalid_field", f"{field}: no region tree has been imported")
        return index.tree

    async def list_townhalls(self, request: Request) -> Response:
        await self.guard.require_admin(request)
        return JSONResponse([t.admin() for t in await self.node.store.list_townhalls()])

    async def create_townhall(self, request: Request) -> Response:
        await self.guard.require_admin(request)
        data = await json_body(request)
        title = text_field(data, "title", MAX_TITLE_CHARS, required=True)
        lang = data.get("lang", "hi")
        if lang not in ("hi", "en"):
            raise ApiError(400, "invalid_field", "lang: expected hi or en")
        await self.guard.limit(request, "create", self.settings.townhall_creates_per_minute)
        try:
            townhall = await self.node.store.create_townhall(title, lang, max_open=self.settings.max_open_townhalls)
        except LimitReached as exc:
            raise ApiError(409, "limit_reached", f"{exc}; end one first (--max-open-townhalls)") from None
        return JSONResponse(townhall.admin(), status_code=201)

    async def get_townhall(self, request: Request) -> Response:
        return JSONResponse((await self.townhall_or_404(request.path_params["th"])).public())

    async def start_townhall(self, request: Request) -> Response:
        return await self._set_status(request, Status.LIVE)

    async def end_townhall(self, request: Request) -> Response:
        return await self._set_status(request, Status.ENDED)

    async def _set_status(self, request: Request, status: Status) -> Response:
        await self.guard.require_admin(request)
        th = request.path_params["th"]
        await self.townhall_or_404(th)
        try:
            if status is Status.ENDED:  # closes the open polls too, as the leader's `end` does
                townhall, _ = await self.node.end_townhall(th, "admin")
            else:
                townhall = await self.node.set_status(th, status)
        except BadState as exc:
            raise ApiError(409, "bad_state", str(exc)) from None
        return JSONResponse(townhall.admin())

    async def issue_token(self, request: Request) -> Response:
        await self.guard.require_admin(request)
        th = request.path_params["th"]
        await self.townhall_or_404(th)
        data = await json_body(request)
        try:
            role = Role(str(data.get("role")))
        except ValueError:
            raise ApiError(400, "invalid_field", "role: expected leader, moderator or screen") from None
        if role not in (Role.LEADER, Role.MODERATOR, Role.SCREEN):
            raise ApiError(400, "invalid_field", "role: expected leader, moderator or screen")
        unit = await screen_unit(self.node.regions, data.get("unit")) if role is Role.SCREEN else ""
        if role is Role.SCREEN and not unit:
            raise ApiError(400, "invalid_field", "unit: a screen token needs a region unit's code")
        name = text_field(data, "name", MAX_NAME_CHARS, required=False) or str(role)
        ttl = data.get("ttl", self.settings.staff_token_ttl_s)
        if type(ttl) is not int or not 60 <= ttl <= _TTL_MAX_S:
            raise ApiError(400, "invalid_field", f"ttl: seconds between 60 and {_TTL_MAX_S}")
        scope = await token_scope(self.node.regions, role, data)  # a local moderator's unit (scope_http.py)
        tokens = self.node.tokens
        sub = f"{role.value[0]}-" + tokens.citizen_subject(None)[2:]
        token, exp = tokens.issue(sub=sub, role=role, th=th, ttl_s=ttl, name=name, scope=scope or "", unit=unit)
        answer: dict[str, Any] = {"token": token, "sub": sub, "expires_at": exp}
        if scope is not None:
            answer["scope"] = scope
        if unit:  # the booth screen's page, the token in its fragment (screens_http.py)
            answer["page"] = screen_page_path(unit, th, token)
        return JSONResponse(answer, status_code=201)

    async def join(self, request: Request) -> Response:
        # Every join mints an identity (one vote per identity): one network may only mint so many a minute.
        await self.guard.limit(request, "join", self.settings.joins_per_minute_per_ip)
        th = request.path_params["th"]
        townhall = await self.townhall_or_404(th)
        if townhall.status is Status.ENDED:
            raise ApiError(409, "bad_state", "the town hall has ended")
        data = await json_body(request)
        name = text_field(data, "name", MAX_NAME_CHARS, required=True)
        region = text_field(data, "region", MAX_REGION_CHARS, required=False)
        device_id = data.get("device_id")
        if device_id is not None and (not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id)):
            raise ApiError(400, "invalid_field", "device_id: 8-64 characters of A-Z a-z 0-9 _ -")
        # A join link's region unit: checked against the tree and signed into the token, so nodes can trust it.
        unit_code = data.get("unit")
        unit = None
        if unit_code is not None:
            unit = await self.node.regions.unit(unit_code) if valid_unit_code(unit_code) else None
            if unit is None:
                raise ApiError(400, "invalid_field", "unit: no such region unit")
            region = unit.name_hi[:MAX_REGION_CHARS]
        sub = self.node.tokens.citizen_subject(device_id)
        token, exp = self.node.tokens.issue(
            sub=sub,
            role=Role.CITIZEN,
            th=th,
            ttl_s=self.settings.citizen_token_ttl_s,
            name=name,
            region=region,
            unit=unit.code if unit else "",
        )
        answer: dict[str, Any] = {"token": token, "sub": sub, "name": name, "expires_at": exp}
        if unit is not None:
            answer["unit"] = {"code": unit.code, "level": unit.level, "name_hi": unit.name_hi, "name_en": unit.name_en}
        return JSONResponse(answer, status_code=201)

    async def export(self, request: Request) -> Response:
        th = request.path_params["th"]
        scope = await self.guard.require_staff_of(request, th)
        townhall = await self.townhall_or_404(th)
        by = request.query_params.get("by")
        as_csv = request.query_params.get("format", "json") == "csv"
        if by is not None:  # per unit at one level of the region tree
            tree = await self.region_tree_or_400("by")
            if by not in tree.depth_of_level:
                raise ApiError(400, "invalid_field", f"by: one of {', '.join(tree.depth_of_level)}")
            units = await build_unit_export(self.node.store, self.node.rollup, townhall, tree, by)
            if scope:
                units = moderation_scope.scoped_units(units, scope, tree)
            if as_csv:
                return _csv(unit_export_csv(units), f"jansamvad-{th}-{by}.csv")
            return JSONResponse(units)
        report = await build_export(self.node.store, townhall)
        if scope:
            report = moderation_scope.scoped_export(report, scope, await self.node.regions.current_tree())
        if as_csv:
            return _csv(export_csv(report), f"jansamvad-{th}.csv")
        return JSONResponse(report)

    async def rollup(self, request: Request) -> Response:
        """The live roll-up by region unit: `?unit=<code>` drills down (none: the tree's roots and `unknown`)."""
        th = request.path_params["th"]
        scope = await self.guard.require_staff_of(request, th)
        await self.townhall_or_404(th)
        code = request.query_params.get("unit")
        index = await self.node.regions.index()
        tree = index.tree if index is not None else None
        if scope:  # a local moderator's dashboard: its own subtree, from its unit down
            code = code or scope
            if not moderation_scope.in_scope(scope, unit_path(tree, code)):
                raise ApiError(403, "out_of_scope", "this unit is not within your scope")
        unit = None
        if code is not None:
            unit = tree.get(code) if tree is not None and valid_unit_code(code) else None
            if unit is None:
                raise ApiError(404, "not_found", "no such region unit")
        view = await rollup_view(self.node.rollup, self.node.store, th, tree, unit)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    async def dashboard(self, request: Request) -> Response:
        """The war room's view: every town hall that is not over, with its audience and its queue; node health."""
        await self.guard.require_admin(request)
        report = await war_room(self.node)
        return JSONResponse(report, headers={"Cache-Control": "no-store"})


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _middleware(settings: Settings) -> list[Middleware]:
    # Pages, scripts and JSON go out gzipped: on 2G/3G the citizen page's transfer is what decides time-to-live.
    # (WebSocket upgrades never reach this app, so the broadcast path is untouched.)
    middleware = [
        Middleware(SecurityHeadersMiddleware),
        # Not the record's audio (record_http.py): Opus does not compress, and a recording is megabytes of CPU.
        Middleware(GZipMiddleware, minimum_size=512, compresslevel=6, exclude_content_types=AUDIO_TYPES),
    ]
    # Browsers may call the API from the allowed origins only; with none configured, only same-origin pages may.
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    return middleware


def _lifespan(node: Node) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The node starts with the app and shuts down (drains its sessions) with it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.shutdown()

    return lifespan


def create_app(node: Node) -> Starlette:
    """The main port's app: probes, the REST API, the region pages and the static web client."""
    settings = node.settings
    guard = Guard(node)
    routes: list[Route | Mount] = [
        *health_routes(node),
        *TownhallApi(node, guard).routes(),
        *region_routes(node.store, node.regions, guard.limit, node.trusts, settings.public_url),
        *screen_routes(),
        *programme_routes(node, ProgrammeHooks(guard.check_admin_key, guard.admin_key_failed, json_body, guard.limit)),
        erase_route(node, guard.require_admin, json_body),
        *record_routes(node.records),
    ]
    if settings.static_dir.is_dir():
        routes.append(Mount("/", app=StaticFiles(directory=settings.static_dir, html=True), name="static"))
    return Starlette(
        middleware=_middleware(settings),
        routes=routes,
        lifespan=_lifespan(node),
        exception_handlers=EXCEPTION_HANDLERS,
    )
