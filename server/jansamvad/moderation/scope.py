"""Local moderators: a moderator token scoped to a region unit (claim `sc`) sees and decides only the questions asked
from that unit's subtree, and forwards the ones it approves of up to the parent level's queue.

A question belongs to the asker's unit (`ru`, stored with it); one with no unit belongs to the root scope, which only
town-hall-wide moderators (no scope), leaders and admins see. Every action of a scoped moderator on a question
(`moderate`, `claim`, `release`) and on a citizen (`restrict`: the citizen must have asked a question in the scope)
is checked here on the node, and refused with `error out_of_scope` otherwise (docs/protocol.md, section 6.1).

Forwarding (`moderate` action `forward`) keeps the question's state and records, as a decision, the scope it went
up to: the parent of the forwarder's unit, or ROOT_SCOPE above the top level (the town-hall-wide queue, the leader's
"best questions per district"). A question already at or above that level cannot be forwarded again by this
moderator (`bad_state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jansamvad.auth import Claims
from jansamvad.channels import MODERATION_SEQ
from jansamvad.models import QState, Question
from jansamvad.protocol.codes import ErrorCode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.regions import RegionTree
from jansamvad.targeting import (
    Targeted,
    UnitIndex,
    filler,
    in_scope as in_scope,  # re-exported: the scope rule, for the node and the HTTP API
    unit_path,
)

if TYPE_CHECKING:
    from jansamvad.hub import Room
    from jansamvad.store.base import Store

ROOT_SCOPE = "*"  # `forward`'s target above the top level: the town-hall-wide queue (root moderators, the leader)


def scope_of(claims: Claims | None) -> str:
    """The unit a session may moderate; "" for the whole town hall (unscoped moderators, leaders, admins)."""
    return claims.scope if claims is not None else ""


def out_of_scope(scope: str) -> ProtocolViolation:
    return ProtocolViolation(ErrorCode.OUT_OF_SCOPE, f"this question is not from your scope ({scope})")


def check_town_hall_wide(claims: Claims, what: str) -> None:
    """Raise out_of_scope for a local moderator: what reaches the whole town hall (slow mode) is not its to set."""
    if scope_of(claims):
        raise ProtocolViolation(ErrorCode.OUT_OF_SCOPE, f"a moderator of one area may not {what} for everyone")


def check_question(tree: RegionTree | None, claims: Claims, q: Question) -> None:
    """Raise out_of_scope unless the question was asked within the session's scope."""
    scope = scope_of(claims)
    if scope and not in_scope(scope, unit_path(tree, q.unit)):
        raise out_of_scope(scope)


def forward_target(tree: RegionTree | None, claims: Claims, q: Question) -> str:
    """Where `forward` sends a question: one level above the forwarder's scope. Raises bad_state when there is no
    level above (a town-hall-wide moderator decides at the top) or the question is already there or higher."""
    scope = scope_of(claims)
    if not scope:
        raise ProtocolViolation(ErrorCode.BAD_STATE, "a town-hall-wide moderator is the top: approve it instead")
    unit = tree.get(scope) if tree is not None else None
    target = unit.parent if unit is not None and unit.parent else ROOT_SCOPE
    current = q.forwarded_to
    if current and (current == ROOT_SCOPE or current in _above(tree, target)):
        raise ProtocolViolation(ErrorCode.BAD_STATE, f"this question is already forwarded to {current}")
    return target


def _above(tree: RegionTree | None, code: str) -> Sequence[str]:
    """`code` and every unit above it."""
    return unit_path(tree, code) if code != ROOT_SCOPE else ()


def notice_unit(data: Mapping[str, Any]) -> str:
    """The unit of the question a moderation notice is about ("" for none: notices from before scopes, too)."""
    unit = data.get("unit", "")
    return unit if isinstance(unit, str) else ""


def member_scope(member: object) -> str:
    """A moderation room member's scope: the session's claim, "" when it has none (or is not a session)."""
    client = getattr(member, "client", None)
    return scope_of(getattr(client, "claims", None))


def notice_audience(members: Iterable[object], data: Mapping[str, Any], tree: RegionTree | None) -> Targeted | None:
    """Who in a moderation room gets a notice in full: None (everyone) when no member is scoped, the common case;
    else the unscoped members and those whose scope holds the question's unit. Per member, but moderators are few."""
    scoped = [(m, scope) for m in members if (scope := member_scope(m))]
    if not scoped:
        return None
    path = unit_path(tree, notice_unit(data))
    hidden = {m for m, scope in scoped if not in_scope(scope, path)}
    if not hidden:
        return None
    return Targeted({m for m in members if m not in hidden}, staff=False)


