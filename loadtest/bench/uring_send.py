"""Does io_uring save CPU per send over `sock.send`? `python -m loadtest.bench.uring_send` (issue 19 item 4).

The fan-out's direct send is one `send(2)` per listener per tick. This microbench asks whether submitting those
sends as io_uring SEND entries, many per `io_uring_enter`, costs the sending process less CPU per send. It opens
`--conns` loopback TCP pairs: the accepted ends stay here (non-blocking, TCP_NODELAY, as a node's WebSockets), the
connecting ends live in a reader process that drains them with epoll. Each round sends one frame to every
connection; a round is timed in process CPU time (user + system from getrusage, all threads: io_uring's own
workers would count here too), never wall time. Methods, run in alternating order within each repetition:

- `send`: a Python socket object's `send` per connection (today's direct send);
- `uring<B>`: batches of B SENDs (`MSG_DONTWAIT`, non-blocking sockets: a SEND completes inline with the bytes it
  took or -EAGAIN, never a poll-armed wait), one `io_uring_submit` per batch, then every CQE reaped and read.

Between rounds it sleeps until the reader has had time to drain (`--gap`), so nearly every send finds room; short
sends and EAGAIN are counted and reported. Prints one JSON object: µs of CPU per send per method and repetition,
their medians, and each method's ratio to `send`. Loopback only, bounded: `rounds × reps × methods` rounds, and the
reader exits by itself after `--lifetime` seconds or when this process closes its pipe.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

HOST = "127.0.0.1"


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def reader(port: int, conns: int, lifetime: float) -> None:
    """Connect `conns` sockets and drain them until stdin closes or `lifetime` passes."""
    _raise_nofile()
    socks = []
    for _ in range(conns):
        s = socket.create_connection((HOST, port))
        s.setblocking(False)
        socks.append(s)
    by_fd = {s.fileno(): s for s in socks}
    ep = select.epoll()
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    ep.register(sys.stdin.fileno(), select.EPOLLIN | select.EPOLLHUP)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    deadline = time.monotonic() + lifetime
    buf = bytearray(65536)
    while time.monotonic() < deadline:
        for fd, _ in ep.poll(1.0):
            if fd == sys.stdin.fileno():
                return
            try:
                while by_fd[fd].recv_into(buf):
                    pass
            except BlockingIOError:
                pass


def _send_round(socks: list[socket.socket], frame: bytes) -> tuple[int, int]:
    """Today's direct send: returns (short sends, EAGAIN)."""
    short = again = 0
    size = len(frame)
    for s in socks:
        try:
            sent = s.send(frame)
        except BlockingIOError:
            again += 1
            continue
        if sent != size:
            short += 1
    return short, again


