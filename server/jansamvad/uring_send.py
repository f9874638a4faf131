"""Batched direct sends (issue 19 item 4, `--io-uring`): one `io_uring_enter` submits a SEND per listener.

A broadcast's cost is the kernel's send path, one `send(2)` per listener per tick (direct_send.py). io_uring takes
the same sends as a batch of submission entries, so a thousand listeners cost one system-call entry instead of a
thousand (`loadtest/bench/uring_send.py` measures it: docs/benchmarks.md, "Fourth round").

Every SEND carries MSG_DONTWAIT on a non-blocking socket, so the kernel completes it inline, during the submit: a
completion with the bytes it took, or -EAGAIN. Nothing is ever armed to wait for room, so nothing is sent later
behind the node's back, and the submit and the reaping of every completion happen synchronously inside the
fan-out's write loop, with no await in between. That also makes this independent of the event loop (uvloop or
asyncio). Each completion is handled exactly as a direct send's return: all of the blob, done; part of it or
-EAGAIN, the rest to the transport (`write_rest`), which then holds bytes and takes every later frame until it
drained; an error (a peer gone), `write_rest` too, whose transport write finds the error and closes the connection
as it would after a direct send.

No registered files or buffers: the descriptor and the blob's address go into each entry, so a connection costs
nothing here. One ring per process (its entries bound a batch), created at start-up, closed when the fan-out stops.

`--io-uring off` (the default) never uses it: it saves 6-11 % of CPU per send in the microbench, but nothing
measurable per delivery in the node (docs/benchmarks.md, "Fourth round"). `auto` uses it when the kernel and the
process allow it (the module imports, a ring can be created: not under `io_uring_disabled`, a seccomp filter or a
kernel without it) and logs which; `on` refuses to start without it.
"""

from __future__ import annotations

import logging
import socket
from _socket import socket as Socket  # what a connection's direct-send socket is (direct_send.py)
from collections.abc import Sequence
from typing import Any, Protocol

from jansamvad.settings_option import SettingsError

log = logging.getLogger("jansamvad.uring")

ENTRIES = 1024  # submission entries per ring: the largest batch (a flush writes at most writes_per_yield per slice)
_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL  # complete inline, never wait; no SIGPIPE from a closed peer


class BatchListener(Protocol):
    """What the batched send needs of a listener: its socket (set while `fast_write` is) and `write_rest`."""

    sock: Socket | None

    def write_rest(self, blob: bytes, sent: int) -> None: ...


class UringSender:
    """A ring for the fan-out's sends; `send` submits and reaps one batch synchronously."""

    def __init__(self, entries: int = ENTRIES) -> None:
        import liburing  # type: ignore[import-untyped]  # optional at run time: the fallback is direct sends

        self._lib: Any = liburing
        self._ring: Any = liburing.Ring()
        liburing.io_uring_queue_init(entries, self._ring)  # raises OSError when io_uring is refused
        self._cqe: Any = liburing.Cqe()
        self._entries = entries
        self.batches = 0  # submits made (metrics, tests)
        self.sends = 0  # entries submitted
        self.usable = True  # False after a failure the fan-out cannot see through (it then sends directly)
        self._pinned: list[bytes] = []

    def close(self) -> None:
        if self._ring is not None:
            self._lib.io_uring_queue_exit(self._ring)
            self._ring = None

    def send(self, members: Sequence[BatchListener], blob: bytes) -> None:
        """Send `blob` to every member (each has a socket and nothing queued in its transport), in batches."""
        entries = self._entries
        for start in range(0, len(members), entries):
            self._batch(members[start : start + entries], blob)

    def _batch(self, members: Sequence[BatchListener], blob: bytes) -> None:
        lib, ring, cqe = self._lib, self._ring, self._cqe
        get_sqe, prep_send = lib.io_uring_get_sqe, lib.io_uring_prep_send
        for i, member in enumerate(members):
            sqe = get_sqe(ring)
            prep_send(sqe, member.sock.fileno(), blob, _FLAGS)  # type: ignore[union-attr]  # set with fast_write
            sqe.user_data = i
        try:
            submitted = lib.io_uring_submit(ring)
        except OSError as exc:
            submitted = 0
            self._give_up(f"submit failed: {exc}", blob)
        if submitted != len(members):
            self._give_up(f"{submitted} of {len(members)} sends submitted", blob)
        self.batches += 1
        self.sends += submitted
        size = len(blob)
        seen = 0
        for _ in lib.CqeIter(ring, cqe):
            entry = cqe[0]
            seen += 1
            member = members[entry.user_data]
            try:
                sent = entry.res  # the binding raises the errno of a negative result
            except OSError:  # EAGAIN (its kernel buffer is full) or a dead peer: the transport's to handle
                sent = 0
            if sent != size:
                member.write_rest(blob, sent)
        lib.io_uring_cq_advance(ring, seen)
        if seen != submitted:
            # Cannot happen with MSG_DONTWAIT on non-blocking sockets (every SEND completes inline); if a kernel ever
            # deferred one, its bytes would go out behind the transport's back: never use the ring again.
            self._give_up(f"{submitted} sends submitted, {seen} completed inline", blob)
        for member in members[submitted:]:  # not taken by the kernel (a failed submit): the transport sends them
            member.write_rest(blob, 0)

    def _give_up(self, why: str, blob: bytes) -> None:
        log.error("io_uring: %s; fan-out sends go back to direct send(2)", why)
        self.usable = False
        self._pinned.append(blob)  # an entry may still point at it


def open_sender(mode: str) -> UringSender | None:
    """The ring for `--io-uring` (auto / on / off), decided once at start-up and logged; None: direct sends."""
    if mode == "off":
        log.info("fan-out sends: direct send(2) per listener (--io-uring off)")
        return None
    try:
        sender = UringSender()
    except (ImportError, OSError) as exc:
        if mode == "on":
            raise SettingsError(f"--io-uring on: io_uring is not available here ({exc})") from exc
        log.info("fan-out sends: direct send(2) per listener (io_uring not available: %s)", exc)
        return None
    log.info("fan-out sends: io_uring, up to %d per submit (--io-uring %s)", ENTRIES, mode)
    return sender
