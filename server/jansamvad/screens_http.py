"""HTTP side of booth screens: the screen page's short address, `/screen/<unit code>?th=<id>`.

It sends the browser on to `/screen.html?th=<id>&unit=<code>`; the screen token stays in the address's fragment
(`#token=...`), which browsers keep across a redirect and never send to a server.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from jansamvad.regions import CODE_RE
from jansamvad.regions_http import RegionDirectory, valid_unit_code


def screen_page_path(code: str, th: str, token: str) -> str:
    """The address a volunteer opens on the screen (the admin API's answer for a screen token)."""
    return f"/screen/{quote(code)}?{urlencode({'th': th})}#token={token}"


async def screen_unit(regions: RegionDirectory, code: object) -> str:
    """The unit a screen token is for: a known region unit's code, or "" (the admin API answers invalid_field)."""
    found = await regions.unit(code) if isinstance(code, str) and valid_unit_code(code) else None
    return found.code if found is not None else ""


async def _screen(request: Request) -> Response:
    code = request.path_params["code"]
    th = request.query_params.get("th", "")
    if not CODE_RE.fullmatch(code) or not th:
        return JSONResponse({"error": "invalid_field", "msg": "expected /screen/<unit code>?th=<id>"}, 400)
    return RedirectResponse("/screen.html?" + urlencode({"th": th, "unit": code}), status_code=302)


def screen_routes() -> list[Route]:
    return [Route("/screen/{code}", _screen, methods=["GET"])]
