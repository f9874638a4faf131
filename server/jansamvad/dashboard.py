"""The war-room dashboard's data: every town hall that is not over, its audience by node and by region, its queue,
approval rate and reactions, and the health of the nodes and of Redis.

Viewers are citizens (as `viewers.n` on the wire); leaders, moderators and admins connected are `staff`. Viewers by
node come from presence (every node, every second). Viewers by region are the answering node's own
listeners (a browser's region is only known where it is connected); the page asks every node it knows of when it
wants the whole picture. Questions per minute are computed by the page from two readings of `questions`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from jansamvad.channels import public_channel
from jansamvad.models import QState, Status, now_ms

if TYPE_CHECKING:
    from jansamvad.node import Node

MAX_TOWNHALLS = 50


def _regions(node: Node, th: str) -> dict[str, int]:
    room = node.hub.room(public_channel(th))
    if room is None:
        return {}
    counts: Counter[str] = Counter()
    for member, staff in room.members.items():
        client = getattr(member, "client", None)
        if not staff and client is not None and client.claims is not None:
            counts[client.claims.region or "—"] += 1
    return dict(counts.most_common(30))


async def war_room(node: Node) -> dict[str, Any]:
    store, presence = node.store, node.presence
    live = [t for t in await store.list_townhalls() if t.status is not Status.ENDED]
    live.sort(key=lambda t: (t.status is not Status.LIVE, -t.created_ms))
    townhalls = []
    nodes: Counter[str] = Counter()
    for townhall in live[:MAX_TOWNHALLS]:
        # Three independent reads, one round trip's wait (up to 50 town halls, one after another).
        by_node, counts, reactions = await asyncio.gather(
            presence.by_node(townhall.id), store.counts(townhall.id), store.add_reactions(townhall.id, {})
        )
        nodes.update({node: audience.citizens for node, audience in by_node.items()})
        decided = counts[QState.APPROVED] + counts[QState.ANSWERED] + counts[QState.REJECTED]
        townhalls.append(
            {
                **townhall.admin(),
                "viewers": sum(audience.citizens for audience in by_node.values()),
                "staff": sum(audience.staff for audience in by_node.values()),
                "viewers_by_node": {node: audience.citizens for node, audience in by_node.items()},
                "viewers_by_region_here": _regions(node, townhall.id),
                "questions": sum(counts.values()),
                "queue_depth": counts[QState.PENDING],
                "approved": counts[QState.APPROVED] + counts[QState.ANSWERED],
                "answered": counts[QState.ANSWERED],
                "rejected": counts[QState.REJECTED],
                "approval_rate": round((counts[QState.APPROVED] + counts[QState.ANSWERED]) / decided, 3)
                if decided
                else None,
                "reactions": reactions,
                "slow_mode": townhall.slow_mode_s,
            }
        )
    return {
        "ts": now_ms(),
        "answered_by": node.node_id,
        "redis": {"configured": bool(node.settings.redis_url), "healthy": node.broker.healthy},
        "nodes": [{"node": n, "viewers": v} for n, v in sorted(nodes.items())],  # presence forgets dead nodes
        "this_node": {**node.stats(), "ready": node.ready, "draining": node.draining},
        "townhalls": townhalls,
    }
