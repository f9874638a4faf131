"""The Node: owns settings, hub, broker, store, presence and fan-out, and the lifecycle of every connection.

Channels are logical names: `th:<id>` is a town hall's public stream (history-bearing events, plus ephemeral audio
and aggregates); `th:<id>:mod` is its moderation stream to moderators and admins (queue notices, numbered `mseq`
and kept in history like the public stream, so a node that missed some while Redis stumbled fills them in and a
moderator who reconnects resumes). A per-region scope later is another channel of the same kind.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import random
import secrets
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jansamvad.audio_channel import AudioChannels, audio_townhall
from jansamvad.auth import TokenService
from jansamvad.broker.base import Broker, HistoryResult, Publication
from jansamvad.client import Client
from jansamvad.connection import ConnState, WsConnection
from jansamvad.fanout import CONFLATED, Fanout
from jansamvad.feeds import Mode, feed_of
from jansamvad.hub import Hub, Room
from jansamvad.limiter.base import RateLimiter
from jansamvad.limiter.memory import MemoryRateLimiter
from jansamvad.metrics import NodeMetrics
from jansamvad.models import PUBLIC_STATES, PollState, QState, Question, Status, Townhall, now_ms
from jansamvad.moderation.grouping import QuestionGrouper
from jansamvad.moderation.policy import Policy
from jansamvad.presence.base import Audience, PresenceManager
from jansamvad.protocol.codec import PING_FRAME
from jansamvad.protocol.codes import CloseCode
from jansamvad.protocol.roles import STAFF, Role
from jansamvad.regions_http import RegionDirectory
from jansamvad.rollup.base import Rollup
from jansamvad.rollup.memory import MemoryRollup
from jansamvad.rollup.tally import UnitTally, path_in
from jansamvad.settings import Settings
from jansamvad.store.base import BadState, Store
from jansamvad.token_bucket import TokenBucket

if TYPE_CHECKING:
    from websockets.typing import Origin

log = logging.getLogger("jansamvad.node")

WHEEL_INTERVAL_S = 1.0
SNAPSHOT_QUEUE_MAX = 500
# Viewer counts are one write per listener: in a big room they go out less often (every listeners / this many
# seconds, at least every presence interval), unless a speech or question write carries them anyway.
VIEWERS_LISTENERS_PER_S = 5_000
QUEUE_DEPTH_EVERY = 5  # aggregates ticks between two readings of the moderation queue depth
_SNAPSHOT_EVENTS = ("speech", "announce")


def public_channel(th: str) -> str:
    return f"th:{th}"


def moderation_channel(th: str) -> str:
    return f"th:{th}:mod"


MODERATION_SEQ = "mseq"  # the field that numbers the moderation stream's notices (the public stream's is "seq")


# Every node listens here for orders that concern sessions anywhere (e.g. kicking a banned citizen).
CONTROL_CHANNEL = "ctl"
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
        # The live roll-up by region unit: counted here at join, leave and activity, written once per tick.
        self.rollup: Rollup = rollup or MemoryRollup()
        self.tally = UnitTally()
        self._rollup_lock = asyncio.Lock()  # one roll-up write per town hall at a time (the tick, the last one)
        self.regions = RegionDirectory(store)  # the region tree, for the roll-up and the HTTP routes
        self.policy = Policy.load(settings.moderation_dir)
        self._groupers: dict[str, tuple[QuestionGrouper, float]] = {}  # th -> (grouper, loaded at)
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self.hub = Hub()
        self.metrics = NodeMetrics()
        self.fanout = Fanout(
            tick_s=settings.tick_ms / 1000,
            writes_per_yield=settings.writes_per_yield,
            on_flush=self.metrics.fanout_seconds.observe,
        )
        self.origins: list[Origin | None] | None = list(settings.allowed_origins) or None  # type: ignore[arg-type]
        self.connections: set[WsConnection] = set()
        self.open_count = 0
        self.per_ip: dict[str, int] = defaultdict(int)
        self.clock = 0.0  # coarse monotonic time, advanced by the wheel: cheap to read on every packet
        self.ready = False
        self.draining = False
        self.slow_consumer_drops = 0
        self.broadcasts_skipped = 0  # droppable ticks (audio, aggregates) not written to a slow reader
        self.rejected_handshakes = 0
        self.stream_gaps = 0
        self._handshakes = TokenBucket(settings.handshakes_per_second, settings.handshakes_per_second)
        # The staff lane's own budget: citizens reconnecting in a storm spend only the citizen one.
        self.staff_joined = 0  # sessions joined through the staff lane (its cap counts these, not bare upgrades)
        self._staff_handshakes = TokenBucket(settings.staff_handshakes_per_second, settings.staff_handshakes_per_second)
        self._reactions: dict[str, dict[str, int]] = {}
        self.audio = AudioChannels(self.hub, broker, public_channel)  # opt-in audio (audio_channel.py)
        self._viewers: dict[str, Audience] = {}  # town hall -> its audience on every node, as of the last tick
        self._ticks = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics.attach(self)

    # Lifecycle

    def protocol_class(self) -> type[WsConnection]:
        """The WebSocket protocol class uvicorn instantiates on upgrade, bound to this node."""
        return type("NodeWsConnection", (WsConnection,), {"node": self, "__slots__": ()})

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.clock = self._handshakes.at = self._staff_handshakes.at = self._loop.time()
        await self.broker.start(self)
        await self.broker.subscribe(CONTROL_CHANNEL)
        self.fanout.start()
        self._tasks = [
            self._loop.create_task(self._wheel(), name="jansamvad-keepalive"),
            self._loop.create_task(self._aggregates(), name="jansamvad-aggregates"),
            self._loop.create_task(self._rollups(), name="jansamvad-rollup"),
        ]
        self.ready = True
        log.info("node %s started", self.node_id)

    async def shutdown(self, *, code: CloseCode = CloseCode.SERVICE_RESTART) -> None:
        """Stop accepting, tell every client to reconnect elsewhere after a jittered delay, close, release."""
        self.ready = False
        self.draining = True
        await self.fanout.flush_now()
        spread_ms = max(1, int(self.settings.drain_window_s * 1000))
        for conn in list(self.connections):
            if conn.state is ConnState.OPEN and conn.client is not None and conn.client.claims is not None:
                conn.client.send({"t": "reconnect", "after_ms": random.randrange(spread_ms)})
            conn.close(code, "node shutting down")
        deadline = asyncio.get_running_loop().time() + self.settings.close_timeout_s
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
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
        await self.broker.close()
        await self.presence.close()
        await self.limiter.close()
        await self.store.close()
        log.info("node %s stopped", self.node_id)

    def trusts(self, ip: str) -> bool:
        """Whether a peer is one of our load balancers (an address or a network in --trusted-proxy)."""
        if not self._trusted or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def client_ip(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's address: the peer's, or behind our own load balancer (every connection comes from it) the
        last address it added to X-Forwarded-For. A client may send its own header lines too: only the last value
        of the last line counts."""
        if forwarded_for and self.trusts(peer):
            return forwarded_for[-1].rpartition(",")[2].strip() or peer
        return peer

    def clock_precise(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # Connections

    def connection_made(self, conn: WsConnection) -> None:
        self.connections.add(conn)

    def admit(self, conn: WsConnection) -> int | None:
        """None to accept the handshake, or the seconds for Retry-After with an HTTP 503."""
        settings = self.settings
        retry: int | None = None
        reason = ""
        if self.draining or not self.ready:
            retry, reason = 5, "not_ready"
        elif conn.staff_lane:
            # Not counted against max_connections or the per-IP cap (a leader may share a NAT with thousands of
            # citizens); bounded by its own cap instead, and a citizen's hello on it is refused (Client._hello). The cap
            # counts joined staff sessions only: upgrades that never say hello would otherwise hold every slot. Those
            # are bounded by the lane's handshake rate times hello_timeout (20/s x 10 s = 200 by default).
            if self.staff_joined >= settings.max_staff_connections:
                retry, reason = 2, "staff_max_connections"
            elif self._staff_handshakes.take(self.clock_precise()):
                retry, reason = 1, "staff_rate"
        elif self.open_count >= settings.max_connections:
            retry, reason = 2, "max_connections"
        elif self.per_ip[conn.ip] >= settings.max_connections_per_ip:
            retry, reason = 10, "per_ip"
        elif self._handshakes.take(self.clock_precise()):
            retry, reason = 1, "rate"
        if retry is not None:
            self.rejected_handshakes += 1
            self.metrics.handshakes_rejected[reason] += 1
        return retry

    def connection_opened(self, conn: WsConnection) -> None:
        self.open_count += 1
        self.per_ip[conn.ip] += 1
        conn.client = Client(self, conn)

    def connection_lost(self, conn: WsConnection) -> None:
        self.connections.discard(conn)
        client = conn.client
        if client is None:
            return
        self.open_count -= 1
        if conn.staff_lane and client.claims is not None:
            self.staff_joined -= 1
        left = self.per_ip[conn.ip] - 1
        if left > 0:
            self.per_ip[conn.ip] = left
        else:
            self.per_ip.pop(conn.ip, None)
        client.on_closed()
        if client.claims is not None:
            self.metrics.leaves += 1
            self.hub.remove_user(client.claims.sub, conn)
            if client.claims.role is Role.CITIZEN:
                self.tally.leave(client.th, client.claims.unit)
            self._leave(public_channel(client.th), conn)
            self._leave(moderation_channel(client.th), conn)
            self.audio.maybe_unwanted(client.th)

    def _leave(self, channel: str, conn: WsConnection) -> None:
        if self.hub.remove(channel, conn):
            self._spawn(self.broker.unsubscribe(channel))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_log_task_error)

    async def _listen(self, channel: str, conn: WsConnection, seq_field: str = "seq", *, staff: bool = False) -> None:
        """Join a room, and return once the broker carries its channel to this node. Every join into the room waits
        for the same subscription (not only the one that created the room); a failed one is tried again by the next
        join, so a room never goes on without one."""
        self.hub.add(channel, conn, seq_field, staff=staff)
        room = self.hub.room(channel)
        assert room is not None
        task = room.subscribing
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = room.subscribing = asyncio.get_running_loop().create_task(self.broker.subscribe(channel))
            task.add_done_callback(_retrieve)
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
        self.metrics.joins[str(claims.role)] += 1
        self.hub.add_user(claims.sub, conn)
        if claims.role is Role.CITIZEN:  # undone in connection_lost or abandon_join
            self.tally.join(th, claims.unit)
        conn.feed = feed_of(conn.encoding, client.mode)
        await self._listen(channel, conn, staff=claims.role in STAFF)
        if client.mode is Mode.AUDIO:
            await self.audio.wanted(th)
        staff = claims.role in (Role.MODERATOR, Role.ADMIN)
        mod_channel = moderation_channel(th)
        if staff:
            await self._listen(mod_channel, conn, MODERATION_SEQ)
        if conn.state is not ConnState.OPEN:
            return
        history_size = self.settings.history_size
        recovered = False
        mhist: HistoryResult | None = None
        if last_seq is not None and (not staff or last_mseq is not None):
            hist = await self.broker.history(channel, last_seq, history_size)
            recovered = hist.complete and last_seq <= hist.head
            if recovered and staff and last_mseq is not None:
                mhist = await self.broker.history(mod_channel, last_mseq, history_size)
                recovered = mhist.complete and last_mseq <= mhist.head
        if not recovered:
            hist = await self.broker.history(channel, 0, self.settings.snapshot_speech)
            if staff:
                # Only the head, and before the store's queue is read: every notice numbered up to it describes a
                # change the queue already shows, every later one reaches the session live.
                mhist = await self.broker.history(mod_channel, 0, 0)
        conn.cork()
        try:
            await self._send_join(client, townhall, hist, recovered, mhist)
        finally:
            conn.uncork()
        after = {"seq": hist.head}
        if mhist is not None:
            after[MODERATION_SEQ] = mhist.head
        self.fanout.resume(conn, after)

    def abandon_join(self, client: Client) -> None:
        """Undo a join that failed or ran out of time, at once: the session must not stay in its rooms, paused and
        buffering their frames, until its close completes. The caller closes it (1013 or 1011)."""
        claims = client.claims
        if claims is None:
            return
        conn = client.conn
        conn.paused = None
        self.metrics.leaves += 1  # it counted as a join
        self.hub.remove_user(claims.sub, conn)
        if claims.role is Role.CITIZEN:
            self.tally.leave(client.th, claims.unit)
        self._leave(public_channel(client.th), conn)
        self._leave(moderation_channel(client.th), conn)
        self.audio.maybe_unwanted(client.th)
        client.claims = None

    async def _send_join(
        self, client: Client, townhall: Townhall, hist: HistoryResult, recovered: bool, mhist: HistoryResult | None
    ) -> None:
        """The join's own frames: welcome, then the replay (with fresh aggregates) or a snapshot."""
        claims = client.claims
        assert claims is not None
        th = townhall.id
        staff = claims.role in (Role.MODERATOR, Role.ADMIN)
        head = hist.head
        welcome = {
            "t": "welcome",
            "role": str(claims.role),
            "sub": claims.sub,
            "name": claims.name,
            "th": th,
            "title": townhall.title,
            "status": str(townhall.status),
            "seq": head,
            "recovered": recovered,
        }
        if mhist is not None:
            welcome[MODERATION_SEQ] = mhist.head
        client.send(welcome)
        if recovered:
            for pub in hist.publications:
                client.send({**pub.data, "seq": pub.seq})
            if mhist is not None:
                for pub in mhist.publications:
                    client.send({**pub.data, MODERATION_SEQ: pub.seq})
            # Aggregates are not in the stream: bring them up to date once, instead of waiting for the next change;
            # `votes` always, with empty maps when no question is public, as docs/protocol.md section 2 says.
            client.send({"t": "viewers", **self._audience(th)})
            votes, groups = await self.store.top_votes(th, self.settings.top_votes)
            client.send({"t": "votes", "v": votes, "g": groups})
        else:
            questions = await self.store.questions(th, PUBLIC_STATES)
            audience = self._audience(th)
            polls = await self.store.polls(th, (PollState.OPEN, PollState.CLOSED))
            snapshot: dict[str, Any] = {
                "t": "snapshot",
                "seq": head,
                "status": str(townhall.status),
                "polls": [p.public() for p in polls],
                "slow_mode": townhall.slow_mode_s,
                "reactions": await self.store.add_reactions(th, {}),
                "speech": [
                    {**p.data, "seq": p.seq} for p in hist.publications if p.data["t"] in ("speech", "announce")
                ],
                "questions": [q.public() for q in questions],
                "viewers": audience["n"],
                "staff": audience["staff"],
            }
            if staff:
                pending = await self.store.questions(th, (QState.PENDING,))
                snapshot["queue"] = [q.for_moderators() for q in pending[:SNAPSHOT_QUEUE_MAX]]
                snapshot[MODERATION_SEQ] = mhist.head if mhist is not None else 0
            client.send(snapshot)
        if client.mode is Mode.AUDIO:
            await self._send_audio_init(client)

    async def _send_audio_init(self, client: Client) -> None:
        """A listener who starts now begins at the current recording: its init chunk first (audio_channel.py)."""
        init = await self.audio.latest_init(client.th)
        if init is not None:
            client.send(dict(init))

    async def set_mode(self, client: Client, mode: Mode) -> None:
        """A joined session changes its listening mode (the `mode` message): another feed in its rooms, and the town
        hall's audio subscribed or dropped as this node's audio listeners come and go."""
        conn, th = client.conn, client.th
        client.mode = mode
        self.hub.set_feed(conn, feed_of(conn.encoding, mode), [public_channel(th), moderation_channel(th)])
        if mode is Mode.AUDIO:
            await self.audio.wanted(th)
            await self._send_audio_init(client)
        else:
            self.audio.maybe_unwanted(th)

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
        return seq, dup

    async def end_townhall(self, th: str, by: str) -> tuple[Townhall, int]:
        """End a town hall (the `end` message and the REST call alike): every open poll closes with its exact final
        counts, a `poll` event each, before the `status ended` event, whose arrival closes every session with 4005.
        Returns the town hall and the status event's seq."""
        townhall = await self.store.set_status(th, Status.ENDED)
        for poll in await self.store.polls(th, (PollState.OPEN,)):
            try:
                closed = await self.store.set_poll_state(th, poll.pid, PollState.CLOSED, by)
            except BadState:
                continue  # a poll_close got there first and published its own event
            await self.publish_event(th, {"t": "poll", "p": closed.public()})
        seq = await self.publish_event(th, {"t": "status", "status": str(Status.ENDED)})
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
        if q.state is QState.PENDING:
            message: dict[str, Any] = {"t": "queue_add", "q": q.for_moderators()}
        elif q.state is QState.REJECTED and [d.by for d in q.decisions] == ["auto"]:
            reason = ",".join(q.flags)
            message = {"t": "queue_update", "qid": q.qid, "state": str(q.state), "pinned": False, "by": "auto"}
            message["reason"] = reason
        else:
            return
        await self.publish_moderation(th, message, key=f"q:{q.qid}")

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
        await self.audio.publish(th, data, init, mime)

    def count_reaction(self, th: str, kind: str) -> None:
        """Reactions are counted here and sent on as one total per town hall per aggregates tick."""
        counts = self._reactions.setdefault(th, {})
        counts[kind] = counts.get(kind, 0) + 1

    # BrokerEventHandler

    def handle_publication(self, pub: Publication) -> None:
        data = pub.data
        t = data["t"]
        if pub.channel == CONTROL_CHANNEL:
            self._control(data)
            return
        audio_th = audio_townhall(pub.channel)
        if audio_th is not None:
            public = self.hub.room(public_channel(audio_th))
            if public is not None:
                self.fanout.enqueue_audio(public, data)  # to the room's members in audio mode only
            return
        room = self.hub.room(pub.channel)
        if room is None:
            return
        if t in CONFLATED:
            self.fanout.conflate(room, data)
        elif pub.seq == 0:
            self.fanout.enqueue(room, 0, data, droppable=(t == "audio"))
        else:
            self._deliver_event(room, pub.seq, data)
        if t == "status" and data.get("status") == Status.ENDED:
            # Let the status event reach everyone first, then close the room with 4005.
            asyncio.get_running_loop().call_later(
                self.settings.tick_ms / 1000 + 0.2, self._close_room, pub.channel, CloseCode.TOWNHALL_ENDED
            )

    def _deliver_event(self, room: Room, seq: int, data: Mapping[str, Any]) -> None:
        """Deliver stream events in seq order; a hole (publications lost while the broker reconnected) is filled
        from history before anything after it goes out."""
        if room.gap_buffer is not None:
            room.gap_buffer.append((seq, dict(data)))
            return
        if seq <= room.last_seq:
            return  # already delivered (e.g. read from history while filling a gap)
        if room.last_seq and seq > room.last_seq + 1:
            room.gap_buffer = [(seq, dict(data))]
            self.stream_gaps += 1
            self._spawn(self._fill_gap(room))
            return
        room.last_seq = seq
        self.fanout.enqueue(room, seq, data)

    async def _fill_gap(self, room: Room) -> None:
        try:
            hist = await self.broker.history(room.channel, room.last_seq, self.settings.history_size)
        except Exception as exc:
            log.warning("could not fill a gap in %s: %s", room.channel, type(exc).__name__)
            hist = None
        buffered, room.gap_buffer = room.gap_buffer or [], None
        if hist is None or not hist.complete:
            # The missed events are gone from history: these sessions must start again from a snapshot.
            log.warning("gap in %s older than history; asking its sessions to resync", room.channel)
            room.last_seq = max([seq for seq, _ in buffered] + [hist.head if hist else 0])
            self._close_room(room.channel, CloseCode.SERVICE_RESTART)
            return
        for pub in hist.publications:
            self._deliver_event(room, pub.seq, pub.data)
        for seq, data in buffered:
            self._deliver_event(room, seq, data)

    def _control(self, data: Mapping[str, Any]) -> None:
        if data.get("t") == "kick":
            th = data.get("th")
            for member in list(self.hub.users.get(str(data.get("sub")), ())):
                if isinstance(member, WsConnection) and member.client is not None:
                    if th in ("*", member.client.th):
                        member.close(CloseCode.BANNED)

    def live_channels(self) -> list[str]:
        return [CONTROL_CHANNEL, *self.hub.channels(), *self.audio.channels()]

    def _close_room(self, channel: str, code: CloseCode) -> None:
        room = self.hub.room(channel)
        if room is None:
            return
        for member in list(room.members):
            if isinstance(member, WsConnection):
                member.close(code)

    # Shared timers: one for all connections, never one per connection.

    async def _wheel(self) -> None:
        settings = self.settings
        assert self._loop is not None
        while True:
            await asyncio.sleep(WHEEL_INTERVAL_S)
            now = self.clock = self._loop.time()
            ping_after = settings.ping_interval_s
            dead_after = settings.ping_interval_s + settings.ping_timeout_s
            for conn in list(self.connections):
                state = conn.state
                if state is ConnState.OPEN:
                    conn.pings = 0
                    if conn.client is not None:
                        conn.client.limited_answers = 0
                    idle = now - conn.last_seen
                    if conn.client is not None and conn.client.claims is None and conn.client.inbox is None:
                        if now - conn.opened_at > settings.hello_timeout_s:
                            conn.close(CloseCode.HELLO_TIMEOUT)
                            continue
                    if idle > dead_after:
                        conn.fail(CloseCode.INTERNAL_ERROR, "keepalive timeout")
                        conn.abort()
                    elif idle > ping_after and not conn.pinged:
                        conn.pinged = True
                        conn.send_frame(PING_FRAME)
                elif state is ConnState.HANDSHAKE:
                    if now - conn.opened_at > settings.hello_timeout_s:
                        conn.abort()
                elif state is ConnState.CLOSING and now - conn.closing_since > settings.close_timeout_s:
                    conn.abort()

    async def _aggregates(self) -> None:
        """Every presence interval: report and read viewer counts, and sum reactions into the store."""
        while True:
            await asyncio.sleep(self.settings.presence_interval_s)
            try:
                await self._aggregate_once()
            except Exception as exc:
                log.warning("aggregates tick failed: %s", type(exc).__name__)

    async def _rollups(self) -> None:
        """Every presence interval: the roll-up's writes, one per town hall with changes, concurrently (pipelined)."""
        while True:
            await asyncio.sleep(self.settings.presence_interval_s)
            await self.rollup_once()

    async def rollup_once(self) -> None:
        index = None
        if self.tally.has_units:  # only citizens with a unit need the tree (no store call for town halls without)
            try:
                index = await self.regions.index()
            except OSError:  # no copy of the tree yet and the store is unreachable: units count under their own code
                pass
        path_of = path_in(index.tree if index is not None else None)

        async def write(th: str) -> None:
            viewers, activity, full = self.tally.take(th, path_of)
            report = f"{self.node_id}.{self.tally.report(th)}"
            try:
                written = await self.rollup.write(report, th, viewers, activity, full=full)
            except Exception as exc:
                log.warning("roll-up write failed: %s", type(exc).__name__)
                self.tally.written(th, "failed")
            else:  # forgotten: taken for dead meanwhile; its next write starts the report again, whole
                self.tally.written(th, "written" if written else "forgotten")

        async with self._rollup_lock:
            await asyncio.gather(*(write(th) for th in self.tally.pending()))

    async def _aggregate_once(self) -> None:
        rooms = self.hub.rooms.items()
        local = {channel[3:]: _room_audience(room) for channel, room in rooms if not channel.endswith(":mod")}
        await self.presence.report(self.node_id, local)
        self._viewers = await self.presence.totals(local)
        now = self.clock_precise()
        for th, audience in self._viewers.items():
            room = self.hub.room(public_channel(th))
            if room is None:
                continue
            if now >= room.viewers_due or room.events:
                message = {"t": "viewers", "n": audience.citizens, "staff": audience.staff}
                if self._send_if_changed(room, "viewers", message, True):
                    room.viewers_due = now + len(room.members) / VIEWERS_LISTENERS_PER_S
        # Votes, reactions and poll tallies: every node reads the exact totals from the store once per tick and sends
        # them to its local listeners when they changed. Nothing per vote or per tap crosses the broker.
        reactions, self._reactions = self._reactions, {}
        for th in local:
            room = self.hub.room(public_channel(th))
            if room is None:
                continue
            votes, groups = await self.store.top_votes(th, self.settings.top_votes)
            self._send_if_changed(room, "votes", {"t": "votes", "v": votes, "g": groups}, bool(votes))
            totals = await self.store.add_reactions(th, reactions.pop(th, {}))
            self._send_if_changed(room, "reactions", {"t": "reactions", "c": totals}, bool(totals))
            for poll in await self.store.polls(th, (PollState.OPEN,)):
                message = {"t": "poll_counts", "pid": poll.pid, "c": list(poll.counts)}
                self._send_if_changed(room, f"poll_counts:{poll.pid}", message, True)
        for th, counts in reactions.items():  # taps from sessions that left before the tick
            await self.store.add_reactions(th, counts)
        self._ticks += 1
        if self._ticks % QUEUE_DEPTH_EVERY == 0:  # for the metrics; only where this node has moderators
            depth = {}
            for channel in self.hub.rooms:
                if channel.endswith(":mod"):
                    th = channel[3:-4]
                    depth[th] = len(await self.store.questions(th, (QState.PENDING,)))
            self.metrics.queue_depth = depth

    def _send_if_changed(self, room: Room, key: str, message: dict[str, Any], worth_sending: bool) -> bool:
        # The stored value is compared with the next one, so it must not share mutable parts with the store's objects.
        if worth_sending and room.sent.get(key) != message:
            room.sent[key] = copy.deepcopy(message)
            self.fanout.conflate(room, message, key)
            return True
        return False

    def _audience(self, th: str) -> dict[str, int]:
        """`viewers.n` (citizens) and `viewers.staff` of a town hall: the last total over every node, or what this
        node alone has when that is more (a session that just joined is counted before the next presence tick)."""
        total = self._viewers.get(th, Audience())
        room = self.hub.room(public_channel(th))
        here = _room_audience(room) if room is not None else Audience()
        return {"n": max(total.citizens, here.citizens), "staff": max(total.staff, here.staff)}

    def stats(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "connections": self.open_count,
            "rooms": len(self.hub.rooms),
            "slow_consumer_drops": self.slow_consumer_drops,
            "rejected_handshakes": self.rejected_handshakes,
            "stream_gaps": self.stream_gaps,
            "frames_built": self.fanout.frames_built,
            "broadcast_writes": self.fanout.writes,
        }


def _room_audience(room: Room) -> Audience:
    return Audience(len(room.members) - room.staff, room.staff)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shared task's failure as seen: its waiters got it (or timed out); it must not be logged as lost."""
    if not task.cancelled():
        task.exception()


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task failed: %r", task.exception())
