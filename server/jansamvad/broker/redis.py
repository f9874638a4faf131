"""The Redis broker: sharded pub/sub between nodes, plus each channel's history as a capped stream.

Publishing an event is one Lua script on the primary that owns the channel's slot (redis_keys.py gives all of a town
hall's keys and channels one hash tag): INCR the channel's seq, XADD the event to its stream with the id `<seq>-0`,
SPUBLISH it. So seqs have no holes, history holds exactly what was published, and because one server publishes a
channel's events in seq order over one connection per subscriber, every node receives them in that order.
Ephemeral publications (seq 0) are a bare SPUBLISH.

The payload on the wire is msgpack of {"s": seq, "d": data}; data may hold bytes (audio chunks).

Subscribing: one reader connection per primary (redis_reader.py), one SSUBSCRIBE per channel per node however many
listeners the channel has on the node. After a reader reconnects it subscribes again to the handler's live
channels (the hub is the source of truth), and the sequencer (sequencer.py) fills any hole in each channel from
history before live events go on: a channel's publications reach the handler once each, in seq order, across
reconnects, or the handler hears which seqs are gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import msgpack
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import SlotNotCoveredError

from jansamvad.broker.base import KEPT_TTL_S, PUBLISH_KEY_TTL_S, Broker, BrokerEventHandler, HistoryResult, Publication
from jansamvad.broker.redis_reader import Moved, ShardReader
from jansamvad.broker.sequencer import Sequencer
from jansamvad.redis_conn import Address, RedisConn, RedisUnavailable, Script, redact
from jansamvad.redis_keys import RedisKeys

log = logging.getLogger("jansamvad.broker.redis")

# KEYS: seq counter, history stream. ARGV: pub/sub channel, msgpack(data), history size.
# The envelope {"s": seq, "d": data} is put together byte by byte (a fixmap of two, then "s", the seq, "d" and the
# data as it came), so the data is never decoded and re-encoded in Lua, which has no bytes type.
# MAXLEN ~ trims whole stream nodes only, cheaply; history() hides what the approximate trim keeps beyond the window.
_APPEND_AND_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], string.format('%d-0', seq), 'd', ARGV[2])
redis.call('SPUBLISH', ARGV[1], '\\130\\161s' .. cmsgpack.pack(seq) .. '\\161d' .. ARGV[2])
"""
_PUBLISH = Script(_APPEND_AND_PUBLISH + "return seq\n")

# KEYS: seq counter, history stream, idempotency keys (hash key -> seq).
# ARGV: pub/sub channel, msgpack(data), history size, key, key TTL (s). Returns {seq, 1 if the key was seen before}.
_PUBLISH_ONCE = Script(
    """
local seen = redis.call('HGET', KEYS[3], ARGV[4])
if seen then
  return {tonumber(seen), 1}
end"""
    + _APPEND_AND_PUBLISH
    + """redis.call('HSET', KEYS[3], ARGV[4], seq)
redis.call('EXPIRE', KEYS[3], ARGV[5])
return {seq, 0}
"""
)

# KEYS: seq counter, history stream. ARGV: since, limit, history size.
# Returns {head, complete (1/0), entries}: head and range are read at one instant, so they agree.
_HISTORY = Script(
    """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local since, limit, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if head == 0 then
  return {0, since == 0 and 1 or 0, {}}
end
local oldest = math.max(1, head - size + 1)
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first == 0 then
  oldest = head + 1
else
  oldest = math.max(oldest, tonumber(string.match(first[1][1], '^(%d+)')))
end
local complete = since >= oldest - 1
local from = math.max(since + 1, oldest)
if head - from + 1 > limit then
  from = head - limit + 1
  complete = false
end
local entries = {}
if from <= head and limit > 0 then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', from), '+', 'COUNT', limit)
end
return {head, complete and 1 or 0, entries}
"""
)

# KEYS: the channel's kept message. ARGV: pub/sub channel, msgpack(data), TTL (s). Keep and publish in one step, so a
# listener that reads the kept message after subscribing never misses a newer one.
_PUBLISH_KEPT = Script(
    """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SPUBLISH', ARGV[1], '\\130\\161s\\000\\161d' .. ARGV[2])
return 1
"""
)

