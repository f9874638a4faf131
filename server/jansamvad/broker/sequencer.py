"""The one sequencer: a channel's numbered publications reach the node once each, in seq order, or it is told so.

Every broker hands its numbered publications to a `Sequencer` (ephemeral ones, seq 0, go straight through). The
sequencer remembers the last seq it delivered per channel. A publication that skips ahead means some were missed
(the subscription dropped and came back, a reconnect): the sequencer holds live ones back, reads the missed ones
from history and delivers them first. What history no longer has (it went past the window, the seq restarted, or
history could not be read) is reported once through the handler's `handle_gone`, and the node alone decides what
to do about it (node.py: its sessions resync from a snapshot). A hole is never passed on silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from jansamvad.broker.base import BrokerEventHandler, HistoryResult, Publication

log = logging.getLogger("jansamvad.broker")


class Sequencer:
    def __init__(
        self,
        read_history: Callable[[str, int], Awaitable[HistoryResult]],  # (channel, since): the rest of its history
        handler: Callable[[], BrokerEventHandler | None],  # None once the broker closed
        wanted: Callable[[str], bool],  # whether the broker still subscribes to a channel
    ) -> None:
        self._read_history = read_history
        self._handler = handler
        self._wanted = wanted
        self._last: dict[str, int] = {}  # the last seq delivered per channel: where a hole starts
        self._recovering: dict[str, list[Publication]] = {}  # live publications held back while a hole is filled
        self._recover_again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.gaps = 0  # holes found (filled from history, or reported gone)
        self.holes_filled = 0  # publications delivered from history because live delivery missed them

    def knows(self, channel: str) -> bool:
        return channel in self._last or channel in self._recovering

    def delivered(self, channel: str) -> int | None:
        return self._last.get(channel)

    async def start_at_head(self, channel: str, head: Awaitable[int]) -> None:
        """Note the channel's head as the last seq delivered, so that a hole after a reconnect is filled even on a
        channel this node has delivered nothing of yet (a quiet moderation stream). Live events that arrive meanwhile
        wait; those up to the head are dropped: whoever listens reads history after the subscription is made."""
        self._recovering[channel] = []
        ok = False
        try:
            at = await head
            if self._wanted(channel):  # not if unsubscribed meanwhile: a stale start would replay old events
                self._last.setdefault(channel, at)
            ok = True
        finally:
            held = self._recovering.pop(channel, None) or []
            self._release(channel, held, checked=ok)

    def forget(self, channel: str) -> None:
        self._last.pop(channel, None)
        self._recovering.pop(channel, None)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def accept(self, pub: Publication) -> None:
        """A publication as it arrived live."""
        handler = self._handler()
        if handler is None:
            return
        channel, seq = pub.channel, pub.seq
        if seq == 0:
            handler.handle_publication(pub)  # ephemeral: no place in the order, never held back
            return
        held = self._recovering.get(channel)
        if held is not None:
            held.append(pub)
            return
        last = self._last.get(channel)
        if last is not None and seq > last + 1:
            self._recovering[channel] = [pub]
            self._start_recovery(channel)
            return
        if last is not None and seq <= last:
            # Already delivered from history: a fill may read history on another connection, so the live copy of an
            # event it found can still arrive afterwards.
            return
        self._last[channel] = seq
        handler.handle_publication(pub)

    def recover(self, channel: str) -> None:
        """The subscription was made again (after a loss): read what was published meanwhile."""
        if channel in self._recovering:
            self._recover_again.add(channel)
            return
        self._recovering[channel] = []
        self._start_recovery(channel)

    def _start_recovery(self, channel: str) -> None:
        task = asyncio.get_running_loop().create_task(self._fill(channel), name=f"jansamvad-recover-{channel}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gone(self, channel: str, seqs: range) -> None:
        handler = self._handler()
        if seqs and handler is not None and self._wanted(channel):
            log.warning("%s: seqs %d..%d are gone from history", channel, seqs.start, seqs.stop - 1)
            handler.handle_gone(channel, seqs)

    async def _fill(self, channel: str) -> None:
        """Deliver from history what was published since the last delivered seq, then what was held back."""
        ok = False
        found = False  # a hole: something filled from history or reported gone
        try:
            while True:
                self._recover_again.discard(channel)
                since = self._last.get(channel, 0)
                hist = await self._read_history(channel, since)
                if hist.head < since:
                    log.error(
                        "the seq of %s restarted at %d (was %d): the broker lost its data", channel, hist.head, since
                    )
                    found = True
                    self._gone(channel, range(1, since + 1))  # the numbers listeners hold now name other events
                    since = self._last[channel] = 0
                    hist = await self._read_history(channel, 0)
                if not hist.complete:
                    first = hist.publications[0].seq if hist.publications else hist.head + 1
                    found = found or first > since + 1
                    self._gone(channel, range(since + 1, first))
                handler = self._handler()
                if handler is None or not self._wanted(channel):
                    return
                for pub in hist.publications:
                    if pub.seq > since:
                        since = self._last[channel] = pub.seq
                        self.holes_filled += 1
                        found = True
                        handler.handle_publication(pub)
                if channel not in self._recover_again:
                    ok = True
                    return
        except Exception as exc:
            log.warning("could not fill the hole in %s: %s", channel, exc or type(exc).__name__)
        finally:
            self.gaps += found
            held = self._recovering.pop(channel, None) or []
            self._release(channel, held, checked=ok)

    def _release(self, channel: str, held: list[Publication], *, checked: bool) -> None:
        handler = self._handler()
        if handler is None or not self._wanted(channel):
            return
        for pub in held:
            last = self._last.get(channel, 0)
            if pub.seq <= last:
                continue  # history already delivered it
            if checked:
                self.accept(pub)  # a hole behind it starts another fill
            else:
                # History could not be read (the broker is down again): what it would have filled is gone for this
                # node; say so, then deliver what we have rather than hold it forever.
                if channel in self._last and pub.seq > last + 1:
                    self.gaps += 1
                    self._gone(channel, range(last + 1, pub.seq))
                self._last[channel] = pub.seq
                handler.handle_publication(pub)
