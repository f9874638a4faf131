"""The few REST calls a load test needs before it starts (docs/protocol.md, section 7), on the standard library.

Used by the launcher (a plain process) and by the locustfile's init hook (under gevent, where urllib is cooperative).
Citizens join through locust's own HTTP client instead, so their joins show in the statistics.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Hall:
    """A town hall ready for a load test: its id and a token per staff role."""

    th: str
    leader_token: str
    moderator_token: str  # one token per moderator, comma-separated (JWTs have no commas)
    screen_token: str = ""  # one token per booth screen, comma-separated


def call(base_url: str, method: str, path: str, body: dict[str, Any] | None = None, *, admin_key: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if admin_key:
        request.add_header("authorization", f"Bearer {admin_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise ApiError(f"{method} {path}: HTTP {exc.code} {detail}") from None


def create_hall(
    base_url: str,
    admin_key: str,
    title: str,
    moderators: int = 1,
    screen_units: Sequence[str] = (),
    moderator_scopes: Sequence[str] = (),
) -> Hall:
    """A new town hall, live, with a leader token, a token per moderator (scoped to the units in `moderator_scopes`,
    in order; "" or none: the whole town hall) and one per booth screen (of the units given); the admin key never
    reaches the users.

    Each moderator gets an identity of its own, so their claims on questions keep them apart as they keep people apart.
    """
    th = call(base_url, "POST", "/api/townhalls", {"title": title, "lang": "hi"}, admin_key=admin_key)["id"]

    def token(role: str, name: str, unit: str = "", scope: str = "") -> str:
        body = {"role": role, "name": name, **({"unit": unit} if unit else {}), **({"scope": scope} if scope else {})}
        value: str = call(base_url, "POST", f"/api/townhalls/{th}/tokens", body, admin_key=admin_key)["token"]
        return value

    leader = token("leader", "लोड नेता")
    scopes = [*moderator_scopes, *[""] * max(1, moderators)][: max(1, moderators)]
    staff = ",".join(token("moderator", f"लोड मॉडरेटर {i + 1}", scope=scope) for i, scope in enumerate(scopes))
    screens = ",".join(token("screen", f"लोड स्क्रीन {unit}", unit) for unit in screen_units)
    call(base_url, "POST", f"/api/townhalls/{th}/start", admin_key=admin_key)
    return Hall(th, leader, staff, screens)


def wait_ready(base_url: str, timeout_s: float) -> None:
    """Poll /readyz until the node takes traffic; ApiError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ApiError(f"{base_url} not ready after {timeout_s:g} s: {last}")
