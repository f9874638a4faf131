"""The REST API's error and the reading of request bodies, shared by http_app.py and the route modules beside it.

An ApiError raised by a route is answered by http_app.py as {"error": code, "msg": msg} with its status.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from jansamvad.protocol.text import clean_text

MAX_BODY_BYTES = 4096


class ApiError(Exception):
    def __init__(self, status: int, code: str, msg: str, retry_ms: int = 0) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.retry_ms = status, code, msg, retry_ms


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is an empty one), at most MAX_BODY_BYTES."""
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
    """A text field of a JSON body, cleaned (protocol/text.py) and at most `limit` characters."""
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
