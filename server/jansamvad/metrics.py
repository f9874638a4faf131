"""Prometheus metrics for a node, at no cost on the per-delivery hot path.

Counters are plain integers the node already keeps (or `collections.Counter`s bumped once per message received);
the collector turns them into Prometheus families only when /metrics is scraped. The two histograms are observed
once per fan-out flush and once per broker publish, never per delivery.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sized
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jansamvad.broker.base import Broker
from jansamvad.channels import Channel
from jansamvad.fanout import Fanout
from jansamvad.hub import Hub

FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BROKER_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Observed(Protocol):
    """What the collector reads of a node at scrape time (node.py's `Node`)."""

    @property
    def hub(self) -> Hub: ...

    @property
    def fanout(self) -> Fanout: ...

    @property
    def broker(self) -> Broker: ...

    @property
    def open_count(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    @property
    def slow_consumer_drops(self) -> int: ...

    @property
    def broadcasts_skipped(self) -> int: ...

    @property
    def stream_gaps(self) -> int: ...

    @property
    def screens(self) -> Sized: ...  # the booth screens joined here (screens.py)


class NodeMetrics:
    """What the node counts as it goes; read by `NodeCollector` at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_in: Counter[str] = Counter()  # by message type
        self.messages_out: Counter[str] = Counter()  # sent to one client (acks, errors, welcome, snapshot), by type
        self.errors: Counter[str] = Counter()  # error replies, by code
        self.closes: Counter[int] = Counter()  # connections the node closed, by close code
        self.joins: Counter[str] = Counter()  # by role
        self.leaves = 0
        self.rate_limited: Counter[str] = Counter()  # by what was limited
        self.handshakes_rejected: Counter[str] = Counter()  # by reason
        self.broker_errors: Counter[str] = Counter()  # by operation
        self.queue_depth: dict[str, int] = {}  # town hall -> pending questions (staff rooms only)
        self.fanout_seconds = Histogram(
            "jansamvad_fanout_seconds",
            "Time to write one tick's broadcasts to every local listener",
            buckets=FANOUT_BUCKETS,
            registry=self.registry,
        )
        self.broker_publish_seconds = Histogram(
            "jansamvad_broker_publish_seconds",
            "Round trip of one publish to the broker (Redis: script + SPUBLISH)",
            buckets=BROKER_BUCKETS,
            registry=self.registry,
        )

    def attach(self, node: Observed) -> None:
        self.registry.register(NodeCollector(node, self))


def _counter(name: str, doc: str, label: str | None, values: Counter[str] | Counter[int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label] if label else None)
    for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
        family.add_metric([str(key)], value)
    return family


class NodeCollector(Collector):
    def __init__(self, node: Observed, metrics: NodeMetrics) -> None:
        self.node = node
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        node, m = self.node, self.metrics
        yield GaugeMetricFamily("jansamvad_connections", "Open WebSocket sessions", value=node.open_count)
        yield GaugeMetricFamily("jansamvad_rooms", "Channels with local listeners", value=len(node.hub.rooms))
        viewers = GaugeMetricFamily("jansamvad_viewers", "Local listeners per town hall", labels=["townhall"])
        for name, room in node.hub.rooms.items():
            channel = Channel.parse(name)
            if channel.is_public:
                viewers.add_metric([channel.th], len(room.members))
        yield viewers
        yield GaugeMetricFamily("jansamvad_booth_screens", "Booth screens joined here", value=len(node.screens))
        yield GaugeMetricFamily("jansamvad_ready", "1 while the node accepts sessions", value=int(node.ready))
        yield GaugeMetricFamily(
            "jansamvad_broker_healthy", "1 while the broker is reachable", value=int(node.broker.healthy)
        )
        shards = getattr(node.broker, "shards", None)  # the Redis broker: one shard down is not Redis down
        if shards is not None:
            total, up = shards()
            yield GaugeMetricFamily(
                "jansamvad_redis_shards_down",
                "Redis primaries this node cannot subscribe on or that missed a call's deadline",
                value=total - up,
            )
        depth = GaugeMetricFamily("jansamvad_moderation_queue_depth", "Pending questions", labels=["townhall"])
        for th, n in m.queue_depth.items():
            depth.add_metric([th], n)
        yield depth
        yield _counter("jansamvad_joins", "Sessions joined", "role", m.joins)
        yield CounterMetricFamily("jansamvad_leaves", "Joined sessions that ended", value=m.leaves)
        yield _counter("jansamvad_messages_in", "Client messages received", "type", m.messages_in)
        yield _counter(
            "jansamvad_messages_out",
            "Messages sent to clients, by type (a broadcast counts once per listener it was meant for)",
            "type",
            m.messages_out + node.fanout.messages_out,
        )
        yield _counter("jansamvad_errors_sent", "Error replies", "code", m.errors)
        yield _counter("jansamvad_closes", "Connections closed by the node", "code", m.closes)
        yield _counter("jansamvad_rate_limited", "Actions refused by a rate limit", "what", m.rate_limited)
        yield _counter(
            "jansamvad_handshakes_rejected", "HTTP 503 answers to handshakes", "reason", m.handshakes_rejected
        )
        yield _counter("jansamvad_broker_errors", "Broker or store calls that failed", "operation", m.broker_errors)
        yield CounterMetricFamily(
            "jansamvad_slow_consumer_disconnects", "Listeners closed with 4009", value=node.slow_consumer_drops
        )
        yield CounterMetricFamily(
            "jansamvad_broadcasts_skipped",
            "Droppable broadcast writes (audio, aggregates) skipped for a slow reader",
            value=node.broadcasts_skipped,
        )
        yield CounterMetricFamily(
            "jansamvad_stream_gaps", "Gaps in a stream filled from history", value=node.stream_gaps
        )
        yield CounterMetricFamily(
            "jansamvad_frames_built",
            "Broadcast frames encoded (once per format per node)",
            value=node.fanout.frames_built,
        )
        yield _counter(
            "jansamvad_frames_built_by_format",
            "Broadcast frames encoded, by wire format (a format no listener of a room speaks is never encoded)",
            "format",
            node.fanout.frames_by_format,
        )
        yield CounterMetricFamily(
            "jansamvad_broadcast_writes", "Transport writes made by the fan-out", value=node.fanout.writes
        )
