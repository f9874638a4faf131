"""The HTTP API's error answers: the exception handlers that turn `ApiError` (http_request.py) and the store's and
broker's failures into `{"error": code, "msg": text}` with a status (docs/protocol.md section 7)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jansamvad.auth import InvalidToken
from jansamvad.http_request import ApiError
from jansamvad.store.base import NotFound

log = logging.getLogger("jansamvad.http")


def error_response(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"error": code, "msg": msg}, status_code=status)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status, exc.code, exc.msg)
    if exc.retry_ms:
        response.headers["Retry-After"] = str(max(1, -(-exc.retry_ms // 1000)))
    return response


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "not_found", str(exc))


async def _invalid_token(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal", "this node cannot issue tokens")


async def _unavailable(request: Request, exc: Exception) -> Response:
    # The store or broker cannot answer now (Redis down, hung, failing over: RedisUnavailable is a
    # ConnectionError): a 503 that says when to come back, as the WebSocket side answers `unavailable`, not a 500.
    log.warning("HTTP %s %s: store unavailable: %s", request.method, request.url.path, exc)
    response = error_response(503, "unavailable", "cannot reach the store right now; try again")
    response.headers["Retry-After"] = "1"
    return response


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiError: _api_error,
    NotFound: _not_found,
    InvalidToken: _invalid_token,
    ConnectionError: _unavailable,
    TimeoutError: _unavailable,
}
