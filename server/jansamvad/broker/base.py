"""The Broker interface (like centrifuge's Broker): pub/sub between nodes plus a per-channel history.

A channel's history-bearing publications get sequence numbers 1, 2, 3 ... with no holes, assigned atomically with
the publish, and every subscriber sees them in that order. Ephemeral publications (audio chunks, moderator queue
notices) carry seq 0 and are not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# How long a publication's idempotency key is remembered: far longer than any client retries (seconds), bounded so a
# long town hall's keys do not pile up forever.
PUBLISH_KEY_TTL_S = 24 * 3600
MEMORY_KEYS_PER_CHANNEL = 10_000  # the memory broker keeps the newest this many keys per channel
KEPT_TTL_S = 24 * 3600  # how long a channel's kept message (publish_kept) outlives its last publish


@dataclass(frozen=True, slots=True)
class Publication:
    channel: str
    seq: int  # 0: ephemeral, not in history
    data: Mapping[str, Any]  # the message map without seq; the node adds it when it frames the message


@dataclass(frozen=True, slots=True)
class HistoryResult:
    publications: list[Publication]
    head: int  # the channel's latest seq when the history was read
    complete: bool  # False when events after `since` have already left the history window


class BrokerEventHandler(Protocol):
    """The node's side: called for every publication on a channel this node subscribes to."""

    def handle_publication(self, pub: Publication) -> None: ...

    def handle_gone(self, channel: str, seqs: range) -> None:
        """These seqs of the channel will never be delivered (history no longer has them, or could not be read):
        the node decides what its listeners do about it (sequencer.py). Called at most once per hole."""
        ...

    def live_channels(self) -> list[str]:
        """Every channel with local listeners: what a broker must subscribe to again after it reconnects."""
        ...


class Broker(Protocol):
    async def start(self, handler: BrokerEventHandler) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: Mapping[str, Any], *, history: bool) -> int:
        """Publish to every subscribed node; return the seq (0 when `history` is False)."""
        ...

    async def publish_once(self, channel: str, data: Mapping[str, Any], key: str) -> tuple[int, bool]:
        """A history publication at most once per `key` (an idempotency key, e.g. a leader's retried speech): the
        first call publishes and returns (seq, False); a later call with the same key publishes nothing and returns
        (that seq, True). Keys are remembered for at least PUBLISH_KEY_TTL_S."""
        ...

    async def publish_kept(self, channel: str, data: Mapping[str, Any]) -> None:
        """An ephemeral publication (seq 0) that the channel also keeps as its latest kept message, replacing the one
        before (e.g. a town hall's audio init chunk, which a listener who starts later needs first). Kept for at least
        KEPT_TTL_S after it was published."""
        ...

    async def kept(self, channel: str) -> Mapping[str, Any] | None:
        """The channel's latest kept message (publish_kept), or None."""
        ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def history(self, channel: str, since: int, limit: int) -> HistoryResult:
        """Publications with seq > since, oldest first, at most `limit` of the newest."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the broker cannot publish (its server is unreachable)."""
        ...

    @property
    def stream_gaps(self) -> int:
        """Holes noticed in numbered streams, each filled from history or reported gone (broker/sequencer.py)."""
        ...

    def delivered(self, channel: str) -> int | None:
        """The last seq of a channel this node handed on (None: not subscribed, or nothing known yet)."""
        ...
