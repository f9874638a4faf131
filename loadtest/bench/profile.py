"""Profile the node with py-spy during a scenario and summarise where its CPU goes, by self and inclusive time.

py-spy samples the node from outside (`py-spy record --pid`), so the node runs unmodified. With --native the stacks
include uvloop's C code and libc (the `send` / `writev` syscalls), which is where a fan-out spends much of its time.
Samples of an idle node (waiting in epoll) are left out by py-spy, so the percentages are of busy time.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .children import die_with_parent

STOP_TIMEOUT_S = 30.0
GC_LABEL = "[cyclic garbage collector, inside any allocation]"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


# Disjoint buckets for the node's samples: each sample goes to the first entry found anywhere on its stack, so the
# shares add up to 100 %. Names are substrings of py-spy frames; they follow the node's code and may need updating.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("gc_collect", "cyclic GC"),
    ("Fanout._flush", "fan-out writes (Fanout._flush)"),
    ("TokenService.verify", "JWT verification (TokenService.verify)"),
    ("jansamvad/joining.py", "join: welcome, snapshot (joining.py)"),
    ("Client._hello", "rest of hello (store lookups)"),
    ("jansamvad/edge.py", "upgrade at the edge: head checks, admission, 101, ServerProtocol() (edge.py)"),
    ("WsConnection._on_request", "upgrade: admission, websockets accept, 101 (WsConnection._on_request)"),
    ("ServerProtocol.parse", "websockets parser: request head and frames"),
    ("Client.on_message", "message decode and validation (Client.on_message)"),
    ("Client._drain", "message handlers (Client._drain)"),
    ("connection_made", "new connection: uvicorn protocol, websockets ServerProtocol() (connection_made)"),
    ("connection_lost", "closed connection (connection_lost)"),
    ("jansamvad/keepalive.py", "keepalive wheel (keepalive.py)"),
    ("jansamvad/aggregates.py", "presence and aggregates (aggregates.py)"),
    ("data_received", "other data_received glue"),
)


def py_spy_binary() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Sampler:
    """A sampling profiler attached to one process from outside: started, then stopped with SIGINT, on which it
    writes what it sampled to `out` and exits. Subclasses give its command line."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        argv = self.argv()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip

    async def stop(self) -> None:
        """SIGINT makes the profiler write its data and exit."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PySpy(Sampler):
    def __init__(self, pid: int, out: Path, *, rate: int = 250, native: bool = True) -> None:
        super().__init__(pid, out)
        self.rate, self.native = rate, native

    def argv(self) -> list[str]:
        binary = py_spy_binary()
        if binary is None:
            raise RuntimeError("py-spy not installed: .venv/bin/pip install py-spy (or the bench extra)")
        argv = [binary, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw"]
        argv += ["--output", str(self.out), "--function"]
        return argv + (["--native"] if self.native else ["--nonblocking"])


class PerfRecord(Sampler):
    """`perf record -g` on one process (kernel stacks included): where its system time goes, e.g. per write."""

    def __init__(self, pid: int, out: Path, *, freq: int = 999) -> None:
        super().__init__(pid, out)
        self.freq = freq

    def argv(self) -> list[str]:
        binary = shutil.which("perf")
        if binary is None:
            raise RuntimeError("perf not installed (apt-get install linux-perf)")
        return [binary, "record", "-g", "-F", str(self.freq), "-p", str(self.pid), "-o", str(self.out)]


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m["func"], m["file"]


def _label(func: str, file: str) -> str:
    return f"{func} ({file})" if file else func


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self time (the sampled leaf) and inclusive time (anywhere on the stack), as % of busy samples.

    `self_python`: the innermost Python function of each sample (C callees such as transport.write or msgpack
    count towards the Python function that called them). `self_native`: the innermost frame of any kind (a libc
    syscall wrapper, a uvloop C function, an interpreter helper, or a Python function).
    """
    components: Counter[str] = Counter()
    self_py: Counter[str] = Counter()
    self_native: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        components[next((label for key, label in COMPONENTS if key in stack), "event loop and other")] += count
        frames = [_parse(f) for f in stack.split(";")]
        self_native[_label(*frames[-1])] += count
        python = [f for f in frames if f[1].endswith(".py")]
        if any(func.startswith("gc_collect") for func, _ in frames):
            # The cyclic GC runs inside whatever allocation crossed its threshold: name it, not that function.
            self_py[GC_LABEL] += count
        elif python:
            self_py[_label(*python[-1])] += count
        for label in {_label(*f) for f in python}:
            inclusive[label] += count

    for label in [label for label, n in inclusive.items() if n >= 0.98 * total]:
        del inclusive[label]  # the entry point and the event loop: on every stack, says nothing

    def table(counter: Counter[str]) -> list[list[Any]]:
        return [[label, round(100 * n / total, 1)] for label, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "self_python": table(self_py),
        "self_native": table(self_native),
        "inclusive_python": table(inclusive),
        "components": table(components),
    }
