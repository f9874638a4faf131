"""The aggregates tick: viewer counts, votes, reactions and poll tallies, once per presence interval.

Nothing per vote or per tap crosses the broker: reactions are counted here and summed into the store once a tick,
and every node reads the exact totals (votes, reactions, poll counts) from the store and sends them to its local
listeners, conflated, only when they changed. Viewer counts are one write per listener: in a big room they go out
less often (viewers_pace.py).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any

from jansamvad.channels import Channel, public_channel
from jansamvad.fanout import Fanout
from jansamvad.hub import Hub, Room
from jansamvad.metrics import NodeMetrics
from jansamvad.models import PollState, QState
from jansamvad.presence.base import Audience, PresenceManager
from jansamvad.protocol.records import PollCounts, Reactions, Viewers, Votes, to_map
from jansamvad.report_renewal import renew_after_s
from jansamvad.settings import Settings
from jansamvad.store.base import Store
from jansamvad.viewers_pace import viewers_due

log = logging.getLogger("jansamvad.node")

QUEUE_DEPTH_EVERY = 5  # aggregates ticks between two readings of the moderation queue depth


def room_audience(room: Room) -> Audience:
    return Audience(len(room.members) - room.staff, room.staff)


class Aggregates:
    def __init__(
        self,
        settings: Settings,
        node_id: str,
        *,
        hub: Hub,
        fanout: Fanout,
        store: Store,
        presence: PresenceManager,
        metrics: NodeMetrics,
        now: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._node_id = node_id
        self._hub = hub
        self._fanout = fanout
        self._store = store
        self._presence = presence
        self._metrics = metrics
        self._now = now
        self._reactions: dict[str, dict[str, int]] = {}
        self._viewers: dict[str, Audience] = {}  # town hall -> its audience on every node, as of the last tick
        self._ticks = 0
        self._reported: dict[str, Audience] | None = None  # the audience of this node's last presence report
        self._reported_at = 0.0

    def count_reaction(self, th: str, kind: str) -> None:
        """Reactions are counted here and sent on as one total per town hall per aggregates tick."""
        counts = self._reactions.setdefault(th, {})
        counts[kind] = counts.get(kind, 0) + 1

    def audience(self, th: str) -> dict[str, int]:
        """`viewers.n` (citizens) and `viewers.staff` of a town hall: the last total over every node, or what this
        node alone has when that is more (a session that just joined is counted before the next presence tick)."""
        total = self._viewers.get(th, Audience())
        room = self._hub.room(public_channel(th))
        here = room_audience(room) if room is not None else Audience()
        return {"n": max(total.citizens, here.citizens), "staff": max(total.staff, here.staff)}

    async def run(self) -> None:
        """Every presence interval: report and read viewer counts, and sum reactions into the store."""
        while True:
            await asyncio.sleep(self._settings.presence_interval_s)
            try:
                await self.tick()
            except Exception as exc:
                log.warning("aggregates tick failed: %s", type(exc).__name__)

    @property
    def ticks(self) -> int:
        """Ticks begun: what a join may reuse of an earlier join's reads holds only within one (join_reads.py)."""
        return self._ticks

    async def tick(self) -> None:
        hub, store, settings = self._hub, self._store, self._settings
        self._ticks += 1
        local: dict[str, Audience] = {}
        for name, listeners in hub.rooms.items():
            channel = Channel.parse(name)
            if channel.is_public:
                local[channel.th] = room_audience(listeners)
        now = self._now()
        await self._report(local, now)
        self._viewers = await self._presence.totals(local)
        for th, audience in self._viewers.items():
            room = hub.room(public_channel(th))
            if room is None:
                continue
            last = room.sent.get("viewers")
            last_n = last["n"] if isinstance(last, dict) else None
            since = now - room.viewers_sent_at
            if viewers_due(len(room.members), last_n, audience.citizens, since, with_event=bool(room.events)):
                message = to_map(Viewers(n=audience.citizens, staff=audience.staff))
                if self._send_if_changed(room, "viewers", message, True):
                    room.viewers_sent_at = now
        # Votes, reactions and poll tallies: every node reads the exact totals from the store once per tick and sends
        # them to its local listeners when they changed. Nothing per vote or per tap crosses the broker.
        reactions, self._reactions = self._reactions, {}
        for th in local:
            room = hub.room(public_channel(th))
            if room is None:
                continue
            votes, groups = await store.top_votes(th, settings.top_votes)
            self._send_if_changed(room, "votes", to_map(Votes(v=votes, g=groups)), bool(votes))
            totals = await store.add_reactions(th, reactions.pop(th, {}))
            self._send_if_changed(room, "reactions", to_map(Reactions(c=totals)), bool(totals))
            for poll in await store.polls(th, (PollState.OPEN,)):
                message = to_map(PollCounts(pid=poll.pid, c=list(poll.counts)))
                self._send_if_changed(room, f"poll_counts:{poll.pid}", message, True)
        for th, counts in reactions.items():  # taps from sessions that left before the tick
            await store.add_reactions(th, counts)
        if self._ticks % QUEUE_DEPTH_EVERY == 0:  # for the metrics; only where this node has moderators
            depth = {}
            for name in hub.rooms:
                channel = Channel.parse(name)
                if channel.is_moderation:
                    depth[channel.th] = len(await store.questions(channel.th, (QState.PENDING,)))
            self._metrics.queue_depth = depth

    async def _report(self, local: dict[str, Audience], now: float) -> None:
        # An unchanged report is only renewed once it is half its lifetime old (report_renewal.py); the totals are
        # read every tick all the same, since other nodes' audiences change them.
        renew_s = renew_after_s(self._settings.presence_interval_s)
        if local != self._reported or now - self._reported_at >= renew_s:
            await self._presence.report(self._node_id, local)
            self._reported, self._reported_at = local, now

    def _send_if_changed(self, room: Room, key: str, message: dict[str, Any], worth_sending: bool) -> bool:
        # The stored value is compared with the next one, so it must not share mutable parts with the store's objects.
        if worth_sending and room.sent.get(key) != message:
            room.sent[key] = copy.deepcopy(message)
            self._fanout.conflate(room, message, key)
            return True
        return False
