"""The Node: owns settings, hub, broker, store, presence and fan-out, and the life of every session.

The edge (connections, admission, client addresses) is the gateway's (gateway.py), the timers of connections the
keepalive wheel's (keepalive.py), the aggregates tick aggregates.py's; the node joins sessions to their rooms,
publishes their events and takes the broker's publications to the fan-out. Channel names: channels.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Mapping
from typing import Any

from jansamvad.aggregates import Aggregates
from jansamvad.audio_channel import AudioChannels
from jansamvad.audio_recorder import AudioRecorder
from jansamvad.auth import TokenService
from jansamvad.broker.base import Broker, Publication
from jansamvad.channels import CONTROL_CHANNEL, MODERATION_SEQ, Channel, moderation_channel, public_channel
from jansamvad.client import Client
from jansamvad.connection import WsConnection
from jansamvad.digest import DigestCache, DigestCollector
from jansamvad.fanout import CONFLATED, Fanout
from jansamvad.gateway import Gateway
from jansamvad.hub import Hub
from jansamvad.joining import Joiner
from jansamvad.journal.base import Journal, journal_kind
from jansamvad.journal.memory import MemoryJournal
from jansamvad.keepalive import run_wheel
from jansamvad.limiter.base import RateLimiter
from jansamvad.limiter.memory import MemoryRateLimiter
from jansamvad.metrics import NodeMetrics
from jansamvad.models import PollState, QState, Question, Status, Townhall, now_ms
from jansamvad.moderation import scope as moderation_scope
from jansamvad.moderation.grouping import QuestionGrouper
from jansamvad.moderation.policy import Policy
from jansamvad.presence.base import PresenceManager
from jansamvad.protocol.codes import CloseCode
from jansamvad.protocol.records import PollEvent, QueueAdd, QueueUpdate, Reconnect, StatusEvent, frame_record, to_map
from jansamvad.record import RecordKeeper
from jansamvad.recording_store.base import ObjectStore
from jansamvad.recording_store.open import open_object_store
from jansamvad.regions_http import RegionDirectory
from jansamvad.rollup.base import Rollup
from jansamvad.rollup.memory import MemoryRollup
from jansamvad.rollup.tally import UnitTally
from jansamvad.rollup.writer import RollupWriter
from jansamvad.screens import ScreenAudiences
from jansamvad.settings import Settings
from jansamvad.store.base import BadState, Store

log = logging.getLogger("jansamvad.node")

# Re-exported: tests and older callers import the channel names from here.
__all__ = ["CONTROL_CHANNEL", "MODERATION_SEQ", "Node", "moderation_channel", "public_channel"]
GROUPS_REFRESH_S = 30.0  # how often a node re-reads the groups other nodes created


class Node:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        broker: Broker,
        presence: PresenceManager,
        limiter: RateLimiter | None = None,
        rollup: Rollup | None = None,
        journal: Journal | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id or "node-" + secrets.token_hex(4)
        self.tokens = TokenService(
            settings.secret,
            algorithm=settings.jwt_algorithm,
            private_key=settings.jwt_private_key,
            public_key=settings.jwt_public_key,
        )
        self.store = store
        self.broker = broker
        self.presence = presence
        self.limiter: RateLimiter = limiter or MemoryRateLimiter()
        self.rollup: Rollup = rollup or MemoryRollup()  # by region unit: counted at join, leave, activity; per tick
        self.tally = UnitTally()
        self.screens = ScreenAudiences(self.tally)  # booth screens here and the people watching them
        self.regions = RegionDirectory(store)  # the region tree, for the roll-up and the HTTP routes
        self.rollup_writer = RollupWriter(self.node_id, self.tally, self.rollup, self.regions)
        self.policy = Policy.load(settings.moderation_dir)
        self._groupers: dict[str, tuple[QuestionGrouper, float]] = {}  # th -> (grouper, loaded at)
        self.hub = Hub()
        self.metrics = NodeMetrics()
        self.fanout = Fanout(
            tick_s=settings.tick_ms / 1000,
            writes_per_yield=settings.writes_per_yield,
            on_flush=self.metrics.fanout_seconds.observe,
        )
        self.gateway = Gateway(settings, self, self.metrics.closes, self.metrics.handshakes_rejected)
        self.aggregates = Aggregates(
            settings,
            self.node_id,
            hub=self.hub,
            fanout=self.fanout,
            store=store,
            presence=presence,
            metrics=self.metrics,
            now=self.clock_precise,
        )
        self._ready = False
        self.draining = False
        # Issue 18: the transcript beyond the history window, the "what you missed" digest, the record and the audio.
        self.journal: Journal = journal or MemoryJournal()
        self.digests = DigestCache(self.journal, store)
        self.metrics.registry.register(DigestCollector(self.digests))
        self.objects = objects or open_object_store(settings.record_dir, settings.record_s3_url)
        self.recorder = AudioRecorder(self.objects, self.node_id)
        self.audio = AudioChannels(self.hub, broker, self.fanout, self.recorder)  # opt-in audio, its own channel
        self.records = RecordKeeper(
            store=store, journal=self.journal, objects=self.objects, rollup=self.rollup, regions=self.regions
        )
        self.joiner = Joiner(
            settings,
            hub=self.hub,
            broker=broker,
            store=store,
            fanout=self.fanout,
            metrics=self.metrics,
            tally=self.tally,
            aggregates=self.aggregates,
            audio=self.audio,
            screens=self.screens,
            digests=self.digests,
            regions=self.regions,
        )
        self.set_mode = self.joiner.set_mode  # the `mode` message: another feed, the audio subscription, its init
        self.join_reads = self.joiner.reads  # the hello's reads, batched across joins (join_reads.py)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics.attach(self)

    # The gateway's figures, read here by the metrics, the dashboard and the Client (ClientOwner)

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        self.gateway.accepting = value and not self.draining

    @property
    def clock(self) -> float:
        return self.gateway.clock

    @property
    def open_count(self) -> int:
        return self.gateway.open_count

    @property
    def slow_consumer_drops(self) -> int:
        return self.gateway.slow_consumer_drops

    @property
    def broadcasts_skipped(self) -> int:
        return self.gateway.broadcasts_skipped

    @property
    def stream_gaps(self) -> int:
        return self.broker.stream_gaps

    @property
    def staff_joined(self) -> int:
        return self.gateway.staff_joined

    @staff_joined.setter
    def staff_joined(self, value: int) -> None:
        self.gateway.staff_joined = value

    def client_ip(self, peer: str, forwarded_for: list[str]) -> str:
        return self.gateway.client_ip(peer, forwarded_for)

    def trusts(self, ip: str) -> bool:
        return self.gateway.trusts(ip)

    # Lifecycle

    def protocol_class(self) -> type[WsConnection]:
        """The WebSocket protocol class uvicorn instantiates on upgrade, bound to this node's gateway."""
        return self.gateway.protocol_class()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.gateway.start(self._loop)
        await self.broker.start(self)
        await self.broker.subscribe(CONTROL_CHANNEL)
        self.fanout.start()
        self._tasks = [
            self._loop.create_task(run_wheel(self.gateway), name="jansamvad-keepalive"),
            self._loop.create_task(self.aggregates.run(), name="jansamvad-aggregates"),
            self._loop.create_task(self.rollup_writer.run(self.settings.presence_interval_s), name="jansamvad-rollup"),
        ]
        self.ready = True
        log.info("node %s started", self.node_id)

    async def shutdown(self, *, code: CloseCode = CloseCode.SERVICE_RESTART) -> None:
        """Stop accepting, tell every client to reconnect elsewhere after a jittered delay, close, release."""
        self.draining = True
        self.ready = False
        await self.fanout.flush_now()
        spread_ms = max(1, int(self.settings.drain_window_s * 1000))
        connections = self.gateway.connections
        for member in {member for sessions in self.hub.users.values() for member in sessions}:  # joined ones
            self.metrics.messages_out["reconnect"] += 1
            reconnect = Reconnect(after_ms=random.randrange(spread_ms))
            member.send_frame(frame_record(reconnect, member.encoding))
        for conn in list(connections):
            conn.close(code, "node shutting down")
        deadline = asyncio.get_running_loop().time() + self.settings.close_timeout_s
        while connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.fanout.stop()
        # Withdraws this node's viewers and retires its activity as last written (the last tick's increments, under a
        # second's worth, are not written: a final write here hung a node's shutdown on uvloop with a Redis cluster).
        await self.rollup.close()
        await self.recorder.close()
        await self.records.close()
        await self.journal.close()
        await self.broker.close()
        await self.presence.close()
        await self.limiter.close()
        await self.store.close()
        log.info("node %s stopped", self.node_id)

    def clock_precise(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # SessionHost: called by the gateway

    def open_session(self, conn: WsConnection) -> Client:
        return Client(self, conn)

    def leave(self, client: Client) -> None:
        """Take a joined session out of its rooms (its connection closed, or its join failed)."""
        claims, conn = client.claims, client.conn
        if claims is None:
            return
        self.metrics.leaves += 1
        self.hub.remove_user(claims.sub, conn)
        self.joiner.forget(conn, client.th, claims)  # the join's counts and indexes: tally, units, screens
        self._leave(public_channel(client.th), conn)
        self._leave(moderation_channel(client.th), conn)
        self.audio.maybe_unwanted(client.th)

    def _leave(self, channel: str, conn: WsConnection) -> None:
        if self.hub.remove(channel, conn):
            self._spawn(self.broker.unsubscribe(channel))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_log_task_error)

    async def join(
        self, client: Client, last_seq: int | None, townhall: Townhall, last_mseq: int | None = None
    ) -> None:
        await self.joiner.join(client, last_seq, townhall, last_mseq)

    def abandon_join(self, client: Client) -> None:
        """Undo a failed or timed-out join now, not when its close (1013 or 1011, the caller's) completes."""
        if client.claims is None:
            return
        client.conn.paused = None
        self.leave(client)  # it counted as a join
        client.claims = None

    # Publishing

    async def publish_event(self, th: str, message: Mapping[str, Any]) -> int:
        """An event of the town hall's stream: stored in history with the next seq, delivered to every node."""
        seq, _ = await self.publish_event_once(th, message, "")
        return seq

    async def publish_event_once(self, th: str, message: Mapping[str, Any], key: str) -> tuple[int, bool]:
        """publish_event with an idempotency key ("" for none): a retried key returns the first seq and True."""
        assert self._loop is not None
        started = self._loop.time()
        data = {**message, "ts": now_ms()}
        try:
            if key:
                seq, dup = await self.broker.publish_once(public_channel(th), data, key)
            else:
                seq, dup = await self.broker.publish(public_channel(th), data, history=True), False
        except Exception:
            self.metrics.broker_errors["publish"] += 1
            raise
        self.metrics.broker_publish_seconds.observe(self._loop.time() - started)
        if journal_kind(data) is not None:  # also on dup: the first attempt may have published but not appended
            try:
                await self.journal.append(th, seq, data)
            except Exception as exc:  # the event is out; the transcript misses a line (logged and counted)
                self.metrics.broker_errors["journal"] += 1
                log.warning("could not append seq %d of %s to the journal: %s", seq, th, type(exc).__name__)
        return seq, dup

    async def set_status(self, th: str, status: Status) -> Townhall:
        """Set a town hall's status (ending it is `end_townhall`) and tell everyone with a `status` event."""
        townhall = await self.store.set_status(th, status)
        await self.publish_event(th, to_map(StatusEvent(status=str(status))))
        return townhall

    async def end_townhall(self, th: str, by: str) -> tuple[Townhall, int]:
        """End a town hall (`end`, and REST): open polls close with final counts (a `poll` event each), then
        `status ended`, whose arrival closes every session with 4005. Returns the town hall and that event's seq."""
        townhall = await self.store.set_status(th, Status.ENDED)
        for poll in await self.store.polls(th, (PollState.OPEN,)):
            try:
                closed = await self.store.set_poll_state(th, poll.pid, PollState.CLOSED, by)
            except BadState:
                continue  # a poll_close got there first and published its own event
            await self.publish_event(th, to_map(PollEvent(p=closed.public())))
        seq = await self.publish_event(th, to_map(StatusEvent(status=str(Status.ENDED))))
        self.records.render_after_end(th)
        return townhall, seq

    async def publish_moderation(self, th: str, message: Mapping[str, Any], key: str = "") -> int:
        """A notice of the moderation stream: numbered (`mseq`) and kept in its history, so that nodes fill what they
        missed and moderators resume. With a key, at most once per key. Returns its mseq."""
        if key:
            mseq, _ = await self.broker.publish_once(moderation_channel(th), message, key)
            return mseq
        return await self.broker.publish(moderation_channel(th), message, history=True)

    async def publish_question_notice(self, th: str, q: Question) -> None:
        """Tell the moderators about a question just stored: queue_add, or queue_update when auto-moderation rejected
        it. Once per question (keyed by qid), so a resent ask (after `unavailable`, answered `dup`) publishes the
        notice that the first attempt stored the question for but could not publish. A question a human decided
        meanwhile gets none: the decision's own notice told the moderators."""
        notice: QueueAdd | QueueUpdate
        if q.state is QState.PENDING:
            notice = QueueAdd(q=q.for_moderators(), unit=q.unit)
        elif q.state is QState.REJECTED and [d.by for d in q.decisions] == ["auto"]:
            notice = QueueUpdate(
                qid=q.qid, state=str(q.state), pinned=False, by="auto", reason=",".join(q.flags), unit=q.unit
            )
        else:
            return
        await self.publish_moderation(th, to_map(notice), key=f"q:{q.qid}")

    async def kick(self, sub: str, th: str) -> None:
        """Close a banned citizen's sessions on every node (`th` may be "*" for everywhere)."""
        await self.broker.publish(CONTROL_CHANNEL, {"t": "kick", "sub": sub, "th": th}, history=False)

    async def grouper(self, th: str) -> QuestionGrouper:
        """This town hall's near-duplicate grouper, re-read from the store now and then (other nodes add groups)."""
        assert self._loop is not None
        cached = self._groupers.get(th)
        now = self._loop.time()
        if cached is not None and now - cached[1] < GROUPS_REFRESH_S:
            return cached[0]
        grouper = QuestionGrouper(self.settings.group_threshold)
        for group, text in await self.store.groups(th, grouper.max_groups):
            grouper.add(group, text)
        self._groupers[th] = (grouper, now)
        return grouper

    async def publish_audio(self, th: str, data: bytes, init: bool, mime: str) -> None:
        await self.audio.publish(th, data, init, mime)  # and into the record's take (audio_channel.py)

    def count_reaction(self, th: str, kind: str) -> None:
        self.aggregates.count_reaction(th, kind)

    # BrokerEventHandler

    def handle_publication(self, pub: Publication) -> None:
        data = pub.data
        t = data["t"]
        if pub.channel == CONTROL_CHANNEL:
            self._control(data)
            return
        parsed = Channel.parse(pub.channel)
        if parsed.is_audio:
            self.audio.deliver(parsed.th, data)  # to the town hall's members in audio mode only
            return
        room = self.hub.room(pub.channel)
        if room is None:
            return
        if t in CONFLATED:
            self.fanout.conflate(room, data)
        elif pub.seq == 0:
            self.fanout.enqueue(room, 0, data, droppable=(t == "audio"))
        else:  # in seq order, once each: the broker's sequencer sees to it
            self.fanout.enqueue(room, pub.seq, data, targeted=moderation_scope.audience(room, data, self.joiner.units))
        if t == "status" and data.get("status") == Status.ENDED:
            # This node's part of the recording, for the record.
            self._spawn(self.recorder.finish(Channel.parse(pub.channel).th))
            # Let the status event reach everyone first, then close the room with 4005.
            asyncio.get_running_loop().call_later(
                self.settings.tick_ms / 1000 + 0.2, self._close_room, pub.channel, CloseCode.TOWNHALL_ENDED
            )

    def handle_gone(self, channel: str, seqs: range) -> None:
        """The one resync policy (broker/sequencer.py reports, the node decides): events this node's listeners of the
        channel missed are gone from history, so they must start again from a snapshot. They are closed with 1012 and
        reconnect; their resume finds the gap too old and gets a snapshot."""
        log.warning("gap in %s older than history; asking its sessions to resync", channel)
        self._close_room(channel, CloseCode.SERVICE_RESTART)

    def _control(self, data: Mapping[str, Any]) -> None:
        if data.get("t") == "kick":
            th = str(data.get("th"))
            sessions = self.hub.users.get(str(data.get("sub")), set())
            if th != "*":  # only this user's sessions in that town hall (each session is in its public room)
                room = self.hub.room(public_channel(th))
                sessions = {member for member in sessions if room is not None and member in room.members}
            for member in list(sessions):
                member.close(CloseCode.BANNED)

    def live_channels(self) -> list[str]:
        return [CONTROL_CHANNEL, *self.hub.channels(), *self.audio.channels()]

    def _close_room(self, channel: str, code: CloseCode) -> None:
        room = self.hub.room(channel)
        if room is None:
            return
        for member in list(room.members):
            member.close(code)

    async def rollup_once(self) -> None:
        """What the next roll-up tick writes, now."""
        await self.rollup_writer.write_once()

    def stats(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "connections": self.gateway.open_count,
            "rooms": len(self.hub.rooms),
            "slow_consumer_drops": self.gateway.slow_consumer_drops,
            "rejected_handshakes": self.gateway.rejected_handshakes,
            "stream_gaps": self.stream_gaps,
            "frames_built": self.fanout.frames_built,
            "broadcast_writes": self.fanout.writes,
        }


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task failed: %r", task.exception())
