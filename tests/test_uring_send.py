"""The fan-out's batched sends through io_uring (issue 19 item 4, uring_send.py), on real loopback TCP sockets: each
completion is handled as a direct send's return (all of it: done; part of it or EAGAIN: the rest to `write_rest`;
a dead peer: `write_rest` too), every send completes inline, and the fallback to direct sends is decided once."""

from __future__ import annotations

import logging
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from jansamvad.settings_option import SettingsError
from jansamvad.uring_send import UringSender, open_sender

pytestmark = pytest.mark.timeout(30)


def _ring_available() -> bool:
    try:
        UringSender().close()
    except (ImportError, OSError):
        return False
    return True


needs_ring = pytest.mark.skipif(not _ring_available(), reason="io_uring is not available on this machine")


class Member:
    """A listener as the sender sees it: a real socket, and a record of what went to its transport."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self.rests: list[tuple[bytes, int]] = []

    def write_rest(self, blob: bytes, sent: int) -> None:
        self.rests.append((blob, sent))


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Loopback TCP pairs (node end, reader end): the node's end non-blocking with small buffers, as a stalled
    phone's connection with --send-buffer-bytes."""
    made: list[tuple[socket.socket, socket.socket]] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def more(n: int) -> None:
        for _ in range(n):
            reader = socket.socket()
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.connect(listener.getsockname())
            node, _ = listener.accept()
            node.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            node.setblocking(False)
            made.append((node, reader))

    more(8)
    yield made
    listener.close()
    for node, reader in made:
        node.close()
        reader.close()


@pytest.fixture
def sender() -> Iterator[UringSender]:
    if not _ring_available():
        pytest.skip("io_uring is not available on this machine")
    ring = UringSender(entries=4)  # 4 entries: a batch of 8 members is two submits
    yield ring
    ring.close()


def read_all(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(5)
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        assert chunk, "the peer closed early"
        got += chunk
    return got


def test_uring_send_full_sends_reach_every_member_and_leave_the_transport_alone(
    pairs: list[tuple[socket.socket, socket.socket]], sender: UringSender
) -> None:
    members = [Member(node) for node, _ in pairs]
    blob = bytes(range(200))
    sender.send(members, blob)
    sender.send(members, blob[::-1])
    assert sender.batches == 4 and sender.sends == 16  # two submits per send: 8 members, 4 entries
    for member, (_, reader) in zip(members, pairs, strict=True):
        assert member.rests == []
        assert read_all(reader, 400) == blob + blob[::-1]  # in order, whole, once


def test_uring_send_partial_and_eagain_hand_the_rest_to_the_transport(
    pairs: list[tuple[socket.socket, socket.socket]], sender: UringSender
) -> None:
    (node, reader), *_ = pairs
    member = Member(node)
    blob = bytes(i % 251 for i in range(1 << 20))  # far more than the two small buffers hold
    sender.send([member], blob)
    ((rest_blob, sent),) = member.rests
    assert rest_blob is blob and 0 < sent < len(blob)  # a partial send: the kernel took `sent` bytes
    taken = [sent]
    for _ in range(50):  # the buffers fill up (the kernel may still take a little): then EAGAIN
        sender.send([member], blob)
        assert member.rests[-1][0] is blob
        taken.append(member.rests[-1][1])
        if taken[-1] == 0:
            break
    assert taken[-1] == 0  # EAGAIN: all of the blob to the transport
    assert sender.usable  # and the completion came inline, as every one must
    assert read_all(reader, sum(taken)) == b"".join(blob[:n] for n in taken)  # each the blob's head, uncut


def test_uring_send_a_dead_peer_mid_batch_goes_to_the_transport_and_spares_the_rest(
    pairs: list[tuple[socket.socket, socket.socket]], sender: UringSender
) -> None:
    members = [Member(node) for node, _ in pairs]
    _, gone = pairs[5]
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()  # RST: the node's end sees ECONNRESET / EPIPE on its next send
    blob = b"x" * 300
    sender.send(members, blob)  # the first may still be taken (the RST races it); the second is refused
    sender.send(members, blob)
    assert members[5].rests and members[5].rests[-1] == (blob, 0)  # an error: the transport's to find and close
    for i, (member, (_, reader)) in enumerate(zip(members, pairs, strict=True)):
        if i != 5:
            assert member.rests == []
            assert read_all(reader, 600) == blob * 2
    assert sender.usable  # an error completion is an ordinary answer, not a reason to give the ring up


def test_uring_send_off_is_direct_sends_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jansamvad.uring"):
        assert open_sender("off") is None
    assert "--io-uring off" in caplog.text


def test_uring_send_auto_falls_back_when_io_uring_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "liburing", None)  # the import fails, as without the wheel
    with caplog.at_level(logging.INFO, logger="jansamvad.uring"):
        assert open_sender("auto") is None
    assert "io_uring not available" in caplog.text
    with pytest.raises(SettingsError, match="--io-uring on"):
        open_sender("on")


def test_uring_send_auto_falls_back_when_the_kernel_refuses_a_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    import liburing  # type: ignore[import-untyped]

    def refused(entries: int, ring: object, flags: int = 0) -> None:
        raise PermissionError(1, "Operation not permitted")  # io_uring_disabled = 2, or a seccomp filter

    monkeypatch.setattr(liburing, "io_uring_queue_init", refused)
    assert open_sender("auto") is None
    with pytest.raises(SettingsError):
        open_sender("on")


@needs_ring
def test_uring_send_auto_uses_io_uring_where_the_kernel_allows_it() -> None:
    ring = open_sender("auto")  # this machine's kernel allows it (the bench and CI machines run 6.x)
    assert ring is not None and ring.usable
    ring.close()
