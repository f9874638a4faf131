"""The HTTP side of the one port: health, readiness, the REST API and the static pages (Starlette)."""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from jansamvad.models import Status
from jansamvad.node import Node
from jansamvad.protocol.roles import Role
from jansamvad.protocol.text import clean_text
from jansamvad.regions import RegionTree
from jansamvad.regions_http import region_routes, valid_unit_code
from jansamvad.rollup.view import rollup_view
from jansamvad.screens_http import screen_page_path, screen_routes
from jansamvad.store.base import BadState, LimitReached, NotFound

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
MAX_BODY_BYTES = 4096
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_TTL_MAX_S = 7 * 24 * 3600


class ApiError(Exception):
    def __init__(self, status: int, code: str, msg: str, retry_ms: int = 0) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.retry_ms = status, code, msg, retry_ms


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


def _error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"error": code, "msg": msg}, status_code=status)


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


def create_app(node: Node) -> Starlette:
    settings = node.settings
    admin_key = settings.admin_key.encode()
    regions = node.regions

    def client_ip(request: Request) -> str:
        return node.client_ip(request.client.host if request.client else "", request.headers.getlist("x-forwarded-for"))

    async def limit(request: Request, what: str, per_minute: int, cost: int = 1) -> None:
        key = f"http-{what}:{client_ip(request)}"
        retry_ms = await node.limiter.hit(key, per_minute / 60.0, per_minute, cost)
        if retry_ms:
            node.metrics.rate_limited[f"http_{what}"] += 1
            raise ApiError(429, "rate_limited", f"too many requests; retry in {retry_ms} ms", retry_ms)

    def bearer(request: Request) -> str | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return credential.strip() if scheme.lower() == "bearer" else None

    async def check_admin_key(request: Request, credential: str | None) -> bool:
        """Whether `credential` is the admin key. An address that failed too often is locked out before any key is
        compared, so a right guess gets in no sooner than a wrong one; a wrong key takes a token of its bucket.
        With the Redis limiter the look, the comparison and the charge are separate round trips, so guesses sent at
        the same instant are all compared before the first is charged: a burst gets as many tries as it sends at
        once. The key has at least 16 characters (settings.py), which keeps guessing hopeless either way."""
        await limit(request, "admin-failures", ADMIN_FAILURES_PER_MINUTE, cost=0)
        # Constant-time comparison: the time taken says nothing about how much of the key was right.
        return credential is not None and hmac.compare_digest(credential.encode(), admin_key)

    async def admin_key_failed(request: Request, message: str) -> NoReturn:
        await limit(request, "admin-failures", ADMIN_FAILURES_PER_MINUTE)  # may answer 429 itself: locked out now
        raise ApiError(401, "unauthorized", message)

    async def require_admin(request: Request) -> None:
        if not await check_admin_key(request, bearer(request)):
            await admin_key_failed(request, "admin key required: Authorization: Bearer <admin key>")

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, "bad_json", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_json", "body must be a JSON object")
        return data

    def text_field(data: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
        value = data.get(name)
        if value is None:
            if required:
                raise ApiError(400, "invalid_field", f"{name}: missing")
            return ""
        if not isinstance(value, str):
            raise ApiError(400, "invalid_field", f"{name}: expected a string")
        value = clean_text(value)
        if len(value) > limit:
            raise ApiError(400, "too_long", f"{name}: longer than {limit}")
        if required and not value:
            raise ApiError(400, "invalid_field", f"{name}: must not be empty")
        return value

    async def townhall_or_404(th: str) -> Any:
        townhall = await node.store.get_townhall(th)
        if townhall is None:
            raise ApiError(404, "not_found", "no such town hall")
        return townhall

    async def list_townhalls(request: Request) -> Response:
        await require_admin(request)
        return JSONResponse([t.admin() for t in await node.store.list_townhalls()])

    async def create_townhall(request: Request) -> Response:
        await require_admin(request)
        data = await body(request)
        title = text_field(data, "title", MAX_TITLE_CHARS, required=True)
        lang = data.get("lang", "hi")
        if lang not in ("hi", "en"):
            raise ApiError(400, "invalid_field", "lang: expected hi or en")
        await limit(request, "create", settings.townhall_creates_per_minute)
        try:
            townhall = await node.store.create_townhall(title, lang, max_open=settings.max_open_townhalls)
        except LimitReached as exc:
            raise ApiError(409, "limit_reached", f"{exc}; end one first (--max-open-townhalls)") from None
        return JSONResponse(townhall.admin(), status_code=201)

    async def get_townhall(request: Request) -> Response:
        return JSONResponse((await townhall_or_404(request.path_params["th"])).public())

    async def set_status(request: Request, status: Status) -> Response:
        await require_admin(request)
        th = request.path_params["th"]
        await townhall_or_404(th)
        try:
            if status is Status.ENDED:  # closes the open polls too, as the leader's `end` does
                townhall, _ = await node.end_townhall(th, "admin")
            else:
                townhall = await node.store.set_status(th, status)
                await node.publish_event(th, {"t": "status", "status": str(status)})
        except BadState as exc:
            raise ApiError(409, "bad_state", str(exc)) from None
        return JSONResponse(townhall.admin())

    async def start_townhall(request: Request) -> Response:
        return await set_status(request, Status.LIVE)

    async def end_townhall(request: Request) -> Response:
        return await set_status(request, Status.ENDED)

    async def issue_token(request: Request) -> Response:
        await require_admin(request)
        th = request.path_params["th"]
        await townhall_or_404(th)
        data = await body(request)
        try:
            role = Role(str(data.get("role")))
        except ValueError:
            raise ApiError(400, "invalid_field", "role: expected leader, moderator or screen") from None
        if role not in (Role.LEADER, Role.MODERATOR, Role.SCREEN):
            raise ApiError(400, "invalid_field", "role: expected leader, moderator or screen")
        unit = ""
        if role is Role.SCREEN:  # a booth screen listens for one region unit (jansamvad/screens.py)
            code = data.get("unit")
            found = await regions.unit(code) if isinstance(code, str) and valid_unit_code(code) else None
            if found is None:
                raise ApiError(400, "invalid_field", "unit: a screen token needs a region unit's code")
            unit = found.code
        name = text_field(data, "name", MAX_NAME_CHARS, required=False) or str(role)
        ttl = data.get("ttl", settings.staff_token_ttl_s)
        if type(ttl) is not int or not 60 <= ttl <= _TTL_MAX_S:
            raise ApiError(400, "invalid_field", f"ttl: seconds between 60 and {_TTL_MAX_S}")
        sub = f"{role.value[0]}-" + node.tokens.citizen_subject(None)[2:]
        token, exp = node.tokens.issue(sub=sub, role=role, th=th, ttl_s=ttl, name=name, unit=unit)
        answer = {"token": token, "sub": sub, "expires_at": exp}
        if unit:
            answer["page"] = screen_page_path(unit, th, token)
        return JSONResponse(answer, status_code=201)

    async def join(request: Request) -> Response:
        # Every join mints an identity (one vote per identity): one network may only mint so many a minute.
        await limit(request, "join", settings.joins_per_minute_per_ip)
        th = request.path_params["th"]
        townhall = await townhall_or_404(th)
        if townhall.status is Status.ENDED:
            raise ApiError(409, "bad_state", "the town hall has ended")
        data = await body(request)
        name = text_field(data, "name", MAX_NAME_CHARS, required=True)
        region = text_field(data, "region", MAX_REGION_CHARS, required=False)
        device_id = data.get("device_id")
        if device_id is not None and (not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id)):
            raise ApiError(400, "invalid_field", "device_id: 8-64 characters of A-Z a-z 0-9 _ -")
        # A join link's region unit: checked against the tree and signed into the token, so nodes can trust it.
        unit_code = data.get("unit")
        unit = None
        if unit_code is not None:
            unit = await regions.unit(unit_code) if valid_unit_code(unit_code) else None
            if unit is None:
                raise ApiError(400, "invalid_field", "unit: no such region unit")
            region = unit.name_hi[:MAX_REGION_CHARS]
        sub = node.tokens.citizen_subject(device_id)
        token, exp = node.tokens.issue(
            sub=sub,
            role=Role.CITIZEN,
            th=th,
            ttl_s=settings.citizen_token_ttl_s,
            name=name,
            region=region,
            unit=unit.code if unit else "",
        )
        answer: dict[str, Any] = {"token": token, "sub": sub, "name": name, "expires_at": exp}
        if unit is not None:
            answer["unit"] = {"code": unit.code, "level": unit.level, "name_hi": unit.name_hi, "name_en": unit.name_en}
        return JSONResponse(answer, status_code=201)

    async def require_staff_of(request: Request, th: str) -> None:
        """The admin key, or a moderator's or leader's token of this town hall."""
        credential = bearer(request)
        allowed = await check_admin_key(request, credential)
        if not allowed and credential is not None:
            try:
                claims = node.tokens.verify(credential)
            except InvalidToken:
                claims = None
            allowed = claims is not None and claims.allows_townhall(th) and claims.role is not Role.CITIZEN
        if not allowed:
            await admin_key_failed(request, "the admin key, or a moderator or leader token of this town hall")

    async def region_tree_or_400(field: str) -> RegionTree:
        index = await regions.index()
        if index is None:
            raise ApiError(400, "invalid_field", f"{field}: no region tree has been imported")
        return index.tree

    async def export(request: Request) -> Response:
        th = request.path_params["th"]
        await require_staff_of(request, th)
        townhall = await townhall_or_404(th)
        by = request.query_params.get("by")
        if by is not None:  # per unit at one level of the region tree
            tree = await region_tree_or_400("by")
            if by not in tree.depth_of_level:
                raise ApiError(400, "invalid_field", f"by: one of {', '.join(tree.depth_of_level)}")
            units = await build_unit_export(node.store, node.rollup, townhall, tree, by)
            if request.query_params.get("format", "json") == "csv":
                return Response(
                    unit_export_csv(units),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="jansamvad-{th}-{by}.csv"'},
                )
            return JSONResponse(units)
        report = await build_export(node.store, townhall)
        if request.query_params.get("format", "json") == "csv":
            return Response(
                export_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="jansamvad-{th}.csv"'},
            )
        return JSONResponse(report)

    async def rollup(request: Request) -> Response:
        """The live roll-up by region unit: `?unit=<code>` drills down (none: the tree's roots and `unknown`)."""
        th = request.path_params["th"]
        await require_staff_of(request, th)
        await townhall_or_404(th)
        code = request.query_params.get("unit")
        index = await regions.index()
        tree = index.tree if index is not None else None
        unit = None
        if code is not None:
            unit = tree.get(code) if tree is not None and valid_unit_code(code) else None
            if unit is None:
                raise ApiError(404, "not_found", "no such region unit")
        view = await rollup_view(node.rollup, node.store, th, tree, unit)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    async def dashboard(request: Request) -> Response:
        """The war room's view: every town hall that is not over, with its audience and its queue; node health."""
        await require_admin(request)
        report = await war_room(node)
        return JSONResponse(report, headers={"Cache-Control": "no-store"})

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        response = _error(exc.status, exc.code, exc.msg)
        if exc.retry_ms:
            response.headers["Retry-After"] = str(max(1, -(-exc.retry_ms // 1000)))
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not_found", str(exc))

    async def invalid_token(request: Request, exc: Exception) -> Response:
        return _error(500, "internal", "this node cannot issue tokens")

    async def unavailable(request: Request, exc: Exception) -> Response:
        # The store or broker cannot answer now (Redis down, hung, failing over: RedisUnavailable is a
        # ConnectionError): a 503 that says when to come back, as the WebSocket side answers `unavailable`, not a 500.
        log.warning("HTTP %s %s: store unavailable: %s", request.method, request.url.path, exc)
        response = _error(503, "unavailable", "cannot reach the store right now; try again")
        response.headers["Retry-After"] = "1"
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.shutdown()

    routes: list[Route | Mount] = [
        *health_routes(node),
        Route("/api/townhalls", list_townhalls, methods=["GET"]),
        Route("/api/townhalls", create_townhall, methods=["POST"]),
        Route("/api/townhalls/{th}", get_townhall, methods=["GET"]),
        Route("/api/townhalls/{th}/start", start_townhall, methods=["POST"]),
        Route("/api/townhalls/{th}/end", end_townhall, methods=["POST"]),
        Route("/api/townhalls/{th}/tokens", issue_token, methods=["POST"]),
        Route("/api/townhalls/{th}/join", join, methods=["POST"]),
        Route("/api/townhalls/{th}/export", export, methods=["GET"]),
        Route("/api/townhalls/{th}/rollup", rollup, methods=["GET"]),
        Route("/api/dashboard", dashboard, methods=["GET"]),
        *region_routes(node.store, regions, limit, node.trusts, settings.public_url),
        *screen_routes(),
    ]
    if settings.static_dir.is_dir():
        routes.append(Mount("/", app=StaticFiles(directory=settings.static_dir, html=True), name="static"))
    # Pages, scripts and JSON go out gzipped: on 2G/3G the citizen page's transfer is what decides time-to-live.
    # (WebSocket upgrades never reach this app, so the broadcast path is untouched.)
    middleware = [
        Middleware(SecurityHeadersMiddleware),
        Middleware(GZipMiddleware, minimum_size=512, compresslevel=6),
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
    return Starlette(
        middleware=middleware,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            NotFound: not_found,
            InvalidToken: invalid_token,
            ConnectionError: unavailable,
            TimeoutError: unavailable,
        },
    )