def audience(room: Room, data: Mapping[str, Any], units: UnitIndex) -> Targeted | None:
    """For whom in a room a stream event is (the node's hook into the fan-out): None, everyone, for every ordinary
    event; a moderation notice about a question outside some member's scope; an announcement `to` a unit."""
    if room.seq_field == MODERATION_SEQ:
        return notice_audience(room.members, data, units.tree)
    to = data.get("to")
    return units.under(to) if isinstance(to, str) and to else None


def notice_for(scope: str, data: Mapping[str, Any], tree: RegionTree | None) -> dict[str, Any]:
    """A notice as one moderator's replay sends it: in full, or as the `skip` filler (its mseq is added by the
    caller), the same choice the live stream made."""
    if scope and not in_scope(scope, unit_path(tree, notice_unit(data))):
        return filler()
    return dict(data)


async def question_in_scope(
    store: Store, th: str, claims: Claims, qid: str, tree: RegionTree | None
) -> Question | None:
    """The question, checked against the session's scope (out_of_scope). None when it does not exist: the store's
    own answer (not_found, or a claim on nothing) stands, but a scoped moderator may not probe qids."""
    q = await store.get_question(th, qid)
    if q is None:
        if scope_of(claims):
            raise out_of_scope(scope_of(claims))
        return None
    check_question(tree, claims, q)
    return q


async def check_citizen(store: Store, th: str, claims: Claims, sub: str, tree: RegionTree | None) -> None:
    """A scoped moderator may restrict only a citizen who asked a question from its scope (its queue names them)."""
    scope = scope_of(claims)
    if not scope:
        return
    for q in await store.questions(th, tuple(QState)):
        if q.author == sub and in_scope(scope, unit_path(tree, q.unit)):
            return
    raise ProtocolViolation(ErrorCode.OUT_OF_SCOPE, f"this citizen asked nothing from your scope ({scope})")


def scoped_export(report: dict[str, Any], scope: str, tree: RegionTree | None) -> dict[str, Any]:
    """A town hall's export as a local moderator may read it: its subtree's questions, and the audit entries about
    them (restrictions and settings name no question: left out too)."""
    questions = [q for q in report["questions"] if in_scope(scope, unit_path(tree, q.get("unit", "")))]
    qids = {q["qid"] for q in questions}
    audit = [entry for entry in report["audit"] if entry.get("qid") in qids]
    return {**report, "questions": questions, "audit": audit}


def scoped_units(report: dict[str, Any], scope: str, tree: RegionTree | None) -> dict[str, Any]:
    """An export per unit as a local moderator may read it: the rows of units within its subtree only."""
    units = [row for row in report["units"] if in_scope(scope, unit_path(tree, row["code"]))]
    return {**report, "units": units}


BEST_PER_DISTRICT = 5  # forwarded questions per district in the leader's view


def district_of(tree: RegionTree | None, unit: str) -> str:
    """The unit's ancestor one level below the top (a district under the state), itself at the top, "" for none."""
    path = unit_path(tree, unit)
    return path[1] if len(path) > 1 else (path[0] if path else "")


def best_forwarded(questions: Iterable[Question], tree: RegionTree | None) -> list[dict[str, Any]]:
    """The questions local moderators forwarded, still open (pending or approved), grouped per district, most votes
    first, BEST_PER_DISTRICT each: what the leader and the town-hall-wide moderators pick from."""
    groups: dict[str, list[Question]] = {}
    for q in questions:
        if q.forwarded_to and q.state in (QState.PENDING, QState.APPROVED):
            groups.setdefault(district_of(tree, q.unit), []).append(q)
    rows: list[dict[str, Any]] = []
    for code, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        unit = tree.get(code) if tree is not None and code else None
        members.sort(key=lambda q: (-q.votes, q.ts))
        rows.append(
            {
                "code": code,
                "name_hi": unit.name_hi if unit else "",
                "name_en": unit.name_en if unit else "",
                "count": len(members),
                "questions": [q.for_moderators() for q in members[:BEST_PER_DISTRICT]],
            }
        )
    return rows
