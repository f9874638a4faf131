"""Joining a session to its town hall: its rooms, then the replay of what it missed (or a snapshot), then live.

A join waits until the broker carries the room's channel to this node, reads history (a resume) or the store (a
snapshot), writes the join's own frames in one write (corked), and lets the live frames that waited meanwhile go,
minus the ones the replay covered (fanout.resume). Node.join is the entry; node.abandon_join undoes a failed one.
A session's listening mode (feeds.py) picks its feed in the rooms; in audio mode the town hall's audio channel is
subscribed here first and the current recording's init chunk follows the join's frames (audio_channel.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from jansamvad.aggregates import Aggregates
from jansamvad.audio_channel import AudioChannels
from jansamvad.auth import Claims
from jansamvad.broker.base import Broker, HistoryResult
from jansamvad.channels import MODERATION_SEQ, moderation_channel, public_channel
from jansamvad.connection import ConnState, WsConnection
from jansamvad.digest import DigestCache
from jansamvad.fanout import Fanout
from jansamvad.feeds import Mode, feed_of
from jansamvad.hub import Hub
from jansamvad.join_reads import JoinReads, RoomState
from jansamvad.metrics import NodeMetrics
from jansamvad.models import PUBLIC_STATES, PollState, QState, Townhall
from jansamvad.moderation import scope as moderation_scope
from jansamvad.protocol.records import Snapshot, Viewers, Votes, Welcome
from jansamvad.protocol.roles import STAFF, Role
from jansamvad.regions_http import RegionDirectory
from jansamvad.rollup.tally import UnitTally
from jansamvad.screens import ScreenAudiences
from jansamvad.settings import Settings
from jansamvad.store.base import Store
from jansamvad.targeting import UnitIndex, announcement_for, filler, in_scope, unit_path

if TYPE_CHECKING:
    from jansamvad.client import Client

SNAPSHOT_QUEUE_MAX = 500  # pending questions in a moderator's snapshot


class Joiner:
    def __init__(
        self,
        settings: Settings,
        *,
        hub: Hub,
        broker: Broker,
        store: Store,
        fanout: Fanout,
        metrics: NodeMetrics,
        tally: UnitTally,
        aggregates: Aggregates,
        audio: AudioChannels,
        screens: ScreenAudiences,
        digests: DigestCache,
        regions: RegionDirectory,
    ) -> None:
        self._settings = settings
        self._hub = hub
        self._broker = broker
        self._store = store
        self._fanout = fanout
        self._metrics = metrics
        self._tally = tally
        self._aggregates = aggregates
        self._audio = audio
        self._screens = screens
        self._digests = digests
        self._regions = regions
        # The reads every join of a moment shares, batched (join_reads.py); the Client's hello reads through it too.
        self.reads = JoinReads(
            store,
            broker,
            snapshot_speech=settings.snapshot_speech,
            top_votes=settings.top_votes,
            history_size=settings.history_size,
            epoch=lambda: aggregates.ticks,
            window_s=settings.tick_ms / 1000,
        )
        self.units = UnitIndex(regions)  # citizens' unit paths, for targeted events (targeting.py); Node.leave too

    def forget(self, conn: WsConnection, th: str, claims: Claims) -> None:
        """Undo what the join counted and indexed for a session (Node.leave: it closed, or its join failed)."""
        if claims.role is Role.CITIZEN:
            self._tally.leave(th, claims.unit)
        self.units.remove(conn)  # targeting.py's index of unit paths
        self._screens.left(conn)

    async def _listen(self, channel: str, conn: WsConnection, seq_field: str = "seq", *, staff: bool = False) -> None:
        """Join a room, and return once the broker carries its channel to this node. Every join into the room waits
        for the same subscription (not only the one that created the room); a failed one is tried again by the next
        join, so a room never goes on without one."""
        self._hub.add(channel, conn, seq_field, staff=staff)
        room = self._hub.room(channel)
        assert room is not None
        task = room.subscribing
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = room.subscribing = asyncio.get_running_loop().create_task(self._broker.subscribe(channel))
            task.add_done_callback(_retrieve)
        if not task.done():  # done here means subscribed (a failed one was replaced above): nothing to wait for
            await asyncio.shield(task)  # a join that times out must not cancel the subscription others wait for

    async def join(
        self, client: Client, last_seq: int | None, townhall: Townhall, last_mseq: int | None = None
    ) -> None:
        """Add a session to its rooms, then replay what it missed (or send a snapshot), then go live.

        Live frames that arrive during the replay wait in `conn.paused`; `resume` drops the ones the replay covered,
        so the client sees every event exactly once and in order. Moderators and admins have a second stream, the
        moderation notices (`mseq`): they resume only when both `last_seq` and `last_mseq` can be replayed, and get
        a snapshot with the whole queue otherwise. A join that fails is undone by the caller (abandon_join).
        """
        conn = client.conn
        claims = client.claims
        assert claims is not None
        th = townhall.id
        channel = public_channel(th)
        conn.paused = []
        self._metrics.joins[str(claims.role)] += 1
        self._hub.add_user(claims.sub, conn)
        if claims.role is Role.CITIZEN:  # undone in Node.leave (the connection closed, or abandon_join)
            self._tally.join(th, claims.unit)
        elif claims.role is Role.SCREEN:  # a booth screen counts for its unit (screens.py); undone in Node.leave
            self._screens.joined(conn, th, claims.unit)
        if claims.role in (Role.CITIZEN, Role.SCREEN) and claims.unit:
            # Indexed with its unit path before it joins the room: targeted events find it (a screen shows its unit's
            # announcements too).
            self.units.add(conn, unit_path(await self._regions.current_tree(), claims.unit))
        conn.feed = feed_of(conn.encoding, client.mode)
        await self._listen(channel, conn, staff=claims.role in STAFF)
        if client.mode is Mode.AUDIO:
            await self._audio.wanted(th)
        staff = claims.role in (Role.MODERATOR, Role.ADMIN)
        mod_channel = moderation_channel(th)
        if staff:
            await self._listen(mod_channel, conn, MODERATION_SEQ)
        if conn.state is not ConnState.OPEN:
            return
        history_size = self._settings.history_size
        recovered = False
        mhist: HistoryResult | None = None
        state: RoomState | None = None
        if last_seq is not None and (not staff or last_mseq is not None):
            hist = await self.reads.history(th, last_seq)  # batched with the other resumes of the moment
            recovered = hist.complete and last_seq <= hist.head
            if recovered and staff and last_mseq is not None:
                mhist = await self._broker.history(mod_channel, last_mseq, history_size)
                recovered = mhist.complete and last_mseq <= mhist.head
        if not recovered and not staff:  # the common case: one batched read for every join of the moment
            state = await self.reads.room_state(th)
            hist = state.hist
        elif not recovered:
            hist = await self._broker.history(channel, 0, self._settings.snapshot_speech)
            if staff:
                # Only the head, and before the store's queue is read: every notice numbered up to it describes a
                # change the queue already shows, every later one reaches the session live.
                mhist = await self._broker.history(mod_channel, 0, 0)
        conn.cork()
        try:
            await self._send_join(client, townhall, hist, recovered, mhist, state)
        finally:
            conn.uncork()
        after = {"seq": hist.head}
        if mhist is not None:
            after[MODERATION_SEQ] = mhist.head
        self._fanout.resume(conn, after)

    async def _send_join(
        self,
        client: Client,
        townhall: Townhall,
        hist: HistoryResult,
        recovered: bool,
        mhist: HistoryResult | None,
        state: RoomState | None,
    ) -> None:
        """The join's own frames: welcome, then the replay (with fresh aggregates) or a snapshot."""
        claims = client.claims
        assert claims is not None
        th = townhall.id
        staff = claims.role in (Role.MODERATOR, Role.ADMIN)
        head = hist.head
        welcome = Welcome(
            role=str(claims.role),
            sub=claims.sub,
            name=claims.name,
            th=th,
            title=townhall.title,
            status=str(townhall.status),
            seq=head,
            recovered=recovered,
            mseq=mhist.head if mhist is not None else None,
        )
        client.send(welcome)
        # Targeted events and scoped notices: each session gets in its replay or snapshot what the live stream gives
        # it (targeting.py), the event or its `skip` filler.
        path = self.units.path(client.conn)
        sees_all = claims.role in STAFF
        scope = moderation_scope.scope_of(claims)
        tree = await self._regions.current_tree() if scope else self._regions.tree
        if recovered:
            for pub in hist.publications:
                data = pub.data if sees_all or announcement_for(pub.data, path) else filler()
                client.send({**data, "seq": pub.seq})
            if mhist is not None:
                for pub in mhist.publications:
                    client.send({**moderation_scope.notice_for(scope, pub.data, tree), MODERATION_SEQ: pub.seq})
            # Aggregates are not in the stream: bring them up to date once, instead of waiting for the next change;
            # `votes` always, with empty maps when no question is public, as docs/protocol.md section 2 says.
            audience = self._aggregates.audience(th)
            client.send(Viewers(n=audience["n"], staff=audience["staff"]))
            votes, groups = await self.reads.top_votes(th)
            client.send(Votes(v=votes, g=groups))
        else:
            if state is None:  # staff: read on their own, after the moderation head (join)
                questions = [q.public() for q in await self._store.questions(th, PUBLIC_STATES)]
                polls = [p.public() for p in await self._store.polls(th, (PollState.OPEN, PollState.CLOSED))]
                reactions = await self._store.add_reactions(th, {})
            else:
                questions, polls, reactions = state.questions, state.polls, state.reactions
            audience = self._aggregates.audience(th)
            queue: list[dict[str, Any]] | None = None
            if staff:
                pending = await self._store.questions(th, (QState.PENDING,))
                if scope:  # a local moderator's queue: its subtree only (moderation/scope.py)
                    pending = [q for q in pending if in_scope(scope, unit_path(tree, q.unit))]
                queue = [q.for_moderators() for q in pending[:SNAPSHOT_QUEUE_MAX]]
            if state is not None and state.speech is not None:
                speech = state.speech  # no targeted event in it: the same for everyone, built once (join_reads.py)
            else:
                speech = [
                    {**p.data, "seq": p.seq}
                    for p in hist.publications
                    if p.data["t"] in ("speech", "announce") and (sees_all or announcement_for(p.data, path))
                ]
            # Every join of the state sends the same four fields: encoded once (msgspec.Raw, the same bytes).
            shared: Any = None
            if state is not None and state.speech is not None:
                shared = state.encoded_parts(client.conn.encoding)
            snapshot = Snapshot(
                seq=head,
                status=str(townhall.status),
                polls=polls if shared is None else shared.polls,
                slow_mode=townhall.slow_mode_s,
                reactions=reactions if shared is None else shared.reactions,
                speech=speech if shared is None else shared.speech,
                questions=questions if shared is None else shared.questions,
                viewers=audience["n"],
                staff=audience["staff"],
                queue=queue,
                mseq=(mhist.head if mhist is not None else 0) if staff else None,
            )
            client.send(snapshot)
            await self._digests.send_after_snapshot(client, townhall, head)  # "what you missed", cached per change
        if client.mode is Mode.AUDIO:
            await self._send_audio_init(client)

    async def _send_audio_init(self, client: Client) -> None:
        """A listener who starts now begins at the current recording: its init chunk first (kept by the broker)."""
        init = await self._audio.latest_init(client.th)
        if init is not None:
            client.send(dict(init))

    async def set_mode(self, client: Client, mode: Mode) -> None:
        """A joined session changes its listening mode (the `mode` message): another feed in its rooms, and the town
        hall's audio subscribed or dropped as this node's audio listeners come and go."""
        conn, th = client.conn, client.th
        client.mode = mode
        self._hub.set_feed(conn, feed_of(conn.encoding, mode), [public_channel(th), moderation_channel(th)])
        if mode is Mode.AUDIO:
            await self._audio.wanted(th)
            await self._send_audio_init(client)
        else:
            self._audio.maybe_unwanted(th)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shared task's failure as seen: its waiters got it (or timed out); it must not be logged as lost."""
    if not task.cancelled():
        task.exception()
