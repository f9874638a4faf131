"""The few REST calls a load test needs before it starts (docs/protocol.md, section 7), on the standard library.

Used by the launcher (a plain process) and by the locustfile's init hook (under gevent, where urllib is cooperative).
Citizens join through locust's own HTTP client instead, so their joins show in the statistics.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Hall:
    """A town hall ready for a load test: its id and a token per staff role."""

    th: str
    leader_token: str
    moderator_token: str


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


def create_hall(base_url: str, admin_key: str, title: str) -> Hall:
    """A new town hall, live, with a leader and a moderator token (the admin key never reaches the users)."""
    th = call(base_url, "POST", "/api/townhalls", {"title": title, "lang": "hi"}, admin_key=admin_key)["id"]
    tokens = {
        role: call(base_url, "POST", f"/api/townhalls/{th}/tokens", {"role": role, "name": name}, admin_key=admin_key)[
            "token"
        ]
        for role, name in (("leader", "लोड नेता"), ("moderator", "लोड मॉडरेटर"))
    }
    call(base_url, "POST", f"/api/townhalls/{th}/start", admin_key=admin_key)
    return Hall(th, tokens["leader"], tokens["moderator"])


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
