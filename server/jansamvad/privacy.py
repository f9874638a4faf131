"""Erasing a citizen's questions on request (docs/privacy.md): the store, the live pages, the HTTP API and the CLI.

A citizen who asks for their questions to be deleted is identified by their `sub` (the pseudonym the moderators'
queue and the export show next to each question). The store deletes the questions whole and audits the erasure
(qids, who, why; never the text). Then every page that shows them lets go: moderators get a `queue_update`
(state `rejected`, reason `erased`) that drops a pending question from their queue, and citizens a `question` event
withdrawing a public one (state `rejected`, its text and name blanked), the same events a rejection sends, so no
client needs to learn anything new.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jansamvad.models import QState, Question
from jansamvad.protocol.records import QuestionEvent, QueueUpdate, to_map
from jansamvad.protocol.text import clean_text
from jansamvad.store.base import NotFound

if TYPE_CHECKING:  # the node is only passed in: importing it here would make an import circle
    from jansamvad.node import Node

log = logging.getLogger("jansamvad.privacy")

ERASED = "erased"  # the reason moderators' pages see
MAX_SUB_CHARS = 64
MAX_REASON_CHARS = 200


async def erase_citizen_questions(node: Node, th: str, sub: str, by: str, reason: str) -> list[Question]:
    """Delete `sub`'s questions in town hall `th` and withdraw them from every page; returns what was erased."""
    erased = await node.store.erase_questions(th, sub, by, reason)
    for q in erased:
        notice = QueueUpdate(qid=q.qid, state=str(QState.REJECTED), pinned=False, by=by, reason=ERASED)
        await node.publish_moderation(th, to_map(notice))
        if q.is_public:
            withdrawn = {**q.public(), "text": "", "name": "", "region": "", "state": str(QState.REJECTED)}
            await node.publish_event(th, to_map(QuestionEvent(q={**withdrawn, "pinned": False})))
    if erased:  # an ended town hall's record is rendered again without them (record.py)
        await node.records.invalidate(th)
    log.info("erased %d question(s) of a citizen in town hall %s, by %s", len(erased), th, by)
    return erased


def erase_route(
    node: Node,
    require_admin: Callable[[Request], Awaitable[None]],
    body: Callable[[Request], Awaitable[dict[str, Any]]],
) -> Route:
    """`POST /api/townhalls/{th}/erase` with the admin key: {"sub", "reason"} -> {"th", "erased": [qids]}."""

    def refuse(status: int, code: str, msg: str) -> Response:
        return JSONResponse({"error": code, "msg": msg}, status_code=status)

    async def erase(request: Request) -> Response:
        await require_admin(request)
        th = request.path_params["th"]
        data = await body(request)
        sub, reason = data.get("sub"), data.get("reason", "")
        if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUB_CHARS:
            return refuse(400, "invalid_field", f"sub: the citizen's id (1-{MAX_SUB_CHARS} characters)")
        if not isinstance(reason, str) or len(clean_text(reason)) > MAX_REASON_CHARS:
            return refuse(400, "invalid_field", f"reason: a string of at most {MAX_REASON_CHARS} characters")
        try:
            erased = await erase_citizen_questions(node, th, sub, "admin", clean_text(reason) or "request")
        except NotFound:
            return refuse(404, "not_found", "no such town hall")
        return JSONResponse({"th": th, "erased": [q.qid for q in erased]})

    return Route("/api/townhalls/{th}/erase", erase, methods=["POST"])


@click.command("erase")
@click.argument("townhall")
@click.option("--sub", required=True, help="The citizen's id (`sub`, as the export and the moderators' queue show).")
@click.option("--reason", default="request", show_default=True, help="Why (a request's reference); audited.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="JANSAMVAD_URL", show_envvar=True)
@click.option("--admin-key", required=True, envvar="JANSAMVAD_ADMIN_KEY", show_envvar=True, help="The admin key.")
def erase_command(townhall: str, sub: str, reason: str, url: str, admin_key: str) -> None:
    """Delete a citizen's questions in a town hall, on their request (docs/privacy.md). Through a node's API, so it
    works with either store and the live pages let go of the questions at once."""
    import json

    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/townhalls/{townhall}/erase",
        data=json.dumps({"sub": sub, "reason": reason}).encode(),
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        _fail(f"{exc.code}: {exc.read().decode(errors='replace')}")
    except urllib.error.URLError as exc:
        _fail(f"cannot reach {url}: {exc.reason}")
    erased = answer["erased"]
    click.echo(f"erased {len(erased)} question(s) in {townhall}: {' '.join(erased) or '(none)'}")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)