class UringSender:
    """Batches of SENDs on one ring; submit and reap synchronously."""

    def __init__(self, batch: int, flags: int = 0) -> None:
        import liburing

        self.lib = liburing
        self.batch = batch
        self.ring = liburing.Ring()
        liburing.io_uring_queue_init(batch, self.ring, flags)
        self.cqe = liburing.Cqe()

    def close(self) -> None:
        self.lib.io_uring_queue_exit(self.ring)

    def send_round(self, fds: list[int], frame: bytes) -> tuple[int, int]:
        lib, ring, cqe = self.lib, self.ring, self.cqe
        get_sqe, prep_send, submit = lib.io_uring_get_sqe, lib.io_uring_prep_send, lib.io_uring_submit
        cq_advance, cqe_iter = lib.io_uring_cq_advance, lib.CqeIter
        dontwait = socket.MSG_DONTWAIT
        size = len(frame)
        short = again = 0
        for start in range(0, len(fds), self.batch):
            chunk = fds[start : start + self.batch]
            for i, fd in enumerate(chunk):
                sqe = get_sqe(ring)
                prep_send(sqe, fd, frame, dontwait)
                sqe.user_data = i
            submit(ring)
            seen = 0
            for _ in cqe_iter(ring, cqe):
                entry = cqe[0]
                seen += 1
                try:
                    res = entry.res
                except BlockingIOError:
                    again += 1
                    continue
                if res != size:
                    short += 1
            cq_advance(ring, seen)
            if seen != len(chunk):
                raise RuntimeError(f"{len(chunk)} sends submitted, {seen} completions reaped inline")
        return short, again


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument("--sizes", default="200,4000", help="frame sizes in bytes, comma-separated")
    parser.add_argument("--batches", default="256,1024,4096", help="io_uring batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per method per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between rounds (the reader drains)")
    parser.add_argument("--lifetime", type=float, default=600.0, help="the reader exits after this many seconds")
    parser.add_argument(
        "--setup-flags", default="", help="also rings with these IORING_SETUP_ flags: single_issuer,..."
    )
    parser.add_argument("--pin", action="store_true", help="this process on CPU 0, the reader on CPU 1")
    parser.add_argument("--reader", type=int, default=0, help=argparse.SUPPRESS)  # internal: the reader's port
    args = parser.parse_args(argv)
    if args.pin:
        os.sched_setaffinity(0, {1} if args.reader else {0})
    if args.reader:
        reader(args.reader, args.conns, args.lifetime)
        return
    _raise_nofile()
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "loadtest.bench.uring_send", "--reader", str(port), "--conns", str(args.conns)]
        + ["--lifetime", str(args.lifetime)]
        + (["--pin"] if args.pin else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        socks = []
        for _ in range(args.conns):
            s, _ = listener.accept()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"ready":
            raise RuntimeError("reader did not start")
        fds = [s.fileno() for s in socks]
        batches = [int(b) for b in args.batches.split(",") if b]
        senders = {f"uring{b}": UringSender(b) for b in batches}
        if args.setup_flags:
            import liburing

            flags = 0
            for name in args.setup_flags.split(","):
                flags |= getattr(liburing, f"IORING_SETUP_{name.upper()}")
            senders |= {f"uring{b}+flags": UringSender(b, flags) for b in batches}
        methods = ["send", *senders]
        result: dict[str, Any] = {"conns": args.conns, "rounds": args.rounds, "load_before": os.getloadavg()}
        for size in (int(s) for s in args.sizes.split(",")):
            frame = os.urandom(size)
            per: dict[str, list[float]] = {m: [] for m in methods}
            trouble: dict[str, list[int]] = {m: [0, 0] for m in methods}
            for method in methods:  # warm-up: one uncounted round each (first-touch of buffers, caches)
                time.sleep(args.gap)
                _send_round(socks, frame) if method == "send" else senders[method].send_round(fds, frame)
            user: dict[str, float] = {m: 0.0 for m in methods}
            for rep in range(args.reps):
                cpu = {m: 0.0 for m in methods}
                for round_no in range(args.rounds):
                    # Methods interleaved round by round, the order rotated: drift on this shared machine hits
                    # every method alike.
                    shift = (rep * args.rounds + round_no) % len(methods)
                    for method in methods[shift:] + methods[:shift]:
                        time.sleep(args.gap)
                        before = resource.getrusage(resource.RUSAGE_SELF)
                        if method == "send":
                            short, again = _send_round(socks, frame)
                        else:
                            short, again = senders[method].send_round(fds, frame)
                        after = resource.getrusage(resource.RUSAGE_SELF)
                        cpu[method] += after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                        user[method] += after.ru_utime - before.ru_utime
                        trouble[method][0] += short
                        trouble[method][1] += again
                for method in methods:
                    per[method].append(round(cpu[method] / (args.rounds * args.conns) * 1e6, 3))
            medians = {m: statistics.median(v) for m, v in per.items()}
            result[str(size)] = {
                "us_per_send": per,
                "median": medians,
                "ratio_to_send": {m: round(medians[m] / medians["send"], 3) for m in methods},
                "short_and_eagain": trouble,
                "user_us_per_send": {
                    m: round(user[m] / (args.reps * args.rounds * args.conns) * 1e6, 3) for m in methods
                },
            }
        result["load_after"] = os.getloadavg()
        for sender in senders.values():
            sender.close()
        print(json.dumps(result))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