_ENVELOPE_SEQ0 = b"\x82\xa1s\x00\xa1d"  # msgpack: {"s": 0, "d": ...}, the data follows
# Filling a hole: 5 retries after 0.1, 0.2, 0.4, 0.8, 1.6 s; live events of the channel wait meanwhile (there are few:
# Redis is ill). RedisUnavailable is what every call of redis_conn.py raises for an unreachable or sick server.
_FILL_RETRY = Retry(
    ExponentialBackoff(cap=1.6, base=0.05),
    retries=5,
    supported_errors=(RedisUnavailable,),  # type: ignore[arg-type]  # a builtin ConnectionError, not a RedisError
)


async def _ignore(_: Exception) -> None:
    """Retry's failure hook: nothing to do between tries (the connection marks a sick server itself)."""


# Following the cluster's shape: tried until it works (close() cancels it), after 0.05, 0.1, 0.2 ... 2 s.
_RESHAPE_RETRY = Retry(
    ExponentialBackoff(cap=2.0, base=0.025),
    retries=-1,
    supported_errors=(Exception,),  # type: ignore[arg-type]  # whatever failed, the readers must follow the cluster
)


async def _reshape_failed(exc: Exception) -> None:
    log.warning("could not refresh the Redis cluster topology: %s", exc or type(exc).__name__)


