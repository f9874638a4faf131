"""The REST side of local moderators and targeted announcements (moderation/scope.py, targeting.py).

A staff token's scope (`scope` in the tokens request, checked against the region tree), the war room's announcement
to everyone or to a region subtree (`POST /api/townhalls/{th}/announce`), and the questions local moderators
forwarded, best per district (`GET /api/townhalls/{th}/forwarded`). http_app.py lends its guard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jansamvad.http_request import ApiError, json_body, text_field
from jansamvad.models import QState, Status, Townhall
from jansamvad.moderation import scope as moderation_scope
from jansamvad.protocol.messages import KEY_PATTERN
from jansamvad.protocol.roles import Role
from jansamvad.regions_http import RegionDirectory, valid_unit_code
from jansamvad.settings import Settings
from jansamvad.store.base import Store
from jansamvad.targeting import unit_path


async def token_scope(regions: RegionDirectory, role: Role, data: dict[str, Any]) -> str | None:
    """A staff token request's `scope` (a local moderator's unit, signed in as `sc`), checked against the tree;
    None when the request has none."""
    scope = data.get("scope")
    if scope is None:
        return None
    if role is not Role.MODERATOR:
        raise ApiError(400, "invalid_field", "scope: only moderator tokens have a scope")
    unit = await regions.unit(scope) if valid_unit_code(scope) else None
    if unit is None:
        raise ApiError(400, "invalid_field", "scope: no such region unit")
    return unit.code


@dataclass(frozen=True, slots=True)
class Hooks:
    """What http_app.py lends these routes."""

    require_admin: Callable[[Request], Awaitable[None]]
    require_staff_of: Callable[[Request, str], Awaitable[str]]  # returns a local moderator's scope, "" otherwise
    townhall_or_404: Callable[[str], Awaitable[Townhall]]


def scope_routes(
    settings: Settings,
    store: Store,
    regions: RegionDirectory,
    publish_event_once: Callable[[str, dict[str, Any], str], Awaitable[tuple[int, bool]]],
    hooks: Hooks,
) -> list[Route]:
    async def announce(request: Request) -> Response:
        """The war room's announcement, to everyone or (`to`) to a region subtree only (targeting.py)."""
        await hooks.require_admin(request)
        th = request.path_params["th"]
        townhall = await hooks.townhall_or_404(th)
        if townhall.status is not Status.LIVE:
            raise ApiError(409, "bad_state", "the town hall is not live")
        data = await json_body(request)
        text = text_field(data, "text", settings.limits.announce_chars, required=True)
        event: dict[str, Any] = {"t": "announce", "text": text}
        to = data.get("to")
        if to is not None:
            unit = await regions.unit(to) if valid_unit_code(to) else None
            if unit is None:
                raise ApiError(400, "invalid_field", "to: no such region unit")
            event.update(to=unit.code, to_name=unit.name_hi)
        key = data.get("key")
        if key is not None and (not isinstance(key, str) or not KEY_PATTERN.fullmatch(key)):
            raise ApiError(400, "invalid_field", "key: 8-64 characters of A-Z a-z 0-9 _ -")
        seq, dup = await publish_event_once(th, event, f"admin:{key}" if key else "")
        return JSONResponse({"seq": seq, "dup": dup}, status_code=200 if dup else 201)

    async def forwarded(request: Request) -> Response:
        """The questions local moderators forwarded, best per district (moderation/scope.py): for the leader and the
        town-hall-wide moderators; a local moderator gets those of its own subtree."""
        th = request.path_params["th"]
        scope = await hooks.require_staff_of(request, th)
        await hooks.townhall_or_404(th)
        tree = await regions.current_tree()
        questions = await store.questions(th, (QState.PENDING, QState.APPROVED))
        if scope:
            questions = [q for q in questions if moderation_scope.in_scope(scope, unit_path(tree, q.unit))]
        rows = moderation_scope.best_forwarded(questions, tree)
        return JSONResponse({"th": th, "districts": rows}, headers={"Cache-Control": "no-store"})

    return [
        Route("/api/townhalls/{th}/announce", announce, methods=["POST"]),
        Route("/api/townhalls/{th}/forwarded", forwarded, methods=["GET"]),
    ]