def _pack(data: Mapping[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(data if isinstance(data, dict) else dict(data), use_bin_type=True)
    return packed


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


class RedisBroker:
    def __init__(
        self,
        conn: RedisConn,
        keys: RedisKeys,
        *,
        history_size: int = 1000,
        health_interval_s: float = 1.0,
        dead_after_s: float = 3.0,
        subscribe_timeout_s: float = 5.0,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        self._conn = conn.retain()
        # A stopped primary that failed over: move the subscriptions as soon as the connection's probe sees it
        # (about 2.5 s in tests/test_redis_health.py), not when this node's own subscriber gives up (about 7 s).
        conn.on_topology_changed.append(self._request_reshape)
        self._keys = keys
        self._history_size = history_size
        self._reader_options: dict[str, float] = {
            "health_interval_s": health_interval_s,
            "dead_after_s": dead_after_s,
            "backoff_base_s": backoff_base_s,
            "backoff_max_s": backoff_max_s,
            "connect_timeout_s": 2 * conn.connect_timeout_s,  # TCP connect, then the handshake and resubscription
        }
        self._subscribe_timeout_s = subscribe_timeout_s
        self._handler: BrokerEventHandler | None = None
        self._readers: dict[Address, ShardReader] = {}
        self._wanted: set[str] = set()  # logical channels subscribe() was asked for and unsubscribe() not since
        self._names: dict[bytes, str] = {}  # pub/sub channel -> logical channel, for incoming messages
        self._sequencer = Sequencer(self._read_history, lambda: self._handler, self._wanted.__contains__)
        self._reshape_wanted = False
        self._reshape_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def dead_after_s(self) -> float:
        """Seconds of silence (no reply to a PING) after which a subscriber connection is given up."""
        return self._reader_options["dead_after_s"]

    # Lifecycle

    async def start(self, handler: BrokerEventHandler) -> None:
        """Connect (raising RedisUnavailable with a clear message if Redis cannot be reached) and start the readers."""
        self._handler = handler
        await self._conn.connect()
        for address in self._conn.primaries():
            self._add_reader(address)
        deadline = asyncio.get_running_loop().time() + self._conn.connect_timeout_s * 2
        while not all(r.up for r in self._readers.values()):
            if asyncio.get_running_loop().time() > deadline:
                if self.healthy:  # a shard is down: its town halls wait for it, the others can start
                    total, up = self.shards()
                    log.warning("starting with subscribers on %d of %d Redis primaries", up, total)
                    return
                await self.close()
                raise RedisUnavailable(f"cannot subscribe at Redis {redact(self._conn.url)}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reshape_task is not None:
            self._reshape_task.cancel()
            await asyncio.gather(self._reshape_task, return_exceptions=True)
        await self._sequencer.close()
        readers, self._readers = self._readers, {}
        await asyncio.gather(*(reader.close() for reader in readers.values()))
        self._handler = None
        if self._request_reshape in self._conn.on_topology_changed:
            self._conn.on_topology_changed.remove(self._request_reshape)
        await self._conn.close()

    @property
    def healthy(self) -> bool:
        """Redis can serve this node: a subscriber is up on at least one primary (standalone: on the server).

        Not all of them: a shard that is down or failing over stops only the town halls in its slots, and it stops
        them on every node alike (their actions are answered `unavailable` at once, redis_conn.py), so a node that
        called itself not ready for it would only be taken out of the load balancer for the town halls that still
        work. Not ready means Redis as a whole is out of reach (docs/reliability.md).
        """
        sick = self._conn.sick()  # known not to answer commands, though its subscriber may not have noticed yet
        return not self._closed and any(r.up and r.address not in sick for r in self._readers.values())

    @property
    def stream_gaps(self) -> int:
        return self._sequencer.gaps

    def delivered(self, channel: str) -> int | None:
        return self._sequencer.delivered(channel)

    @property
    def holes_filled(self) -> int:
        """Publications delivered from history because live delivery missed them."""
        return self._sequencer.holes_filled

    def shards(self) -> tuple[int, int]:
        """(primaries this node subscribes on, of which up): for /readyz, so an operator sees a shard that is down."""
        sick = self._conn.sick()
        return len(self._readers), sum(1 for r in self._readers.values() if r.up and r.address not in sick)

    # Publishing and history

    async def publish(self, channel: str, data: Mapping[str, Any], *, history: bool) -> int:
        keys = self._keys.channel(channel)
        body = _pack(data)
        if history:
            seq = await self._conn.run(_PUBLISH, (keys.seq, keys.hist), (keys.pub, body, self._history_size))
            await self._conn.settle(keys.seq)  # with --ack-durability: the event survives a failover once acked
            return int(seq)
        await self._conn.execute("SPUBLISH", keys.pub, _ENVELOPE_SEQ0 + body)
        return 0

    async def publish_once(self, channel: str, data: Mapping[str, Any], key: str) -> tuple[int, bool]:
        keys = self._keys.channel(channel)
        seq, seen = await self._conn.run(
            _PUBLISH_ONCE,
            (keys.seq, keys.hist, keys.pubkeys),
            (keys.pub, _pack(data), self._history_size, key, PUBLISH_KEY_TTL_S),
        )
        await self._conn.settle(keys.seq)  # also when `seen`: the first attempt may have failed to settle
        return int(seq), bool(seen)

    async def publish_kept(self, channel: str, data: Mapping[str, Any]) -> None:
        keys = self._keys.channel(channel)
        await self._conn.run(_PUBLISH_KEPT, (keys.kept,), (keys.pub, _pack(data), KEPT_TTL_S))

    async def kept(self, channel: str) -> Mapping[str, Any] | None:
        raw = await self._conn.execute("GET", self._keys.channel(channel).kept)
        return None if raw is None else dict(_unpack(raw))

    async def history(self, channel: str, since: int, limit: int) -> HistoryResult:
        keys = self._keys.channel(channel)
        head, complete, entries = await self._conn.run(
            _HISTORY, (keys.seq, keys.hist), (max(since, 0), max(limit, 0), self._history_size)
        )
        pubs = [
            Publication(channel, int(entry_id.split(b"-", 1)[0]), _unpack(fields[1])) for entry_id, fields in entries
        ]
        return HistoryResult(pubs, int(head), bool(complete))

    # Subscriptions

    async def subscribe(self, channel: str) -> None:
        """Returns once the server confirmed the subscription: publications after that reach the handler."""
        self._wanted.add(channel)
        pub = self._pub(channel)
        for attempt in range(2):
            reader = self._reader_for(pub)
            try:
                await reader.subscribe(pub, wait=self._subscribe_timeout_s)
                break
            except Moved:
                if attempt:
                    raise
                await self._reshape()
        if not self._sequencer.knows(channel):
            await self._sequencer.start_at_head(channel, self._head(channel))

    async def _head(self, channel: str) -> int:
        return (await self.history(channel, 0, 0)).head

    async def unsubscribe(self, channel: str) -> None:
        handler = self._handler
        if handler is not None and channel in handler.live_channels():
            # The node spawns unsubscribe() as a task; a new listener may have re-created the room before it ran.
            return
        self._wanted.discard(channel)
        self._sequencer.forget(channel)
        pub = self._keys.channel(channel).pub.encode()
        self._names.pop(pub, None)
        for reader in list(self._readers.values()):
            if pub in reader.active:
                try:
                    await reader.unsubscribe(pub)
                except RedisUnavailable:
                    pass  # the connection is gone, and the subscription with it

    def _pub(self, channel: str) -> bytes:
        pub = self._keys.channel(channel).pub.encode()
        self._names[pub] = channel
        return pub

    def _reader_for(self, pub: bytes) -> ShardReader:
        try:
            reader = self._readers.get(self._conn.owner(pub.decode()))
        except SlotNotCoveredError:
            reader = None
        if reader is None:
            self._request_reshape()
            raise RedisUnavailable("the Redis cluster is changing shape; no server for this channel yet")
        if reader.address in self._conn.sick():
            # Known not to answer: a subscription would wait out its whole timeout for a confirmation.
            raise RedisUnavailable(f"Redis at {reader.address[0]}:{reader.address[1]} is not answering; retry")
        return reader

    def _add_reader(self, address: Address) -> None:
        reader = ShardReader(address, lambda: self._conn.new_connection(address), self, **self._reader_options)
        self._readers[address] = reader
        reader.start()

    # ReaderOwner: called by the readers

    def on_message(self, channel: bytes, payload: bytes) -> None:
        logical = self._names.get(channel)
        if logical is None:
            return  # unsubscribed meanwhile
        try:
            envelope = _unpack(payload)
            pub = Publication(logical, int(envelope["s"]), envelope["d"])
        except Exception as exc:
            log.warning("dropping a malformed publication on %s: %s", logical, exc)
            return
        self._sequencer.accept(pub)

    def on_subscribed(self, reader: ShardReader, channel: bytes) -> None:
        logical = self._names.get(channel)
        if logical is not None and self._sequencer.delivered(logical) is not None:
            self._sequencer.recover(logical)  # subscribed again after a loss: events may have been published meanwhile

    def on_topology_changed(self, reader: ShardReader) -> None:
        self._request_reshape()

    def channels_for(self, reader: ShardReader) -> list[bytes]:
        if self._handler is not None:
            self._wanted.update(self._handler.live_channels())
        channels = []
        for channel in self._wanted:
            pub = self._pub(channel)
            try:
                if self._conn.owner(pub.decode()) == reader.address:
                    channels.append(pub)
            except SlotNotCoveredError:
                self._request_reshape()
        return channels

    # The sequencer's history

    async def _read_history(self, channel: str, since: int) -> HistoryResult:
        """History, retried for a few seconds: right after a reconnect a cluster may still answer CLUSTERDOWN."""
        return await _FILL_RETRY.call_with_retry(
            lambda: self.history(channel, since, self._history_size),
            _ignore,
            is_retryable=lambda _: channel in self._wanted,  # nobody listens any more: give up at once
        )

    # Cluster topology

    def _request_reshape(self) -> None:
        if self._closed or not self._conn.cluster:
            return
        self._reshape_wanted = True
        if self._reshape_task is None or self._reshape_task.done():
            self._reshape_task = asyncio.get_running_loop().create_task(
                self._reshape_loop(), name="jansamvad-redis-reshape"
            )

    async def _reshape_loop(self) -> None:
        while self._reshape_wanted and not self._closed:
            self._reshape_wanted = False
            await _RESHAPE_RETRY.call_with_retry(self._reshape, _reshape_failed)

    async def _reshape(self) -> None:
        """Follow the cluster: a reader per current primary, each channel subscribed on the primary that owns it."""
        await self._conn.refresh_topology()
        primaries = set(self._conn.primaries())
        for address in primaries - set(self._readers):
            log.info("redis primary %s:%s joined", *address)
            self._add_reader(address)
        for address in set(self._readers) - primaries:
            log.info("redis primary %s:%s left", *address)
            await self._readers.pop(address).close()
        for reader in self._readers.values():
            for pub in list(reader.active):
                if self._conn.owner(pub.decode()) != reader.address:
                    reader.forget(pub)
        for channel in list(self._wanted):
            pub = self._pub(channel)
            owner = self._readers.get(self._conn.owner(pub.decode()))
            if owner is not None and owner.up and pub not in owner.active:
                await owner.subscribe(pub, wait=None)


_: type[Broker] = RedisBroker
